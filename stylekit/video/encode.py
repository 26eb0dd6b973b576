"""Writing a clip: H.264 video (libx264, through PyAV) or a folder of PNG frames.

    with open_writer("out.mp4", like=clip) as out:   # clip: the input, from open_clip
        for frame in frames:
            out.write(frame)                           # a PIL image or a (1, 3, H, W) tensor in [0, 1]

The output keeps the input's timing: frame i is shown at the input's frame i's time (a
variable frame rate survives), and the input's audio is copied beside it, remuxed as it is
where the container takes its codec, else re-encoded to AAC; a clip cut short (fewer frames
written than the input has, as when a run is interrupted) gets the audio up to its end.
Frames are written upright with no rotation flag, so every player shows them as they were
stylized.

A video is written to a hidden temporary file beside the output and renamed into place only
once complete: a crash, a Ctrl-C or a failed write leaves the previous output (if any) as it
was and no temporary file behind.

Sizes: H.264 in 4:2:0 (`yuv420p`, the only form browsers, phones and QuickTime all play)
stores chroma at half resolution and so needs an even width and height, and its frame
cropping counts in 2-pixel steps, so an odd size cannot be stored or cropped back to. An odd
width or height is therefore padded by repeating the last column or row: a 33x17 clip is
written as 34x18 whose top-left 33x17 are the frames exactly, so no stylized pixel is lost
(cropping one would). `pixel_format="yuv444p"` keeps odd sizes exact and colour at full
resolution, for players that handle 4:4:4 (FFmpeg-based ones do; browsers do not).
Colours are converted with BT.709 in limited range and tagged so.
"""

from __future__ import annotations

import contextlib
import os
import re
import shutil
from fractions import Fraction
from pathlib import Path

import numpy as np
import torch
from PIL import Image

from stylekit.errors import Problem, UserError
from stylekit.files.images import open_rgb, remove_stale_temps, temp_name, to_image
from stylekit.video.audio import AudioCopy
from stylekit.video.decode import FOLDER_FPS, Clip
from stylekit.video.extra import require_video_extra

#: The containers written, by suffix (FFmpeg's muxer names); all take H.264.
CONTAINERS = {".mp4": "mp4", ".m4v": "mp4", ".mov": "mov", ".mkv": "matroska"}
#: x264's presets, fastest first.
PRESETS = ("ultrafast", "superfast", "veryfast", "faster", "fast", "medium", "slow", "slower", "veryslow", "placebo")
PIXEL_FORMATS = ("yuv420p", "yuv444p")
#: The frames of a folder written by `FrameFolderWriter`.
FRAME_NAME = "frame_{:05d}.png"
_FRAME_FILE = re.compile(r"frame_\d{5,}\.png")


def open_writer(path: str | os.PathLike, *, like: Clip | None = None, fps: float | Fraction | None = None,
                crf: int = 18, preset: str = "medium", pixel_format: str = "yuv420p"):
    """A `ClipWriter` for a path with a video suffix (.mp4, .m4v, .mov, .mkv), a
    `FrameFolderWriter` for a path without a suffix or an existing folder."""
    if Path(path).suffix == "" or os.path.isdir(path):
        return FrameFolderWriter(path)
    return ClipWriter(path, like=like, fps=fps, crf=crf, preset=preset, pixel_format=pixel_format)


class _Writer:
    """As a context manager: `close()` (the output put in place) when the block completes,
    `abort()` (nothing left) when it raises."""

    def close(self) -> Path:
        raise NotImplementedError

    def abort(self) -> None:
        raise NotImplementedError

    def __enter__(self):
        return self

    def __exit__(self, kind, exc, tb) -> None:
        if kind is None:
            self.close()
        else:
            self.abort()


