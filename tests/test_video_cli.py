"""`stylekit video` and `stylekit video-metrics` from the command line, on clips made here
(a few frames of a pan, 40x24) with the tiny random backbone: what is written, what is kept
when a video stops, resuming it, and one message for each kind of bad input."""

import json

import av
import numpy as np
import pytest
from PIL import Image

import stylekit
from stylekit.builtins import temporal
from stylekit.commands import video_run
from stylekit.plugins.registry import PluginInfo
from stylekit.testing import pattern, run_cli, tiny_registry, write_recipe

W, H, FRAMES = 40, 24, 4


def registry():
    extra = []
    if "temporal" not in tiny_registry().components["loss"]:  # an install from before the term
        extra = [(temporal, PluginInfo("temporal", "stylekit", stylekit.__version__))]
    return tiny_registry(extra)


def write_clip(path, frames=FRAMES, size=(W, H)):
    """A pan over the test pattern, 2 px a frame, at 10 fps."""
    wide = np.asarray(pattern(size[1], size[0] + 2 * frames, "content"))
    with av.open(str(path), "w") as out:
        stream = out.add_stream("libx264", rate=10)
        stream.width, stream.height, stream.pix_fmt = size[0], size[1], "yuv420p"
        stream.options = {"crf": "0"}
        for t in range(frames):
            frame = av.VideoFrame.from_ndarray(np.ascontiguousarray(wide[:, 2 * t:2 * t + size[0]]), format="rgb24")
            for packet in stream.encode(frame):
                out.mux(packet)
        for packet in stream.encode():
            out.mux(packet)
    return path


def frames_of(path):
    with av.open(str(path)) as clip:
        return [frame.to_ndarray(format="rgb24") for frame in clip.decode(video=0)]


@pytest.fixture
def clip_and_recipe(tmp_path):
    recipe = write_recipe(tmp_path, body='[[loss]]\nname = "content"\nweight = 1e4\nlayers = ["c3"]\n\n'
                          '[[loss]]\nname = "gram"\nweight = 1e6\nlayers = ["r1", "r2"]\n\n'
                          '[video]\nsteps = 2\noffsets = [1]\n\n[flow]\nname = "dis"\nparams = { preset = "ultrafast" }\n')
    return write_clip(tmp_path / "clip.mp4"), recipe


def video(*args):
    return run_cli("video", *map(str, args), registry=registry())


def test_a_clip_is_stylized_at_its_own_size_and_the_work_folder_removed(clip_and_recipe, tmp_path):
    clip, recipe = clip_and_recipe
    status, _, err = video(clip, "-r", recipe, "-o", tmp_path / "out.mp4")
    assert status == 0, err
    frames = frames_of(tmp_path / "out.mp4")
    assert len(frames) == FRAMES and frames[0].shape == (H, W, 3)  # not the recipe's width 64
    assert not (tmp_path / "out.mp4.frames").exists()
    assert "note: the recipe has no temporal loss" in err.splitlines()[1]  # said before the frames run
    assert f"wrote {tmp_path / 'out.mp4'} ({FRAMES} frames" in err


def test_a_stopped_video_keeps_a_partial_video_and_resumes_to_the_same_frames(clip_and_recipe, tmp_path, monkeypatch):
    clip, recipe = clip_and_recipe
    assert video(clip, "-r", recipe, "-o", tmp_path / "whole.mp4", "--keep-frames")[0] == 0
    calls = video_run.FrameProgress.__call__

    def stop_in_frame_two(self, step):
        calls(self, step)
        if step.frame == 2:
            step.stop()

    monkeypatch.setattr(video_run.FrameProgress, "__call__", stop_in_frame_two)
    status, _, err = video(clip, "-r", recipe, "-o", tmp_path / "out.mp4")
    assert status == 0, err
    assert "stopped at frame 3/4" in err
    assert f"to go on, run stylekit video {clip} -r {recipe} -o {tmp_path / 'out.mp4'} --resume" in err
    assert len(frames_of(tmp_path / "out.partial.mp4")) == 2 and not (tmp_path / "out.mp4").exists()
    monkeypatch.undo()
    status, _, err = video(clip, "-r", recipe, "-o", tmp_path / "out.mp4", "--resume", "--keep-frames")
    assert status == 0, err
    assert not (tmp_path / "out.partial.mp4").exists()
    # Frames are kept as 8-bit PNGs and a resumed video starts from them: the same pixels.
    for name in ("000000", "000001", "000002", "000003"):
        whole = np.asarray(Image.open(tmp_path / "whole.mp4.frames" / "pass1" / f"{name}.png"))
        assert (np.asarray(Image.open(tmp_path / "out.mp4.frames" / "pass1" / f"{name}.png")) == whole).all(), name


@pytest.mark.parametrize("make, output, said", [
    (lambda p: p.write_text("not a video"), "out.mp4", "clip.mp4"),
    (None, "out.gif", "must end in .mp4"),
    (None, "clip.mp4", "would overwrite the input"),
    (None, "missing/out.mp4", "does not exist"),
])
def test_bad_input_is_one_message_and_exit_2(clip_and_recipe, tmp_path, make, output, said):
    clip, recipe = clip_and_recipe
    if make is not None:
        make(clip)
    status, _, err = video(clip, "-r", recipe, "-o", tmp_path / output)
    assert status == 2
    assert said in err and "Traceback" not in err and len(err.strip().splitlines()) == 1, err


def test_without_the_extra_it_says_what_to_install(clip_and_recipe, tmp_path, monkeypatch):
    import builtins

    real_import = builtins.__import__

    def no_av(name, *args, **kwargs):
        if name == "av":
            raise ImportError("No module named 'av'")
        return real_import(name, *args, **kwargs)

    monkeypatch.setattr(builtins, "__import__", no_av)
    clip, recipe = clip_and_recipe
    status, _, err = video(clip, "-r", recipe, "-o", tmp_path / "out.mp4")
    assert status == 2 and "pip install 'stylekit[video]'" in err


def test_video_metrics_grades_a_clip_against_its_input(clip_and_recipe, tmp_path):
    clip, _ = clip_and_recipe
    status, out, err = run_cli("video-metrics", str(clip), "--input", str(clip), "--json", str(tmp_path / "m.json"))
    assert status == 0, err
    figures = json.loads((tmp_path / "m.json").read_text())
    # A clip graded against itself: its warping error is the input's own, exactly.
    assert figures["warping_error"] == figures["input_warping_error"]
    assert "warping error at 1 frame" in out and "ratio 1.00" in out


def test_stylize_video_from_python_matches_the_command(clip_and_recipe, tmp_path):
    clip, recipe = clip_and_recipe
    assert video(clip, "-r", recipe, "-o", tmp_path / "cli", "--keep-frames")[0] == 0
    seen = []
    result = stylekit.stylize_video(recipe, clip, tmp_path / "api", lambda step: seen.append(step.frame),
                                    registry=registry(), progress=False)
    assert result.status == "finished" and result.done == FRAMES and sorted(set(seen)) == list(range(FRAMES))
    cli_frames, api_frames = sorted((tmp_path / "cli").glob("*.png")), sorted((tmp_path / "api").glob("*.png"))
    assert len(api_frames) == FRAMES
    for mine, theirs in zip(api_frames, cli_frames):
        assert (np.asarray(Image.open(mine)) == np.asarray(Image.open(theirs))).all()
