"""Checks of a recipe's outputs at load time, so that `stylekit validate` and `stylekit run`
agree and a run never fails, after its optimization, on something that could be known
before it: an output path, and every file written beside it (record, checkpoint,
intermediate images, plots), that can be written without destroying anything the user
had. The inputs' checks are `stylekit.recipe.input_checks`.
"""

from __future__ import annotations

import json
import os
import re
import tempfile
from pathlib import Path

from stylekit.errors import Problem
from stylekit.files.images import TEMP_MARK
from stylekit.files.outputs import (checkpoint_path, diverged_path, intermediate_path, losses_plot_path, record_path,
                                    strip_path, written_for)
from stylekit.files.reading import RECORD_LIMIT, read_bytes, regular_kind
from stylekit.recipe.plan import MEMORY
from stylekit.recipe.schema import INIT_CHOICES, unsupported_suffix
from stylekit.errors import UserError



def output_problems(parts, at, beside: bool = False, total_steps: int | None = None) -> list[Problem]:
    """The output path, its run record and plots: writable, and replacing none of the inputs
    nor any file that stylekit did not write. With `beside` (for `stylekit run` and
    `validate`), also every other file a run writes or removes beside the output, up to the
    `total_steps` the run takes (as `more_steps_above` may have grown them; None: not known)."""
    output = parts.output
    if output is None:
        return []
    out = Path(output.path)
    problems = path_problems(out, parts.images, ("output", "path"), at, record=output.record,
                             plot=output.plot, save_every=output.save_every)
    if beside and not problems:
        endings = [e for _, e in _beside_endings(out, output, total_steps)]
        too_long = name_length_problem(out, endings, "choose a shorter output name")
        if too_long:
            return [at(("output", "path"), too_long)]
        problems += beside_problems(out, output.save_every, output.plot, total_steps, ("output", "path"), at)
    return problems


def _beside_endings(out: Path, output, total: int | None) -> list[tuple[str, str]]:
    """(what, how its name ends after the output's stem) of each file a run may write."""
    def ending(path: Path) -> str:
        return path.name[len(out.stem):]

    endings = [("the image", out.suffix), ("the run record", ending(record_path(out))),
               ("the checkpoint", ending(checkpoint_path(out))), ("the last finite image", ending(diverged_path(out)))]
    if output.save_every and total:
        endings.append(("the intermediate images", ending(intermediate_path(out, total))))
    if output.plot:
        endings.append(("the loss plot", ending(losses_plot_path(out))))
    return endings


#: What the hidden temporary file of a write adds to a name: '.NAME.PID.stylekit-tmp', with
#: room for a 7-digit process id (Linux's largest, pid_max 4194304).
TEMP_EXTRA = len(f"..{'9' * 7}{TEMP_MARK}")


def name_length_problem(out: Path, endings: list[str], fix: str) -> str | None:
    """Why `out` is a name the file system refuses (longer than its NAME_MAX, 255 bytes on
    most), given that a file named stem + each of `endings` is written beside it through a
    hidden temporary file; None when it is not."""
    folder = out.parent
    while not folder.exists() and folder.parent != folder:
        folder = folder.parent
    try:
        limit = os.pathconf(folder, "PC_NAME_MAX")
    except (OSError, ValueError, AttributeError):  # not told (or not a POSIX system): the common limit
        limit = 255
    stem = len(os.fsencode(out.stem))
    longest = max(len(os.fsencode(ending)) for ending in endings) + TEMP_EXTRA
    if stem + longest <= limit:
        return None
    name = out.name if len(out.name) <= 60 else f"{out.name[:40]}...{out.name[-15:]}"
    return (f"the output's name {name} is {len(os.fsencode(out.name))} bytes long; the file system takes names of up "
            f"to {limit} bytes, and the files stylekit writes beside it make that at most "
            f"{limit - longest + len(os.fsencode(out.suffix))} bytes for this name - {fix}")


