"""`stylekit batch`: one recipe over many content and style images, in one process or in
many (torchrun), each item done once, and a rerun doing only what is not done.

Items are claimed dynamically: every worker walks the same list and claims the next item
by creating its claim file with O_EXCL, which exactly one process can do, so a slow image
or a slow GPU holds up nothing else. Claims belong to one invocation (its generation), so
a rerun after a crash, a killed worker or a pre-emption ignores the old ones (an invocation
that ends removes its own, and only its own: `release_claims`); an item is
done when its image is in the output folder (written atomically, record first), and a
rerun skips exactly those. The output folder must be shared by all workers (one node, or a
shared file system across nodes), as it is where they meet.
"""

from __future__ import annotations

import csv
import glob
import io
import json
import os
import shutil
import socket
import sys
import time
import uuid
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import TextIO

from stylekit.errors import Problem, RunFailed, UserError, one_line
from stylekit.files.outputs import describe, write_image_and_record
from stylekit.files.reading import MANIFEST_LIMIT, FileTooLarge, NotRegularFile, read_bytes, regular_kind

#: The most images a step may take. A worker holds the items it claims until their group is
#: full, so a number past the batch's size only keeps them from running; the gain of larger
#: groups flattens long before (1.53x at 16 per step on a GPU, docs/scale.md), and `auto`
#: picks 64 at most. 1024 leaves room for a GPU far larger than today's, and none for a typo.
MAX_BATCH_SIZE = 1024
IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png", ".webp", ".bmp", ".tif", ".tiff", ".gif")
STATE_DIR = ".stylekit-batch"


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
    from stylekit.recipe.checks import is_stylekit_output

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
    from stylekit.recipe.checks import name_length_problem

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


class Workers:
    """This process's place among the workers: torch.distributed when launched by torchrun
    (RANK and WORLD_SIZE set), else a single worker. Only a generation id is exchanged."""

    def __init__(self):
        self.rank, self.world = int(os.environ.get("RANK", 0)), int(os.environ.get("WORLD_SIZE", 1))
        self.local_rank = int(os.environ.get("LOCAL_RANK", 0))
        self.distributed = "RANK" in os.environ and self.world > 1
        generation = [uuid.uuid4().hex]
        if self.distributed:
            import torch.distributed as dist

            # gloo, also on GPUs: the group only broadcasts the generation (a str, pickled into
            # CPU tensors) and waits at the end; NCCL would add nothing and refuses two ranks
            # on one GPU (two workers sharing a card, as a one-GPU benchmark runs them).
            dist.init_process_group("gloo")
            dist.broadcast_object_list(generation, src=0)  # every worker claims in the same generation
        self.generation = generation[0]

    def device(self, requested: str) -> str:
        """One GPU per worker: `auto` and `cuda` become this worker's `cuda:LOCAL_RANK`."""
        import torch

        if requested in ("auto", "cuda") and torch.cuda.is_available():
            return f"cuda:{self.local_rank % torch.cuda.device_count()}"
        return requested

    def finish(self, wait: bool = True) -> None:
        if self.distributed:
            import torch.distributed as dist

            if wait:
                dist.barrier()
            dist.destroy_process_group()

    @property
    def name(self) -> str:
        return f"{socket.gethostname()}:{os.getpid()}" + (f" rank {self.rank}" if self.distributed else "")


def claim(out: Path, generation: str, item: Item) -> bool:
    """True for exactly one worker per item and generation."""
    folder = out / STATE_DIR / "claims" / generation
    for attempt in range(5):
        # Another invocation, ending, may remove the empty parents while they are made
        # (mkdir then fails with either error): make them again. Only the claim file's
        # own existence means that another worker has the item.
        try:
            folder.mkdir(parents=True, exist_ok=True)
        except (FileExistsError, FileNotFoundError):
            if attempt == 4:
                raise
            continue
        try:
            fd = os.open(folder / item.key, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o644)
            break
        except FileExistsError:
            return False
        except FileNotFoundError:
            if attempt == 4:
                raise
    os.write(fd, f"{socket.gethostname()} {os.getpid()}\n".encode())
    os.close(fd)
    return True


