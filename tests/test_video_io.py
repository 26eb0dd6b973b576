"""Reading and writing clips (stylekit/video/decode.py, encode.py, audio.py, extra.py), on
tiny clips built here with PyAV: 32x24, a few frames, a sine for sound."""

from __future__ import annotations

import builtins
import os
import re
from fractions import Fraction

import av  # the video extra, which the test extra installs: missing, these tests fail rather than skip
import numpy as np
import pytest
import torch
from PIL import Image

from stylekit.errors import UserError
from stylekit.video.decode import open_clip
from stylekit.video.encode import ClipWriter, FrameFolderWriter, encode_frame_files, open_writer
from stylekit.video.extra import require_video_extra

W, H = 32, 24
#: Frames are compared by the mean colour of each quadrant: x264 rings around the white
#: quadrant's edges on frames this small (8x8 transforms across a 12-row edge), which
#: averages out over a quadrant. Half the smallest difference the tests must see (frame i
#: against i+1: 20 levels of blue; up against down: 55 levels or more) tells them apart
#: whatever compression leaves.
LEVELS = 10


def frame_pixels(i: int, w: int = W, h: int = H) -> np.ndarray:
    """Frame i: a white top-left quadrant (which way is up) on a colour that changes with i."""
    pixels = np.zeros((h, w, 3), np.uint8)
    pixels[..., 1] = (40 + 30 * i) % 256
    pixels[..., 2] = (200 - 20 * i) % 256
    pixels[: h // 2, : w // 2] = 255
    return pixels


def make_clip(path, count=6, *, pts=None, time_base=Fraction(1, 1000), size=(W, H), rotation=None, tags=None,
              audio="aac", container=None, codec="libx264", pixel_format="yuv420p", options=None):
    """A clip of `count` frames (frame_pixels) at 25 fps or at `pts`, with a 440 Hz sine as
    long as the frames (`audio`: its codec, or None), and a display rotation (PyAV's
    counter-clockwise degrees) or stream `tags`."""
    pts = pts or [round(i / 25 / time_base) for i in range(count)]
    out = av.open(str(path), "w", format=container, options=options or {})
    video = out.add_stream(codec, rate=25)
    video.width, video.height, video.pix_fmt = size[0], size[1], pixel_format
    video.time_base = video.codec_context.time_base = time_base
    if rotation is not None:
        video.set_display_rotation(rotation)
    video.metadata.update(tags or {})
    sound = out.add_stream(audio, rate=8000, layout="mono") if audio else None
    for i, t in enumerate(pts):
        frame = av.VideoFrame.from_ndarray(frame_pixels(i, *size), format="rgb24")
        frame.pts, frame.time_base = t, time_base
        out.mux(video.encode(frame))
    out.mux(video.encode())
    if sound is not None:
        samples = round(8000 * (pts[-1] * time_base + Fraction(1, 25)))
        wave = (0.3 * np.sin(2 * np.pi * 440 * np.arange(samples) / 8000)).astype(np.float32)[None]
        for start in range(0, samples, 1024):
            chunk = av.AudioFrame.from_ndarray(wave[:, start:start + 1024], format="fltp", layout="mono")
            chunk.sample_rate, chunk.pts = 8000, start
            out.mux(sound.encode(chunk))
        out.mux(sound.encode())
    out.close()
    return path


def audio_of(path):
    """(codec, the time its sound ends, in seconds) of the first audio stream, or None."""
    with av.open(str(path)) as container:
        if not container.streams.audio:
            return None
        codec = container.streams.audio[0].codec_context.name
        return codec, max(frame.time + frame.samples / frame.sample_rate for frame in container.decode(audio=0))


def copy_clip(clip, path, frames=None, **options):
    with open_writer(path, like=clip, **options) as out:
        for frame in frames if frames is not None else clip.frames():
            out.write(frame)
    return open_clip(path)


def near(image: Image.Image, expected: np.ndarray) -> bool:
    """The mean colours of the four quadrants equal to within LEVELS."""
    def quadrants(pixels):
        h, w = pixels.shape[:2]
        return np.array([part.mean((0, 1)) for half in (pixels[: h // 2], pixels[h // 2:])
                         for part in (half[:, : w // 2], half[:, w // 2:])])
    return np.abs(quadrants(np.asarray(image, float)) - quadrants(expected.astype(float))).max() <= LEVELS


# -- round trips --------------------------------------------------------------------------


def test_a_round_trip_keeps_frames_timing_fps_and_audio(tmp_path):
    clip = open_clip(make_clip(tmp_path / "in.mp4"))
    assert (clip.frame_count, clip.width, clip.height, clip.fps, clip.rotation) == (6, W, H, 25, 0)
    assert clip.times == pytest.approx([i / 25 for i in range(6)]) and clip.has_audio
    frames = list(clip.frames())
    assert all(near(f, frame_pixels(i)) for i, f in enumerate(frames))
    out = copy_clip(clip, tmp_path / "out.mp4")
    assert (out.frame_count, out.width, out.height, out.fps, out.times) == (6, W, H, 25, clip.times)
    # The output against what was written (one generation of compression, as each test has).
    assert all(near(f, np.asarray(g)) for f, g in zip(out.frames(), frames))
    codec, seconds = audio_of(out.path)
    # The sound is copied as it was (AAC into MP4), as long as the input's: 0.24 s.
    assert codec == "aac" and seconds == pytest.approx(audio_of(clip.path)[1], abs=1e-3)
    assert not [n for n in os.listdir(tmp_path) if n.startswith(".")]


def test_a_variable_frame_rate_keeps_every_frame_time(tmp_path):
    pts = [0, 40, 120, 130, 300, 310]  # ms: gaps of 40, 80, 10, 170, 10
    clip = open_clip(make_clip(tmp_path / "vfr.mp4", pts=pts))
    assert clip.times == pytest.approx([p / 1000 for p in pts])
    out = copy_clip(clip, tmp_path / "out.mp4")
    assert out.times == clip.times and out.duration == clip.duration
    assert out.fps == pytest.approx(clip.fps)  # 6 frames over 0.35 s (the last lasts until 0.35 s)


@pytest.mark.skipif(not hasattr(av.video.stream.VideoStream, "set_display_rotation"),
                    reason="writing a display matrix needs PyAV 18.1")
def test_a_rotated_clip_is_read_upright_and_written_upright_without_a_flag(tmp_path):
    # PyAV's display rotation is counter-clockwise: a quarter turn left puts the stored
    # top-left quadrant at the bottom left, in a portrait frame.
    clip = open_clip(make_clip(tmp_path / "phone.mp4", rotation=90))
    upright = np.rot90(frame_pixels(0), k=1)
    assert (clip.width, clip.height, clip.rotation) == (H, W, 270)
    assert near(next(clip.frames()), upright)
    out = copy_clip(clip, tmp_path / "out.mp4")
    assert (out.width, out.height, out.rotation) == (H, W, 0)
    with av.open(str(out.path)) as container:  # what a player reads: no display matrix at all
        assert next(container.decode(video=0)).rotation == 0
    assert near(next(out.frames()), upright)


def test_the_rotate_tag_of_older_ffmpeg_turns_clockwise(tmp_path):
    clip = open_clip(make_clip(tmp_path / "old.mkv", tags={"rotate": "90"}, container="matroska", audio=None))
    assert (clip.width, clip.height, clip.rotation) == (H, W, 90)
    assert near(next(clip.frames()), np.rot90(frame_pixels(0), k=-1))


def test_odd_sizes_are_padded_by_repeating_the_edge_or_kept_in_444(tmp_path):
    # Grey noise written losslessly (crf 0): grey has no chroma to subsample, and through
    # limited-range luma (220 codes for 256 levels) a value comes back within one level, so
    # the frame must come back exactly, padded; a frame stretched to even sides would not.
    folder = tmp_path / "odd"
    folder.mkdir()
    grey = np.random.default_rng(0).integers(0, 256, (17, 33), dtype=np.uint8)
    pixels = np.repeat(grey[..., None], 3, axis=2)
    Image.fromarray(pixels).save(folder / "f1.png")
    clip = open_clip(folder)
    assert (clip.width, clip.height) == (33, 17)
    padded = copy_clip(clip, tmp_path / "out.mp4", crf=0)
    assert (padded.width, padded.height) == (34, 18)
    expected = np.pad(pixels, ((0, 1), (0, 1), (0, 0)), mode="edge").astype(int)
    assert np.abs(np.asarray(next(padded.frames())).astype(int) - expected).max() <= 1
    exact = copy_clip(clip, tmp_path / "out444.mkv", pixel_format="yuv444p", crf=0)
    assert (exact.width, exact.height) == (33, 17)
    assert np.abs(np.asarray(next(exact.frames())).astype(int) - pixels).max() <= 1
    # An odd-sized video in: read at its size.
    odd = make_clip(tmp_path / "odd.mkv", size=(33, 17), pixel_format="yuv444p", container="matroska", audio=None)
    assert (open_clip(odd).width, open_clip(odd).height) == (33, 17)


def test_audio_is_re_encoded_to_aac_only_where_the_container_does_not_fit_it(tmp_path):
    clip = open_clip(make_clip(tmp_path / "pcm.mkv", audio="pcm_s16le", container="matroska"))
    assert audio_of(copy_clip(clip, tmp_path / "out.mkv").path)[0] == "pcm_s16le"  # Matroska holds PCM
    codec, seconds = audio_of(copy_clip(clip, tmp_path / "out.mp4").path)
    # AAC ends with a whole frame (1024 samples, 0.128 s at 8 kHz) past the 0.24 s of PCM.
    assert codec == "aac" and 0.24 - 1e-3 <= seconds <= 0.24 + 0.128


def test_finished_frame_files_make_a_partial_clip_with_its_part_of_the_sound(tmp_path):
    clip = open_clip(make_clip(tmp_path / "in.mp4", count=10))
    files = []
    for i, frame in zip(range(4), clip.frames()):
        files.append(tmp_path / f"done_{i}.png")
        frame.save(files[-1])
    partial = open_clip(encode_frame_files(files, tmp_path / "partial.mp4", like=clip))
    assert partial.frame_count == 4 and partial.times == clip.times[:4]
    # Cut at the end of frame 4 (0.16 s), give or take the one AAC frame (1024 samples,
    # 0.128 s at 8 kHz) that straddles it.
    assert 0.16 <= audio_of(partial.path)[1] <= 0.16 + 0.128 + 1e-3


def test_tensors_are_written_as_images_are(tmp_path):
    with ClipWriter(tmp_path / "t.mp4", fps=10) as out:
        for i in range(3):
            out.write(torch.from_numpy(frame_pixels(i)).permute(2, 0, 1)[None].float() / 255)
    clip = open_clip(tmp_path / "t.mp4")
    assert (clip.frame_count, clip.fps, clip.has_audio) == (3, 10, False)
    assert near(next(clip.frames()), frame_pixels(0))


# -- folders of frames --------------------------------------------------------------------


def test_a_folder_is_read_in_natural_order_and_written_as_numbered_frames(tmp_path):
    folder = tmp_path / "frames"
    folder.mkdir()
    for i in range(1, 12):  # frame1 ... frame11: frame2 comes before frame10
        Image.fromarray(frame_pixels(i)).save(folder / f"frame{i}.png")
    (folder / "notes.txt").write_text("not a frame")
    clip = open_clip(folder, folder_fps=12)
    assert clip.frame_count == 11 and clip.fps == 12 and clip.times[1] == pytest.approx(1 / 12)
    assert [os.path.basename(f) for f in clip.files][:3] == ["frame1.png", "frame2.png", "frame3.png"]
    frames = list(clip.frames())
    assert all((np.asarray(f) == frame_pixels(i + 1)).all() for i, f in enumerate(frames))
    out = tmp_path / "out"
    copy_clip(clip, out)
    assert sorted(os.listdir(out))[:2] == ["frame_00001.png", "frame_00002.png"] and len(os.listdir(out)) == 11
    assert (np.asarray(Image.open(out / "frame_00011.png")) == frame_pixels(11)).all()
    copy_clip(clip, out, frames[:2])  # an earlier output of stylekit's is replaced whole
    assert sorted(os.listdir(out)) == ["frame_00001.png", "frame_00002.png"]
    assert not [n for n in os.listdir(tmp_path) if n.startswith(".")]


def test_a_folder_holding_other_files_is_not_written_into(tmp_path):
    (tmp_path / "mine").mkdir()
    (tmp_path / "mine" / "holiday.jpg").write_bytes(b"x")
    with pytest.raises(UserError, match=r"mine holds files stylekit did not write \(holiday.jpg"):
        FrameFolderWriter(tmp_path / "mine")
    assert os.listdir(tmp_path / "mine") == ["holiday.jpg"]


# -- writes that fail ---------------------------------------------------------------------


def test_a_write_that_fails_midway_leaves_no_output_and_no_temporary_file(tmp_path):
    target = tmp_path / "out.mp4"
    with pytest.raises(RuntimeError):
        with ClipWriter(target, fps=25) as out:
            out.write(Image.fromarray(frame_pixels(0)))
            raise RuntimeError("the run failed")
    assert os.listdir(tmp_path) == []
    target.write_bytes(b"the previous output")
    with pytest.raises(ValueError, match="frame 2 is 10x10"):
        with ClipWriter(target, fps=25) as out:
            out.write(Image.fromarray(frame_pixels(0)))
            out.write(Image.new("RGB", (10, 10)))
    assert os.listdir(tmp_path) == ["out.mp4"] and target.read_bytes() == b"the previous output"


def test_bad_writer_options_are_all_named(tmp_path):
    with pytest.raises(UserError) as caught:
        ClipWriter(tmp_path / "out.avi", crf=60, preset="quick")
    text = str(caught.value)
    assert "not '.avi'" in text and "crf: 60 is not" in text and "preset: unknown x264 preset 'quick'" in text
    assert os.listdir(tmp_path) == []


# -- bad input ----------------------------------------------------------------------------


def _png(path, size=(W, H)):
    Image.new("RGB", size, "red").save(path, format="PNG")
    return path


def _truncated(tmp_path, index_first=True):
    """An MP4 cut short, as a copy or a recording that stopped: with its index first (as
    written for streaming), the frames that are there decode; with its index last, there
    is no index."""
    options = {"movflags": "+faststart"} if index_first else {}
    whole = make_clip(tmp_path / "whole.mp4", count=30, audio=None, options=options)
    data = whole.read_bytes()
    (tmp_path / "cut.mp4").write_bytes(data[: len(data) * 2 // 3])
    return tmp_path / "cut.mp4"


def _fifo(tmp_path):
    os.mkfifo(tmp_path / "pipe.mp4")
    return tmp_path / "pipe.mp4"


def _with_silence(path, video: bool):
    """A file with an AAC stream of 1024 samples of silence and, with `video`, a video
    stream that gets no frame (Matroska keeps such a track; MP4 drops it)."""
    out = av.open(str(path), "w")
    if video:
        stream = out.add_stream("libx264", rate=25)
        stream.width, stream.height, stream.pix_fmt = W, H, "yuv420p"
    sound = out.add_stream("aac", rate=8000, layout="mono")
    chunk = av.AudioFrame.from_ndarray(np.zeros((1, 1024), np.float32), format="fltp", layout="mono")
    chunk.sample_rate, chunk.pts = 8000, 0
    out.mux(sound.encode(chunk))
    out.mux(sound.encode())
    out.close()
    return path


def _folder(tmp_path, *files):
    folder = tmp_path / "frames"
    folder.mkdir()
    for name, size in files:
        _png(folder / name, size)
    return folder


BAD_INPUTS = {
    "text": (lambda p: (p / "notes.mp4").write_text("hello\n" * 50) and p / "notes.mp4",
             r"not a video stylekit can read, or a damaged one \(.*\): .*notes.mp4 - give a video file"),
    "image": (lambda p: _png(p / "still.png"), r"still.png is an image, not a video"),
    "image named as a video": (lambda p: _png(p / "still.mp4"), r"still.mp4 is an image, not a video"),
    "no video stream": (lambda p: _with_silence(p / "sound.m4a", video=False), r"sound.m4a has no video stream \(it holds only audio\)"),
    "no frames": (lambda p: _with_silence(p / "empty.mkv", video=True), r"empty.mkv has a video stream but no frames that decode"),
    "damaged": (_truncated, r"cut.mp4 is damaged: frame \d+ does not decode"),
    "cut before its index": (lambda p: _truncated(p, index_first=False),
                             r"not a video stylekit can read, or a damaged one \(.*\): .*cut.mp4"),
    "fifo": (_fifo, r"not a regular file \(a FIFO\): .*pipe.mp4"),
    "missing": (lambda p: p / "gone.mp4", r"video not found: .*gone.mp4"),
    "empty folder": (lambda p: _folder(p), r"no frames in the folder .*frames - stylekit reads its PNG and JPEG"),
    "folder of two sizes": (lambda p: _folder(p, ("a1.png", (W, H)), ("a2.png", (W, H + 2))),
                            rf"a2.png is {W}x{H + 2}, but .*a1.png is {W}x{H} - the frames of a clip have one size"),
    "unreadable frame": (lambda p: _folder(p, ("a1.png", (W, H))) and (p / "frames" / "a2.png").write_text("no")
                         and p / "frames", r"not a readable image .*a2.png - save it again"),
}


@pytest.mark.parametrize("case", BAD_INPUTS)
def test_bad_input_gets_one_message_naming_the_file(tmp_path, case):
    make, message = BAD_INPUTS[case]
    path = make(tmp_path)
    with pytest.raises(UserError) as caught:
        clip = open_clip(path)
        list(clip.frames())
    assert len(caught.value.problems) == 1
    assert caught.value.problems[0].message.count("\n") == 0
    assert re.search(message, str(caught.value)), str(caught.value)


# -- the optional extra -------------------------------------------------------------------


@pytest.mark.parametrize("module", ["av", "cv2"])
def test_without_the_extra_the_message_says_what_to_install(monkeypatch, tmp_path, module):
    real = builtins.__import__

    def without(name, *args, **kwargs):
        if name == module or name.startswith(module + "."):
            raise ImportError(f"No module named '{module}'")
        return real(name, *args, **kwargs)

    monkeypatch.setattr(builtins, "__import__", without)
    with pytest.raises(UserError, match=r"stylekit video needs the optional extra: pip install 'stylekit\[video\]' "
                                        rf"\(.*No module named '{module}'\)"):
        require_video_extra()
    with pytest.raises(UserError, match="optional extra"):
        open_clip(make_clip(tmp_path / "in.mp4", audio=None) if module == "cv2" else _png(tmp_path / "x.mp4"))