class ClipWriter(_Writer):
    """Writes frames to an H.264 video at `path`. `like`: the input clip, whose timing,
    and audio, the output keeps; without it, frames are shown at a constant `fps` (default
    FOLDER_FPS) with no audio. `crf` (0-51, lower is better; 18 is visually lossless for
    most footage) and `preset` (x264's speed against file size) are x264's. Use it as a
    context manager, or call `close()` (which completes the file) or `abort()`."""

    def __init__(self, path: str | os.PathLike, *, like: Clip | None = None, fps: float | Fraction | None = None,
                 crf: int = 18, preset: str = "medium", pixel_format: str = "yuv420p"):
        self.path = Path(path)
        self._check(crf, preset, pixel_format)
        self._av = require_video_extra()
        self.like, self.crf, self.preset, self.pixel_format = like, crf, preset, pixel_format
        if like is not None:
            self.time_base, self.pts, self._end = like.time_base, like.pts, like.end
            self.fps = Fraction(like.fps).limit_denominator(1_000_000)
        else:
            self.fps = Fraction(fps or FOLDER_FPS).limit_denominator(1_000_000)
            self.time_base, self.pts, self._end = 1 / self.fps, None, None
        self.count = 0
        self.size: tuple[int, int] | None = None  # the frames' size, set by the first
        self._stream = self._audio = None
        self._durations: dict[int, int] = {}
        self.path.parent.mkdir(parents=True, exist_ok=True)
        remove_stale_temps(self.path)
        self._tmp = temp_name(self.path)
        options = {"movflags": "+faststart"} if CONTAINERS[self.path.suffix.lower()] != "matroska" else {}
        try:
            self._out = self._av.open(str(self._tmp), "w", format=CONTAINERS[self.path.suffix.lower()],
                                      options=options)
        except OSError as exc:
            self._remove_temp()
            raise UserError(f"cannot write {self.path} ({exc.strerror}) - check the folder and its permissions") \
                from None

    def _check(self, crf, preset, pixel_format) -> None:
        problems = []
        if self.path.suffix.lower() not in CONTAINERS:
            problems.append(Problem(f"stylekit writes video as {', '.join(CONTAINERS)}, or frames into a folder (a path "
                                    f"without a suffix), not '{self.path.suffix}'", str(self.path)))
        if not (isinstance(crf, int) and 0 <= crf <= 51):
            problems.append(Problem(f"{crf!r} is not an x264 quality - give a whole number from 0 (lossless) to 51 "
                                    f"(18 looks like the input)", field="crf"))
        if preset not in PRESETS:
            problems.append(Problem(f"unknown x264 preset {preset!r} - choose one of: {', '.join(PRESETS)}",
                                    field="preset"))
        if pixel_format not in PIXEL_FORMATS:
            problems.append(Problem(f"{pixel_format!r} - choose one of: {', '.join(PIXEL_FORMATS)}",
                                    field="pixel_format"))
        if problems:
            raise UserError(problems)

    def write(self, frame: Image.Image | torch.Tensor) -> None:
        """Append one frame: a PIL image (converted to RGB) or a (1, 3, H, W) or (3, H, W)
        tensor in [0, 1]. Every frame has the first one's size (ValueError otherwise)."""
        image = to_image(frame) if isinstance(frame, torch.Tensor) else frame.convert("RGB")
        if self.size is None:
            self._start(image.size)
        elif image.size != self.size:
            raise ValueError(f"frame {self.count + 1} is {image.size[0]}x{image.size[1]}, the first was "
                             f"{self.size[0]}x{self.size[1]}")
        if self.pts is not None and self.count >= len(self.pts):
            raise ValueError(f"more frames than the input clip's {len(self.pts)}")
        pixels = np.asarray(image)
        if self.pixel_format == "yuv420p":  # even sides for 4:2:0: repeat the last row/column (module docstring)
            pixels = np.pad(pixels, ((0, pixels.shape[0] % 2), (0, pixels.shape[1] % 2), (0, 0)), mode="edge")
        av = self._av
        video = av.VideoFrame.from_ndarray(np.ascontiguousarray(pixels), format="rgb24")
        video = video.reformat(format=self.pixel_format, dst_colorspace="ITU709")
        video.pts, video.time_base = self._pts(self.count), self.time_base
        self._durations[video.pts] = self._pts(self.count + 1) - video.pts
        self._mux(self._stream.encode(video))
        self.count += 1
        if self._audio is not None:
            self._audio.until(self._seconds(self.count - 1))

    def _mux(self, packets) -> None:
        for packet in packets:
            # Each frame lasts until the next one's time: x264 does not carry a frame's
            # duration to its packet, and MP4 takes the last frame's length from it.
            packet.duration = self._durations.pop(packet.pts, packet.duration)
            self._out.mux(packet)

    def _pts(self, index: int) -> int:
        if self.pts is None:
            return index
        return self.pts[index] if index < len(self.pts) else self._end

    def _seconds(self, index: int) -> float:
        return float(self._pts(index) * self.time_base)

    def _start(self, size: tuple[int, int]) -> None:
        """Add the streams once the frames' size is known (before the first packet, which
        writes the container's header)."""
        self.size = size
        stream = self._out.add_stream("libx264", rate=self.fps)
        stream.width, stream.height = (size[0] + size[0] % 2, size[1] + size[1] % 2) \
            if self.pixel_format == "yuv420p" else size
        stream.pix_fmt = self.pixel_format
        stream.time_base = stream.codec_context.time_base = self.time_base
        context = stream.codec_context
        context.colorspace, context.color_range = 1, 1  # BT.709 matrix, limited range, as the frames are converted
        context.color_primaries = context.color_trc = 1  # BT.709 (and sRGB's) primaries and transfer
        stream.options = {"crf": str(self.crf), "preset": self.preset}
        self._stream = stream
        if self.like is not None and self.like.has_audio:
            self._audio = AudioCopy(self._av, self._out, self.like)

    def close(self) -> Path:
        """Finish the video and put it in place at `path` (returned); the writer is then done.
        A writer given no frame writes nothing (ValueError)."""
        try:
            if self._stream is None:
                raise ValueError(f"no frames were written to {self.path}")
            self._mux(self._stream.encode())
            if self._audio is not None:
                self._audio.finish(self._seconds(self.count))
            self._out.close()
            os.replace(self._tmp, self.path)
        except BaseException:
            self.abort()
            raise
        return self.path

    def abort(self) -> None:
        """Stop and leave nothing: the temporary file is removed, `path` left as it was."""
        if self._audio is not None:
            self._audio.close()
        with contextlib.suppress(Exception):  # the muxer may be in any state after a failure
            self._out.close()
        self._remove_temp()

    def _remove_temp(self) -> None:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(self._tmp)