def release_claims(out: Path, generation: str) -> None:
    """Remove this invocation's claims, once every worker is done with them (a rerun ignores
    them anyway), and the state folder if no other invocation's claims are in it. Only our
    own generation: another one's may belong to a batch still running on this folder, which
    cannot be told from a dead one (its workers may be on other machines)."""
    folder = out / STATE_DIR / "claims" / generation
    shutil.rmtree(folder, ignore_errors=True)
    for parent in (folder.parent, folder.parent.parent):
        try:
            parent.rmdir()
        except OSError:  # not empty (or gone): left as it is
            break


def append_summary(out: Path, entry: dict) -> None:
    """One JSON line, written with a single O_APPEND write, so lines from several workers
    never interleave."""
    line = (json.dumps(entry, allow_nan=False) + "\n").encode()
    fd = os.open(out / "summary.jsonl", os.O_CREAT | os.O_APPEND | os.O_WRONLY, 0o644)
    try:
        os.write(fd, line)
    finally:
        os.close(fd)


def run_batch(recipe: str, contents: list[str], styles: list[str], pairs: str | None, out: Path,
              overrides: dict, registry, batch_size: str = "1", dry_run: bool = False, stream: TextIO | None = None,
              live=None) -> int:
    """Run every item not yet done; the exit status is 0 when all are done, 3 when some
    failed (the summary says which and why), 130/143 when interrupted. `live`: a
    `stylekit.commands.live.LiveServer` that shows each item as it forms;
    its Stop ends the batch."""
    from stylekit.api import load
    from stylekit.plugins.registry import BrokenPluginWarning, broken_warnings
    from stylekit.recipe.load import load_recipe

    stream = stream or sys.stderr
    # Checked once, before any worker starts. The items' images replace the recipe's, so the
    # recipe may leave them out: a blank image stands in for them while it is checked.
    from PIL import Image

    stand_in = Image.new("RGB", (256, 256), (128, 128, 128))
    with warnings.catch_warnings():  # told below as the other commands tell it, not as a Python warning
        warnings.simplefilter("ignore", BrokenPluginWarning)
        base = load(recipe, with_output_in(overrides, out), registry=registry, content=stand_in,
                    style=stand_in if styles or pairs else None)  # a manifest names every item's style
    if int(os.environ.get("RANK", 0)) == 0:
        for line in broken_warnings(registry):
            print(line, file=stream, flush=True)
    styles = styles or [str(p) for p in base.recipe.images.style]
    items = plan_items(contents, styles, pairs, out)
    from stylekit.recipe.checks import writable_folder

    problems = writable_folder(out, (), lambda loc, message: Problem(f"-o {out}: {message}"))
    if problems:  # found before any worker starts, as `stylekit run` finds its own
        raise UserError(problems)
    size = images_per_step(base, batch_size, stream)
    if dry_run:  # the list on stdout (one item a line, for grep and wc), the counts with the messages
        failing = sum(item.problem is not None for item in items)
        done = [item.done for item in items]
        for item, finished in zip(items, done):
            state = "fails" if item.problem else "done " if finished else "to do"
            # Escaped (one_line): one item a line, whatever its paths hold.
            print(one_line(f"{state}  {item.content} + {item.style} -> {item.output}" + (f": {item.problem}" if item.problem else "")))
        print(f"stylekit batch: {counted(len(items), 'item')}, {done.count(False) - failing} to do"
              + (f", {failing} will fail" if failing else "") + f", {counted(size, 'image')} per step",
              file=stream, flush=True)
        return 0
    out.mkdir(parents=True, exist_ok=True)
    workers = Workers()
    # Each style file is decoded once per process, as its features are computed once (Reuse).
    worker = Worker(workers, out, size, stream, lambda item, reuse: load_recipe(
        base.raw, registry, item_overrides(item, workers.device(base.recipe.run.device)),
        base=Path.cwd(), label=base.source, decoded=reuse.style_images), live)
    todo = [item for item in items if not item.done]
    if workers.rank == 0:
        failing = sum(item.problem is not None for item in todo)
        print(f"stylekit batch: {counted(len(items), 'item')}, {len(items) - len(todo)} already done, "
              f"{len(todo) - failing} to do{f', {failing} will fail' if failing else ''}, "
              f"{counted(workers.world, 'worker')}, {counted(size, 'image')} per step -> {one_line(str(out))}", file=stream, flush=True)
    try:
        status = worker.run(todo)
    except KeyboardInterrupt:  # a second Ctrl-C: out at once, but the items done are there
        workers.finish(wait=False)
        finished = sum(item.done for item in items)
        print(f"interrupted - {finished} of {counted(len(items), 'item')} done in {out} (the item in progress is not "
              "written); rerun the same command to go on", file=stream, flush=True)
        return 130
    workers.finish(wait=status not in (130, 143))  # interrupted: the others may be gone
    if status in (130, 143):
        return status
    if workers.rank == 0:  # past the barrier: every worker has ended, no claim is read again
        release_claims(out, workers.generation)
        missing = [item.key for item in items if not item.done]
        print(one_line(f"stylekit batch: {len(items) - len(missing)} of {len(items)} done"
              + (f"; not done: {', '.join(missing[:10])}{' ...' if len(missing) > 10 else ''} "
                 f"(see {out / 'summary.jsonl'}; rerun to retry)" if missing else "")), file=stream, flush=True)
        if missing and status == 0:  # an item nobody did (a worker lost) is not success either
            return 3
    return status


