"""The batch's items, what `stylekit batch` lists first (so this module sorts right after
batch.py, and before batch_workers.py, which shares the items out): every content x style
pair from --content/--style, or the rows of a --pairs manifest, each with its output path.

Everything wrong with the list is said at once, before any worker starts: missing or
special files, repeated pairs, two items with one output, an output that is an input; a
manifest's problems by line, those repeated on many lines said once (`grouped`). An item
whose output name is too long for the file system is kept, with its problem: it fails, and
the others run.
"""

from __future__ import annotations

import csv
import glob
import io
import json
import os
from dataclasses import dataclass
from pathlib import Path

from stylekit.errors import Problem, UserError
from stylekit.files.reading import MANIFEST_LIMIT, FileTooLarge, NotRegularFile, read_bytes, regular_kind
from stylekit.recipe.output_checks import is_stylekit_output, name_length_problem

IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png", ".webp", ".bmp", ".tif", ".tiff", ".gif")


@dataclass(frozen=True)
class Item:
    content: Path
    style: Path
    output: Path
    #: Why the item cannot be done (its output's name is too long for the file system): it
    #: fails with this message, and the other items run.
    problem: str | None = None

    @property
    def key(self) -> str:
        return self.output.stem

    @property
    def done(self) -> bool:
        return self.problem is None and self.output.exists()


def is_pattern(spec: str) -> bool:
    return any(ch in spec for ch in "*?[")


def image_files(spec: str) -> list[Path]:
    """The images a --content/--style argument names: a folder (its images, sorted), a glob
    pattern, or one file. A folder or a pattern leaves out stylekit's own outputs (an image
    with its run record beside it), so that a batch writing into its content folder finds
    the same inputs when it is run again."""
    path = Path(spec)
    if path.is_dir():
        listed = [p for p in path.iterdir() if not p.name.startswith(".")]
    elif is_pattern(spec):
        listed = [Path(p) for p in glob.glob(spec, recursive=True)]
    else:
        return [path] if path.exists() else []  # plan_items names the missing file
    return sorted(p for p in listed if p.suffix.lower() in IMAGE_SUFFIXES and not is_stylekit_output(p))


def plan_items(contents: list[str], styles: list[str], pairs: str | None, out: Path) -> list[Item]:
    """Every content x style pair (or the manifest's pairs), each with its output path
    `<out>/<content stem>.<style stem>.png`. Two items with one output name are an error."""
    problems: list[Problem] = []
    if pairs:
        found = read_manifest(Path(pairs), problems)
        if not found and not problems:
            problems.append(Problem("lists no pairs - add a line content,style (CSV) or an object {\"content\": ..., "
                                    "\"style\": ...} (JSONL) for each item", file=pairs))
    else:
        listed = {spec: image_files(spec) for spec in (*contents, *styles)}
        content_files = [f for spec in contents for f in listed[spec]]
        style_files = [f for spec in styles for f in listed[spec]]
        for flag, specs, files in (("--content", contents, content_files), ("--style", styles, style_files)):
            for spec in specs:
                if not is_pattern(spec) and not Path(spec).exists():
                    problems.append(Problem(f"{flag} {spec}: no such file or folder - check the path"))
                # A FIFO named .jpg would make its item wait for a writer; a device would never end.
                problems += [Problem(f"{flag} {spec}: {path} is not a regular file ({kind}) - give image files (move "
                                     f"it away, or give a pattern that leaves it out)")
                             for path in listed[spec] for kind in [regular_kind(path)] if kind]
            if not files and not problems:
                problems.append(Problem(f"{flag} {' '.join(specs) or '(none)'}: no images found - give a folder, "
                                        "a glob pattern such as 'photos/*.jpg', or image files"))
        found = [(c, s, None) for c in content_files for s in style_files]
    items, seen, pairs_seen = [], {}, {}
    inputs = {os.path.realpath(p) for content, style, _ in found for p in (content, style)}
    for content, style, line in found:
        where = {"file": pairs, "line": line} if line else {}
        output = out / f"{content.stem}.{style.stem}.png"
        item = Item(content, style, output, name_problem(output, (".png", ".json")))
        if (content, style) in pairs_seen:
            problems.append(Problem(f"the pair {content} + {style} is listed already (line {pairs_seen[content, style]}) "
                                    "- remove the repeated lines", **where))
            continue
        pairs_seen[content, style] = line
        if item.problem is None and os.path.realpath(item.output) in inputs:  # else it would count as done, or be overwritten
            problems.append(Problem(f"the output of {content} with style {style} would be {item.output}, one of "
                                    f"the input images - choose another output folder (-o)", **where))
        if item.key in seen:
            problems.append(Problem(f"{content} and {seen[item.key]} with style {style} would both be written to "
                                    f"{item.output} - rename one of them", **where))
        seen[item.key] = content
        items.append(item)
    if problems:
        raise UserError(grouped(problems))
    return items


def name_problem(output: Path, suffixes: tuple[str, ...]) -> str | None:
    """Why `output` cannot be written with the files beside it (`suffixes`: its own, its
    record's), or None: a name the file system refuses as too long (NAME_MAX, 255 bytes on
    most), counting the hidden temporary file each is written through."""
    return name_length_problem(output, suffixes, "rename the content or style image")