def run_files(out: Path, save_every: int, plot: bool, total: int | None) -> list[tuple[Path, str, str, str]]:
    """(path, what it is, what several are, how to do without) of every file `stylekit run`
    may write or remove beside `out`, the image's record aside: the checkpoint (kept when the
    run is stopped, removed when it finishes), the intermediate images and the plots."""
    files = [(checkpoint_path(out), "the checkpoint", "", "")]
    if save_every and total and out.parent.is_dir():
        # Listed, not tried step by step: a run of 100,000 steps may save every one.
        pattern = re.compile(re.escape(out.stem) + r"\.step(\d+)\.png")
        for path in sorted(out.parent.iterdir()):
            found = pattern.fullmatch(path.name)
            step = int(found.group(1)) if found and found.group(1).isascii() else 0
            if step and step % save_every == 0 and step < total and path.name == intermediate_path(out, step).name:
                files.append((path, "an intermediate image (output.save_every)", "the intermediate images "
                              "(output.save_every)", "set output.save_every = 0"))
    if plot:
        files.append((losses_plot_path(out), "the loss plot (output.plot)", "", "set output.plot = false"))
        if save_every and total and save_every < total:
            files.append((strip_path(out), "the strip of images (output.plot)", "", "set output.plot = false"))
    return files


def beside_problems(out: Path, save_every: int, plot: bool, total: int | None, loc: tuple, at) -> list[Problem]:
    """A run replaces or removes beside `out` only what stylekit wrote (each file names the
    image it was written for, `outputs.written_for`), and nothing written for another image
    that is still there (x.png's, when writing x.jpg: both have x.checkpoint.pt)."""
    problems, refused = [], {}
    for path, what, several, without in run_files(out, save_every, plot, total):
        if not (path.exists() or path.is_symlink()):
            continue
        if path.is_dir() and not path.is_symlink():
            also = f" or {without}" if without else ""
            problems.append(at(loc, f"{what} would go to {path}, which is a folder - move it away, choose another "
                                    f"output name{also}"))
            continue
        owner = written_for(path)
        if owner is None:
            refused.setdefault((what, several, without, None), []).append(path)
        elif owner and owner != out.name and (path.parent / owner).is_file():
            refused.setdefault((what, several, without, path.parent / owner), []).append(path)
    for (what, several, without, owner), paths in refused.items():
        whose = f"written for {owner}" if owner else "that stylekit did not write"
        also = f" or {without}" if without else ""
        if len(paths) == 1:
            problems.append(at(loc, f"{what} would replace {paths[0]}, a file {whose} - move it away, choose another "
                                    f"output name{also}"))
        else:
            names = ", ".join(p.name for p in paths[:3]) + (f" and {len(paths) - 3} more" if len(paths) > 3 else "")
            problems.append(at(loc, f"{several} would replace {len(paths)} files {whose} in {paths[0].parent} "
                                    f"({names}) - move them away, choose another output name{also}"))
    return problems


def save_problems(path: Path, plan, record: bool) -> list[Problem]:
    """`output_problems` for `Result.save(path)`, which may name a path other than the
    recipe's: the same checks, so that the API never overwrites what `stylekit run` keeps."""
    def at(loc, message: str) -> Problem:
        return Problem(message, field="Result.save path")

    wrong_suffix = None if path.is_dir() else unsupported_suffix(str(path))  # a folder: say so instead
    if wrong_suffix:
        return [at((), wrong_suffix)]
    too_long = name_length_problem(path, [path.suffix, ".json"] if record else [path.suffix], "choose a shorter name")
    if too_long:
        return [at((), too_long)]
    return path_problems(path, plan.recipe.images, (), at, record=record, no_record="pass record=False")


def path_argument(value, argument: str) -> Path:
    """`value`, an argument of the Python API that names a file or folder, as a Path; a
    UserError naming `argument` when it cannot be one (not text or a path, a NUL in it)."""
    if not isinstance(value, (str, os.PathLike)) or isinstance(os.fspath(value), bytes):
        raise UserError(Problem(f"must be a path (a str or a pathlib.Path), not {type(value).__name__}", field=argument))
    if "\0" in os.fspath(value):
        raise UserError(Problem(f"a path cannot contain a NUL character (\\0) (got {os.fspath(value)!r})", field=argument))
    return Path(value)