def with_output_in(overrides, out: Path):
    """`overrides` with output.path in OUT: every item writes there, never to the recipe's own
    output, whose checks (a file in the way, say) are not the batch's. OUT's are made on
    the items (`plan_items`) and `writable_folder`."""
    from stylekit.recipe.overrides import Overrides

    moved = Overrides.of(overrides)
    moved.add(("output", "path"), str(out / STATE_DIR / "item.png"), f"-o {out}")
    return moved


def counted(n: int, noun: str) -> str:
    return f"{n} {noun}{'' if n == 1 else 's'}"


def item_overrides(item: Item, device: str):
    """The recipe's fields that one item sets, each named after the item in messages (the
    user wrote neither these values nor a Python `overrides` argument)."""
    from stylekit.recipe.overrides import Overrides

    overrides, named = Overrides(), f"batch item {item.key}"
    for key, value in ((("run", "device"), device), (("output", "path"), str(item.output)),
                       (("images", "content"), str(item.content)), (("images", "style"), [str(item.style)])):
        overrides.add(key, value, named)
    return overrides


def images_per_step(plan, requested: str, stream: TextIO) -> int:
    """A number, or `auto`: on a GPU, as many as the memory estimate of one image (at the
    last stage's size) fits in 80% of its free memory; 1 on a CPU."""
    if requested != "auto":
        try:
            size = int(requested)
        except ValueError:
            size = 0
        if not 1 <= size <= MAX_BATCH_SIZE:
            raise UserError(f"--batch-size {requested}: give a whole number of images per step, from 1 to "
                            f"{MAX_BATCH_SIZE}, or auto")
        return size
    from stylekit.run.estimate import estimate, human
    from stylekit.run.estimate import available_memory

    if plan.device.type == "cpu":
        print("batch size 1: on a CPU each image gets its own backbone pass, so more per step gains nothing",
              file=stream, flush=True)
        return 1
    found = estimate(plan, plan.stages[-1])
    free = available_memory(plan.device) or 4 << 30  # 4 GB where the free memory cannot be read
    per_image = found.total - found.weights
    size = max(1, min(64, int((0.8 * free - found.weights) // max(1, per_image))))
    print(f"batch size {size}: about {human(per_image)} per image at the last stage's size, {human(free)} free",
          file=stream, flush=True)
    return size


class Worker:
    """Claims items, groups those of one size, and runs each group as one batch per step.
    `plan_for(item, reuse)` loads an item's plan, taking decoded style images from `reuse`."""

    def __init__(self, workers: Workers, out: Path, size: int, stream: TextIO, plan_for, live=None):
        from stylekit.run.build import Reuse

        self.workers, self.out, self.size, self.stream, self.plan_for = workers, out, size, stream, plan_for
        self.live = live
        self.reuse, self.failed, self.places = Reuse(), 0, {}

    def run(self, todo: list[Item]) -> int:
        from stylekit.files.images import output_size

        pending: dict[tuple, list] = {}
        # Workers walk the list in order, so an item's place in it tells how far the batch is.
        self.places = {item.key: f"{n}/{len(todo)}" for n, item in enumerate(todo, 1)}
        for item in todo:
            if self.live is not None and self.live.stop_requested:  # Stop pressed between two items
                print("stopped from the live page: rerun the same command to go on", file=self.stream, flush=True)
                return 130
            if item.problem is not None:  # known before it runs, to every worker: one of them says so
                if self.workers.rank == 0:
                    self.report(item, time.perf_counter(), error=UserError(item.problem))
                continue
            if item.done or not claim(self.out, self.workers.generation, item):
                continue
            started = time.perf_counter()
            try:
                plan = self.plan_for(item, self.reuse)
            except UserError as exc:
                self.report(item, started, error=exc)
                continue
            key = tuple(output_size(plan.images.content, s.width, s.height) for s in plan.stages)
            pending.setdefault(key, []).append((item, plan, started))
            if len(pending[key]) >= self.size:
                status = self.run_group(pending.pop(key))
                if status:
                    return status
        for group in pending.values():
            status = self.run_group(group)
            if status:
                return status
        return 3 if self.failed else 0

    def run_group(self, group: list) -> int:
        from stylekit.run.session import run_group

        from stylekit.run.blame import attributed

        plans = [plan for _, plan, _ in group]
        callbacks = [self.live.run(item.key, f"{item.content.name} + {item.style.name}") if self.live else None
                     for item, _, _ in group]
        try:
            outcomes = run_group(plans, self.reuse, callbacks)  # a group of one runs as `run_one` does
        except (UserError, RunFailed) as exc:
            outcomes = [exc] * len(group)
        except Exception as exc:  # a plugin's code raised: every item of the group failed with it
            problem = attributed(exc, plans[0], 0)
            if problem is None:
                raise
            outcomes = [problem] * len(group)
        finally:
            if self.live:
                for item, _, _ in group:
                    self.live.finish(item.key)
        for (item, _, started), outcome in zip(group, outcomes):
            if isinstance(outcome, Exception):
                self.report(item, started, error=outcome)
            elif outcome.status != "finished":
                print(f"{outcome.status}: {len(group)} item(s) in progress not written; rerun the same command to go on",
                      file=self.stream, flush=True)
                return 128 + (outcome.signal or 2)
            else:
                try:  # both or neither, the record renamed first: an image in the folder marks an item done
                    write_image_and_record(outcome.image, outcome.record, item.output)
                except OSError as exc:
                    self.report(item, started, error=RunFailed(f"could not write {item.output} ({describe(exc)})"))
                    continue
                self.report(item, started, losses=outcome.history[-1] if outcome.history else {})
        return 0

    def report(self, item: Item, started: float, error: Exception | None = None, losses: dict | None = None) -> None:
        entry = {"item": item.key, "content": str(item.content), "style": str(item.style), "output": str(item.output),
                 "worker": self.workers.name, "status": "failed" if error else "done",
                 "seconds": round(time.perf_counter() - started, 3)}
        if error is not None:
            self.failed += 1
            entry["error"] = str(error)
        else:
            entry["losses"] = losses
        append_summary(self.out, entry)
        print(one_line(f"[{self.workers.rank}] {self.places.get(item.key, '?')} {entry['status']:<6} {item.key} "
                       f"({entry['seconds']:.1f} s)" + (f": {entry['error']}" if error else "")), file=self.stream, flush=True)