def grouped(problems: list[Problem]) -> list[Problem]:
    """The problems, with those that differ only in their line (a row repeated 5,000 times)
    said once, with the lines they are on."""
    lines: dict[tuple, list[int]] = {}
    for problem in problems:
        lines.setdefault((problem.file, problem.field, problem.message), []).append(problem.line)
    said = []
    for (file, field, message), numbers in lines.items():
        if len(numbers) == 1 or None in numbers:
            said += [Problem(message, file, number, field) for number in numbers]
        else:
            said.append(Problem(f"{message} (the same problem on {len(numbers):,} lines: {spans(numbers)})", file,
                                field=field))
    return said


def spans(numbers: list[int], most: int = 8) -> str:
    """'2-5000' for 2, 3, ..., 5000; '2, 4, 7-9'; the first `most` runs, then '...'."""
    runs: list[list[int]] = []
    for number in sorted(numbers):
        if runs and number == runs[-1][1] + 1:
            runs[-1][1] = number
        else:
            runs.append([number, number])
    shown = [f"{a}-{b}" if b > a else str(a) for a, b in runs[:most]]
    return ", ".join(shown) + (", ..." if len(runs) > most else "")


def read_manifest(path: Path, problems: list[Problem]) -> list[tuple[Path, Path, int]]:
    """(content, style, line) of each row of a CSV with a header naming `content` and
    `style`, or a JSONL file of {"content": ..., "style": ...}; paths relative to the
    manifest's folder. What cannot be read is added to `problems`, by line."""
    try:
        text = read_bytes(path, MANIFEST_LIMIT, "manifest").decode("utf-8-sig")
    except (OSError, UnicodeDecodeError) as exc:
        problems.append(Problem(_unreadable_manifest(exc), file=str(path)))
        return []
    rows: list[tuple[int, dict]] = []
    if path.suffix.lower() in (".jsonl", ".ndjson"):
        # Lines end at \n only: JSON text may hold other line breaks (U+2028) inside its strings.
        for number, line in enumerate(text.split("\n"), 1):
            if line.strip():
                try:
                    rows.append((number, json.loads(line)))
                except json.JSONDecodeError as exc:
                    problems.append(Problem(f"not JSON ({exc.msg}) - one object per line", file=str(path), line=number))
                except RecursionError:
                    problems.append(Problem("not JSON this program can read (nested too deeply) - one object per line",
                                            file=str(path), line=number))
    else:
        reader = csv.DictReader(io.StringIO(text, newline=""))  # line breaks inside quoted fields stay theirs
        try:
            missing = [name for name in ("content", "style") if name not in (reader.fieldnames or [])]
            if missing:  # said once, not once per row
                problems.append(Problem(f"the first line must name the columns content and style (it names: "
                                        f"{', '.join(map(str, reader.fieldnames or [])) or 'nothing'})", file=str(path), line=1))
                return []
            for row in reader:
                rows.append((reader.line_num, row))
        except csv.Error as exc:  # a field longer than the csv module takes (128 KB), say
            problems.append(Problem(f"not CSV that can be read ({exc}) - a manifest holds a content and a style path "
                                    "on each line", file=str(path), line=reader.line_num + 1))
    pairs = []
    for number, row in rows:
        if not isinstance(row, dict) or not row.get("content") or not row.get("style"):
            problems.append(Problem("each row needs a content and a style path", file=str(path), line=number))
            continue
        if not isinstance(row["content"], str) or not isinstance(row["style"], str):
            problems.append(Problem("content and style must be paths in quotes (text)", file=str(path), line=number))
            continue
        wrong = next((why for why in map(path_problem, (row["content"], row["style"])) if why), None)
        if wrong:
            problems.append(Problem(wrong, file=str(path), line=number))
            continue
        pair = (path.parent / row["content"]), (path.parent / row["style"])
        special = [f"{p} is not a regular file ({kind})" for p in pair for kind in [regular_kind(p)] if kind]
        if special:  # reading it would wait for a writer (a FIFO) or never end (a device)
            problems.append(Problem(f"{'; '.join(special)} - give image files", file=str(path), line=number))
            continue
        pairs.append((*pair, number))
    return pairs


def path_problem(text: str) -> str | None:
    """Why `text` cannot be a path on this system (a NUL character; longer than PATH_MAX), or None."""
    if "\0" in text:
        return "a path cannot contain a NUL character (\\0) - remove it"
    if len(os.fsencode(text)) >= 4096:  # PATH_MAX on Linux; longer paths are refused by the system
        return f"a path of {len(os.fsencode(text)):,} bytes, longer than a path can be - give the image's path"
    return None


def _unreadable_manifest(exc: OSError | UnicodeDecodeError) -> str:
    if isinstance(exc, UnicodeDecodeError):
        return f"not UTF-8 text (byte {exc.start}) - save the manifest as UTF-8"
    if isinstance(exc, NotRegularFile):  # a FIFO would wait for a writer, a device never end
        return f"{exc.strerror} - give the manifest, a .csv or .jsonl file"
    if isinstance(exc, FileTooLarge):
        return f"{exc.strerror} - split it into several batches"
    return f"cannot read the manifest ({exc.strerror or exc})"
