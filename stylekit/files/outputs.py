"""Writing a run's results: the image and its record, atomically, and a safe place for the
image when its own path cannot be written (disk full, read-only, folder gone). Also the
names of the files a run keeps beside its output, and how to tell that stylekit wrote one."""

from __future__ import annotations

import json
import os
import shutil
import tempfile
from pathlib import Path

import torch
from PIL import Image

from stylekit.files.images import image_writer, marked_for, save_atomic, write_text_atomic, write_together
from stylekit.files.sizes import human


def record_path(output: Path) -> Path:
    return output.with_suffix(".json")


def checkpoint_path(output: Path) -> Path:
    """Where `stylekit run` keeps its checkpoint: beside its output, `<name>.checkpoint.pt`."""
    return output.with_name(f"{output.stem}.checkpoint.pt")


def intermediate_path(output: Path, step: int) -> Path:
    return output.with_name(f"{output.stem}.step{step:05d}.png")


def losses_plot_path(output: Path) -> Path:
    return output.with_name(f"{output.stem}.losses.png")


def strip_path(output: Path) -> Path:
    return output.with_name(f"{output.stem}.strip.png")


def diverged_path(output: Path) -> Path:
    """Where a run that diverged keeps its last finite image: `<name>.diverged.png`."""
    return output.with_name(f"{output.stem}.diverged.png")


def write_result(result, path: Path, record: bool = True) -> Path:
    """Write `result.image` to `path` and, with `record`, its run record beside it."""
    write_image_and_record(result.image, result.record if record else None, path)
    return path


def write_image_and_record(image: Image.Image, record: dict | None, path: Path, mark: str | None = None) -> None:
    """`image` to `path` and `record` (unless None) beside it: both or neither
    (`write_together`), the record renamed into place first, so that an image is never
    left beside the record of another. `mark`: see `save_atomic`."""
    files = []
    if record is not None:
        files.append((record_path(path), "w", lambda handle: handle.write(record_text(record, path))))
    files.append((path, "wb", image_writer(image, path, mark)))
    write_together(files)


def write_record(record: dict, path: Path, image: Path | None = None) -> None:
    """Write `record` to `path`; with `image`, naming the image it describes ("image")."""
    write_text_atomic(record_text(record, image), path)


def record_text(record: dict, image: Path | None = None) -> str:
    """A record as JSON; with `image`, naming the image it describes ("image"), so that a
    later output whose record would take the same path (x.png, then x.jpg: both x.json) is
    refused rather than leave x.png described by x.jpg's record."""
    if image is not None:
        record = {"image": image.name, **record}
    # allow_nan=False: a NaN that slipped through would make the file unreadable as JSON.
    return json.dumps(record, indent=1, allow_nan=False)


def written_for(path: Path) -> str | None:
    """Which output image the file `path` beside it was written for, as stylekit marks them:
    the image's name, "" for a file stylekit wrote without naming one (a checkpoint kept
    by the Python API, one from before checkpoints named their image), or None when
    stylekit did not write it (or it cannot be read, or it is a link)."""
    if path.is_symlink() or not path.is_file():
        return None
    if path.suffix == ".pt":
        return checkpoint_output(path)
    return marked_for(path)


def checkpoint_output(path: Path) -> str | None:
    """The output a checkpoint file was kept for ("" if it names none), or None when it is
    not a stylekit checkpoint. Only the file's index is read (mmap): its tensors are not."""
    try:
        state = torch.load(path, map_location="cpu", weights_only=True, mmap=True)
    except Exception:  # not a checkpoint torch can read safely: not one of stylekit's
        return None
    if not isinstance(state, dict) or not isinstance(state.get("format"), int) or not isinstance(state.get("recipe"), dict):
        return None
    name = state.get("output")
    return name if isinstance(name, str) else ""


def keep_elsewhere(image: Image.Image, name: str) -> Path | None:
    """Save `image` where it can be: the system's temporary folder, else the current folder,
    under a name no file has yet. None when neither can be written."""
    for folder in (Path(tempfile.gettempdir()), Path.cwd()):
        target = folder / name
        number = 1
        while target.exists():
            target = folder / f"{Path(name).stem}-{number}{Path(name).suffix}"
            number += 1
        try:
            save_atomic(image, target)
            return target
        except OSError:
            continue
    return None


def describe(exc: OSError) -> str:
    """'No space left on device', with the file it concerns when that is named."""
    reason = (exc.strerror or os.strerror(exc.errno)) if exc.errno else str(exc)
    return f"{reason}: {exc.filename}" if exc.filename else reason


def free_space(folder: Path) -> str:
    """', 12.00 KB free there' for the disk that holds `folder`; '' when that cannot be read."""
    while not folder.exists() and folder.parent != folder:  # a folder the write would have made
        folder = folder.parent
    try:
        return f", {human(shutil.disk_usage(folder).free)} free there"
    except OSError:
        return ""


def not_written(what: str, path: Path, exc: OSError) -> str:
    """The warning for a file beside an output that could not be written (a checkpoint, an
    intermediate image, a plot): which, why, the free space, and that the run goes on."""
    return (f"could not write {what} {path} ({describe(exc).removesuffix(f': {path}')}{free_space(path.parent)}) "
            "- the run goes on without it")
