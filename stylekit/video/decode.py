"""Reading a clip: a video file (decoded with PyAV) or a folder of frames.

`open_clip(path)` checks the whole clip once, before anything is stylized, and returns a
`Clip` that says what it holds; `Clip.frames()` then hands the frames out one at a time,
upright, as 8-bit RGB PIL images, so that a clip of any length costs one frame's memory.

A video is decoded in full at open: its frame count is then the number of frames that
decode (a container's count may be missing, as in Matroska, or count frames an edit list
hides), each frame's presentation time is known (a variable-frame-rate clip keeps its timing
when written back), and a damaged file is refused before the first frame is stylized rather
than in the middle of a run. Decoding alone ran at about 260 frames a second at 720p on a
2-core CPU (an x264 clip, 90 frames), against seconds to a minute of stylization per frame.

The rotation a phone records (the display matrix of MP4/MOV; a `rotate` tag in files
written by older FFmpeg) is applied to every frame as a player applies it; `Clip.rotation`
says how far the stored frames are turned. Rotations are taken to the nearest quarter turn,
and the matrix's mirroring, which no camera writes, is not applied.
"""

from __future__ import annotations

import contextlib
import os
import re
from dataclasses import dataclass
from fractions import Fraction
from typing import Iterator

from PIL import Image

from stylekit.errors import UserError
from stylekit.files.images import UNREADABLE, open_rgb, unreadable
from stylekit.files.reading import NotRegularFile, open_regular, regular_kind
from stylekit.video.extra import require_video_extra

#: Files of a folder read as frames (case-insensitive); other files in it are left alone.
FRAME_SUFFIXES = (".png", ".jpg", ".jpeg")
#: A folder of frames says nothing of its timing: FFmpeg's image-sequence default rate.
FOLDER_FPS = 25
#: FFmpeg's demuxers that open a single image or a text file as if it were a video.
NOT_VIDEO_FORMATS = ("image2", "tty")

#: The PIL transpose that turns a stored frame upright, by the clockwise turn it needs.
_UPRIGHT = {90: Image.Transpose.ROTATE_270, 180: Image.Transpose.ROTATE_180, 270: Image.Transpose.ROTATE_90}


@dataclass(frozen=True)
class Clip:
    """A checked clip. `width` x `height` is the size of the frames `frames()` yields
    (upright: a portrait phone clip is taller than wide). `pts` holds each frame's
    presentation time in units of `time_base` seconds, counted from the first frame (0),
    strictly increasing; `end` is when the last frame stops being shown. `fps` is the
    average rate, as the container states it (else measured from `pts`). `rotation` is the
    clockwise turn, in degrees (0, 90, 180, 270), that the stored frames needed to be
    upright. `has_audio`: the video has an audio stream (`stylekit.video.encode` copies
    it), and `start` is the first frame's time in the file, in seconds, where that audio
    lines up. `files`: a folder's frames, in order (empty for a video file)."""

    path: str
    width: int
    height: int
    fps: float
    time_base: Fraction
    pts: tuple[int, ...]
    end: int
    rotation: int = 0
    has_audio: bool = False
    start: Fraction = Fraction(0)
    files: tuple[str, ...] = ()

    @property
    def frame_count(self) -> int:
        return len(self.pts)

    @property
    def times(self) -> tuple[float, ...]:
        """Each frame's presentation time in seconds from the first frame."""
        return tuple(float(p * self.time_base) for p in self.pts)

    @property
    def duration(self) -> float:
        """Seconds from the first frame to the end of the last."""
        return float(self.end * self.time_base)

    def frames(self) -> Iterator[Image.Image]:
        """The frames in order, one at a time, upright, as 8-bit RGB images. UserError when
        the file changed since `open_clip` so that it no longer matches (another size, fewer
        frames, damage)."""
        if self.files:
            yield from _folder_frames(self)
        else:
            yield from _video_frames(self)


def open_clip(path: str | os.PathLike, *, folder_fps: float | Fraction = FOLDER_FPS) -> Clip:
    """The clip at `path`: a video file, or a folder of PNG/JPEG frames taken in natural
    order (frame2 before frame10) and shown at `folder_fps` frames a second. UserError, with
    one message naming the file, for anything that is not a clip stylekit can read."""
    path = os.fspath(path)
    if not os.path.exists(path):
        raise UserError(f"video not found: {path} - give a video file or a folder of frames")
    if os.path.isdir(path):
        return _open_folder(path, folder_fps)
    kind = regular_kind(path)
    if kind:
        raise UserError(f"not a regular file ({kind}): {path} - give a video file or a folder of frames")
    return _open_video(path)


# -- video files ------------------------------------------------------------------------


