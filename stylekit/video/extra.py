"""The optional extra `video`: PyAV (`av`, FFmpeg's libraries: decoding, libx264) and
opencv-python-headless (`cv2`, DIS optical flow). Neither is a dependency of the core
install: PyAV's wheels carry FFmpeg with x264, which is GPL, and both are large, while most
users stylize images. So every module of stylekit imports them through `require_video_extra`
inside the functions that need them, and without them a video command stops with a message
that says what to install (exit status 2), never an ImportError's traceback.
"""

from __future__ import annotations

from types import ModuleType

from stylekit.errors import UserError

#: What to install; the message of every missing piece names it.
INSTALL = "pip install 'stylekit[video]'"


def require_video_extra() -> ModuleType:
    """The `av` module (PyAV), after checking that the whole extra is importable (`cv2`
    too): UserError naming the missing module, with the command that installs the extra,
    when it is not. Both modules are imported once; later calls cost a dictionary lookup."""
    missing = []
    try:
        import av  # the optional extra `video`: imported where a video is read or written, never at start-up
    except ImportError as exc:
        missing.append(f"PyAV: {exc}")
    try:
        import cv2  # noqa: F401 - the optional extra `video` (the DIS optical flow); checked with PyAV so one message names both
    except ImportError as exc:
        missing.append(f"opencv-python-headless: {exc}")
    if missing:
        raise UserError(f"stylekit video needs the optional extra: {INSTALL} ({'; '.join(missing)})")
    return av
