"""Writing a run's results: the image and its record, atomically, and a safe place for the
image when its own path cannot be written (disk full, read-only, folder gone)."""

from __future__ import annotations

import json
import os
import tempfile
from pathlib import Path

from PIL import Image

from stylekit.files.images import save_atomic, write_text_atomic


def record_path(output: Path) -> Path:
    return output.with_suffix(".json")


def write_result(result, path: Path, record: bool = True) -> Path:
    """Write `result.image` to `path` and, with `record`, its run record beside it."""
    save_atomic(result.image, path)
    if record:
        write_record(result.record, record_path(path), image=path)
    return path


def write_record(record: dict, path: Path, image: Path | None = None) -> None:
    """Write `record` to `path`; with `image`, naming the image it describes ("image"), so
    that a later output whose record would take the same path (x.png, then x.jpg: both
    x.json) is refused rather than leave x.png described by x.jpg's record."""
    if image is not None:
        record = {"image": image.name, **record}
    # allow_nan=False: a NaN that slipped through would make the file unreadable as JSON.
    write_text_atomic(json.dumps(record, indent=1, allow_nan=False), path)


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