def path_problems(out: Path, images, loc: tuple, at, record: bool = True, plot: bool = False,
                  save_every: int = 0, what: str = "the output image",
                  no_record: str = "set output.record = false") -> list[Problem]:
    """Problems with writing an image to `out` (and, as asked, its record, plots and
    intermediate images) for a recipe whose inputs are `images`. `what` names the image
    in messages, `no_record` says how to go without the record (the recipe's field, or
    the API's argument)."""
    if out.is_dir():
        return [at(loc, f"{out} is a folder - give a file name in it, e.g. {out / 'stylized.png'}")]
    problems = writable_folder(out.parent, loc, at)
    if problems:
        return problems
    written = {out: what}
    if record:
        written[record_path(out)] = "the run record"
    if plot:
        written[losses_plot_path(out)] = "the loss plot"
        written[strip_path(out)] = "the strip of images"
    for path, label in _inputs(images):
        real = os.path.realpath(path)
        for target, what in written.items():
            if real == os.path.realpath(target):
                problems.append(at(loc, f"{what} would overwrite the input {label} {path} - choose another output path"))
        if save_every and re.fullmatch(re.escape(out.stem) + r"\.step\d{5}\.png", Path(path).name) \
                and Path(real).parent == Path(os.path.realpath(out)).parent:
            problems.append(at(loc, f"an intermediate image (output.save_every) would overwrite the input {label} {path} "
                                    f"- choose another output path"))
    if record and not problems:
        problems += _record_problems(record_path(out), out, loc, at, no_record)
    return problems


def _inputs(images):
    """(path, what it is) of every input file; images given in memory have no path."""
    if images is None:
        return []
    found = [(images.content, "content image"), *((p, "style image") for p in images.style)]
    found += [(p, "style mask") for p in images.style_masks or []]
    if images.init not in INIT_CHOICES:
        found.append((images.init, "init image"))
    return [(path, what) for path, what in found if path != MEMORY]


def writable_folder(folder: Path, loc: tuple, at) -> list[Problem]:
    """The folder exists and can be written to, or can be made (nothing is created here)."""
    existing = folder
    while not existing.exists():
        if existing.parent == existing:
            break
        existing = existing.parent
    if not existing.is_dir():
        return [at(loc, f"{existing} is a file, not a folder - choose another output path")]
    try:
        with tempfile.TemporaryFile(dir=existing):
            pass
    except OSError as exc:
        return [at(loc, f"cannot write in {existing} ({exc.strerror or exc}) - choose a folder you can write to")]
    return []


def _record_problems(record: Path, out: Path, loc: tuple, at, no_record: str) -> list[Problem]:
    if not record.exists():
        return []
    if record.is_dir():
        return [at(loc, f"the run record would go to {record}, which is a folder - choose another output name "
                        f"or {no_record}")]
    special = regular_kind(record)
    if special:  # never opened: reading a FIFO waits for a writer, a device may never end
        return [at(loc, f"the run record would replace {record}, which is not a regular file ({special}) - choose "
                        f"another output name or {no_record}")]
    if not is_run_record(record):
        return [at(loc, f"the run record would replace {record}, which is not a stylekit run record - choose "
                        f"another output name or {no_record}")]
    # x.png's record is x.json, and so is x.jpg's: replacing it would leave x.png described
    # by the record of another image. (A record that names no image predates the "image" key.)
    described = _read_record(record).get("image")
    if isinstance(described, str) and described != out.name and (record.parent / described).is_file():
        return [at(loc, f"the run record would replace {record}, the record of {record.parent / described} - choose "
                        f"another output name or {no_record}")]
    return []


def is_stylekit_output(image: Path) -> bool:
    """Whether `image` is an image stylekit wrote: its run record is beside it and names it
    (or names no image, as records did before they named one)."""
    record = record_path(image)
    return is_run_record(record) and _read_record(record).get("image", image.name) == image.name


def is_run_record(path: Path) -> bool:
    """Whether `path` holds a run record stylekit wrote (so writing a new one loses nothing)."""
    data = _read_record(path)
    versions = data.get("versions")
    return "recipe_file" in data and isinstance(versions, dict) and "stylekit" in versions


def _read_record(path: Path) -> dict:
    """The JSON object in `path`; empty if it is none (unreadable, not a regular file, too
    large, not JSON)."""
    try:
        data = json.loads(read_bytes(path, RECORD_LIMIT, "run record").decode("utf-8"))
    except (OSError, ValueError, RecursionError):  # RecursionError: JSON nested past Python's stack
        return {}
    return data if isinstance(data, dict) else {}