def _open_video(path: str) -> Clip:
    av = require_video_extra()
    with _opened(path) as container:
        stream = _video_stream(container, path)
        time_base = Fraction(stream.time_base.numerator, stream.time_base.denominator) if stream.time_base else None
        average = _rate(stream.average_rate)
        nominal = average or _rate(stream.guessed_rate) or FOLDER_FPS
        stream.thread_type = "AUTO"  # decoding with the cores there are: this pass reads every frame
        raw: list[int | None] = []
        size = rotation = None
        lengths: dict[int, int] = {}
        for index, frame in enumerate(_decoded(container, stream, path, av, lengths)):
            if size is None:
                size, rotation = (frame.width, frame.height), _rotation(frame, stream)
            elif (frame.width, frame.height) != size:
                raise UserError(f"{path}: the frames change size, from {size[0]}x{size[1]} to {frame.width}x"
                                f"{frame.height} at frame {index + 1} - stylekit stylizes clips of one size; "
                                f"re-encode it at one size")
            raw.append(frame.pts)
        has_audio = any(_is_audio(s) for s in container.streams.audio)
    if size is None:
        raise UserError(f"{path} has a video stream but no frames that decode - give a video with frames")
    time_base = time_base or Fraction(1, 90000)
    step = max(1, round(1 / (nominal * time_base)))
    pts = _increasing(raw, step)
    last_duration = lengths.get(raw[-1]) or step  # how long the container shows the last frame
    end = pts[-1] + max(1, last_duration)
    fps = average or len(pts) / float(end * time_base)
    width, height = size if rotation in (0, 180) else size[::-1]
    start = (raw[0] or 0) * time_base  # where _increasing puts 0
    return Clip(path, width, height, fps, time_base, pts, end, rotation, has_audio, start)


@contextlib.contextmanager
def _opened(path: str):
    """The input container of `path`, closed on leaving, with PyAV's errors as messages."""
    av = require_video_extra()
    try:
        container = av.open(path, "r")
    except PermissionError as exc:
        raise UserError(f"cannot read {path} ({exc.strerror or 'permission denied'}) - check that you may read it") \
            from None
    except (av.error.FFmpegError, OSError, ValueError) as exc:
        why = getattr(exc, "strerror", None) or type(exc).__name__
        raise UserError(f"not a video stylekit can read, or a damaged one ({why}): {path} - give a video file "
                        f"(MP4, MOV, MKV, WebM, ...) or a folder of frames") from None
    try:
        if container.format.name in NOT_VIDEO_FORMATS or container.format.name.endswith("_pipe"):
            raise UserError(f"{path} is {'an image' if container.format.name != 'tty' else 'text'}, not a video - "
                            f"give a video file, or a folder of frames")
        yield container
    finally:
        container.close()


def _video_stream(container, path: str):
    """The clip's video stream (the one FFmpeg picks as best, leaving out cover art)."""
    streams = [s for s in container.streams.video if not _is_cover(s)]
    if not streams:
        held = sorted({s.type for s in container.streams if not _is_cover(s)})
        what = f"it holds only {' and '.join(held)}" if held else "it holds no streams"
        raise UserError(f"{path} has no video stream ({what}) - give a video file")
    best = container.streams.best("video")
    return best if best in streams else streams[0]


def _is_cover(stream) -> bool:
    """An attached picture (an album's cover in an audio file) is a video stream of one
    image, not a clip."""
    return bool(stream.disposition & require_video_extra().stream.Disposition.attached_pic)


def _is_audio(stream) -> bool:
    return stream.type == "audio" and stream.codec_context is not None


def _decoded(container, stream, path: str, av, lengths: dict[int, int] | None = None):
    """The decoded frames of `stream`, with a damaged file's error as a message (and, into
    `lengths`, each packet's duration by its presentation time). The packets are checked
    as well as the decoding: a threaded decoder drops a packet it cannot decode without a
    word, so a file cut short is seen by its last packet, which the demuxer marks corrupt,
    or by packets missing from the count its index gives."""
    count = packets = 0

    def damaged(why: str) -> UserError:
        return UserError(f"{path} is damaged: frame {count + 1} does not decode ({why}) - repair or re-encode the "
                         f"video, or cut it before that frame")

    try:
        for packet in container.demux(stream):
            if packet.is_corrupt:
                raise damaged("the file is cut short or its data is corrupt")
            packets += bool(packet.size)
            if lengths is not None and packet.pts is not None:
                lengths[packet.pts] = packet.duration
            for frame in stream.decode(packet):
                count += 1
                yield frame
    except (av.error.FFmpegError, OSError, ValueError) as exc:
        raise damaged(getattr(exc, "strerror", None) or type(exc).__name__) from None
    if stream.frames and packets < stream.frames:
        raise damaged(f"its index lists {stream.frames} frames, {packets} are in the file")