class FrameFolderWriter(_Writer):
    """Writes frames as frame_00001.png, frame_00002.png, ... into the folder `path`,
    through a hidden temporary folder beside it, put in place only once complete. A folder
    already at `path` is replaced only when it is empty or holds nothing but such frames
    (an earlier output); one holding anything else is refused (UserError) before a frame is
    written."""

    def __init__(self, path: str | os.PathLike):
        self.path = Path(path)
        if self.path.exists() and not self.path.is_dir():
            raise UserError(f"{self.path} is a file - give a folder (a path without a suffix) for the frames")
        if self.path.is_dir():
            others = [n for n in os.listdir(self.path) if not _FRAME_FILE.fullmatch(n)]
            if others:
                raise UserError(f"the folder {self.path} holds files stylekit did not write ({others[0]}, ...) - "
                                f"choose an empty or new folder for the frames")
        self.count = 0
        self._tmp = temp_name(self.path)
        self._tmp.mkdir(parents=True)

    def write(self, frame: Image.Image | torch.Tensor) -> None:
        image = to_image(frame) if isinstance(frame, torch.Tensor) else frame.convert("RGB")
        self.count += 1
        image.save(self._tmp / FRAME_NAME.format(self.count), format="PNG")

    def close(self) -> Path:
        """Put the frames in place at `path` (returned); ValueError when none was written."""
        try:
            if not self.count:
                raise ValueError(f"no frames were written to {self.path}")
            if not self.path.is_dir():
                os.replace(self._tmp, self.path)
                return self.path
            old = self.path.with_name(f"{self._tmp.name}-old")  # the earlier frames, set aside until the new are in
            os.replace(self.path, old)
            try:
                os.replace(self._tmp, self.path)
            except BaseException:
                os.replace(old, self.path)
                raise
            shutil.rmtree(old, ignore_errors=True)
        except BaseException:
            self.abort()
            raise
        return self.path

    def abort(self) -> None:
        shutil.rmtree(self._tmp, ignore_errors=True)


def encode_frame_files(files, path: str | os.PathLike, *, like: Clip | None = None, **options) -> Path:
    """Write the frames already on disk (`files`: PNG paths in order, e.g. a run's finished
    frames) as the clip `path`, with `open_writer`'s options; with fewer frames than `like`,
    a partial clip that plays up to its last frame, audio cut there."""
    with open_writer(path, like=like, **options) as out:
        for file in files:
            out.write(open_rgb(os.fspath(file)))
    return out.path