def _rotation(frame, stream) -> int:
    """The clockwise quarter turns (in degrees) that show `frame` upright: the display
    matrix FFmpeg attaches to the frame (`VideoFrame.rotation`, counter-clockwise), else the
    `rotate` tag (clockwise) older FFmpeg wrote."""
    clockwise = -float(frame.rotation)
    if not clockwise:
        tags = {key.lower(): value for key, value in stream.metadata.items()}
        clockwise = tags.get("rotate", 0)
    try:
        return int(round(float(clockwise) / 90)) % 4 * 90
    except (ValueError, OverflowError):  # a tag that is no angle ('nan', 'up') turns nothing
        return 0


def _rate(value) -> float | None:
    """A stream's rate as a number of frames a second; None where it is not set."""
    try:
        rate = float(value) if value else 0.0
    except (TypeError, ZeroDivisionError):
        return None
    return rate if rate > 0 else None


def _increasing(raw: list[int | None], step: int) -> tuple[int, ...]:
    """Presentation times counted from the first frame, strictly increasing: a frame without
    one (some raw streams) or with the time of the one before (a damaged file) is shown one
    `step` (or one tick) after it, so that a writer can keep every frame."""
    pts: list[int] = []
    for value in raw:
        if value is None:
            value = pts[-1] + step if pts else 0
        elif pts and value <= pts[-1]:
            value = pts[-1] + 1
        pts.append(value)
    origin = pts[0]
    return tuple(p - origin for p in pts)


def _video_frames(clip: Clip) -> Iterator[Image.Image]:
    av = require_video_extra()
    transpose = _UPRIGHT.get(clip.rotation)
    count = 0
    with _opened(clip.path) as container:
        stream = _video_stream(container, clip.path)
        stream.thread_type = "AUTO"
        for frame in _decoded(container, stream, clip.path, av):
            if count == clip.frame_count:
                break
            image = frame.to_image()  # with the frame's own colour matrix (PyAV >= 17; 16 took BT.601 for all)
            if transpose is not None:
                image = image.transpose(transpose)
            if image.size != (clip.width, clip.height):
                raise _changed(clip.path)
            count += 1
            yield image
    if count != clip.frame_count:
        raise _changed(clip.path)


def _changed(path: str) -> UserError:
    return UserError(f"{path} changed while it was being read - leave it as it is during the run")


# -- folders of frames ------------------------------------------------------------------


def natural_key(name: str) -> tuple:
    """Sorts names as people number them: frame2 before frame10 (then by the name itself,
    so that frame1 and frame01 still have an order)."""
    parts = re.split(r"(\d+)", name)
    return tuple((0, int(p), "") if p.isdigit() else (1, 0, p.lower()) for p in parts if p), name


def _open_folder(path: str, fps: float | Fraction) -> Clip:
    try:
        names = os.listdir(path)
    except OSError as exc:
        raise UserError(f"cannot read the folder {path} ({exc.strerror}) - check that you may read it") from None
    names = sorted((n for n in names if n.lower().endswith(FRAME_SUFFIXES) and not n.startswith(".")),
                   key=natural_key)
    if not names:
        raise UserError(f"no frames in the folder {path} - stylekit reads its PNG and JPEG files as frames, in "
                        f"natural order (frame2 before frame10); put the frames there, or give a video file")
    files = tuple(os.path.join(path, n) for n in names)
    size = _frame_size(files[0])
    for file in files[1:]:
        if (other := _frame_size(file)) != size:
            raise UserError(f"{file} is {other[0]}x{other[1]}, but {files[0]} is {size[0]}x{size[1]} - the frames "
                            f"of a clip have one size; resize them alike")
    rate = Fraction(fps).limit_denominator(1_000_000)
    if rate <= 0:
        raise ValueError(f"folder_fps must be positive, not {fps}")
    return Clip(path, size[0], size[1], float(rate), 1 / rate, tuple(range(len(files))), len(files),
                files=files)


def _frame_size(file: str) -> tuple[int, int]:
    """The size of the frame in `file` as `open_rgb` will hand it out (after its EXIF
    orientation), from its header alone."""
    try:
        with open_regular(file) as handle, Image.open(handle) as img:
            orientation = img.getexif().get(0x0112)
            return img.size[::-1] if orientation in (5, 6, 7, 8) else img.size
    except NotRegularFile as exc:
        raise UserError(f"{exc.strerror}: {file} - a folder of frames holds image files only") from None
    except UNREADABLE as exc:
        if isinstance(exc, OSError) and exc.errno is not None:
            raise UserError(f"cannot read {file} ({exc.strerror}) - check that you may read it") from None
        raise UserError(unreadable(exc, file)) from None


def _folder_frames(clip: Clip) -> Iterator[Image.Image]:
    for file in clip.files:
        image = open_rgb(file)
        if image.size != (clip.width, clip.height):
            raise _changed(file)
        yield image
