"""The live page of `stylekit video --live`: the frame in progress with the previous frame's
output beside it, each frame's panels replacing the last one's, and Stop ending the video."""

import json
import urllib.request

import pytest
import torch

from stepinfo_fakes import Counter, fake_steps
from stylekit.commands.video_live import VideoCallback
from stylekit.testing import tiny_registry, write_recipe
from stylekit.recipe.load import load_recipe
from stylekit.video.frames import FrameStep


@pytest.fixture
def plan(tmp_path):
    return load_recipe(write_recipe(tmp_path), tiny_registry())


def state(live):
    with urllib.request.urlopen(live.url + "state", timeout=10) as response:
        return json.loads(response.read())["runs"]


def frame_steps(frame, counter, stopped):
    previous = None if frame == 0 else torch.full((1, 3, 8, 8), frame / 10)
    for info in fake_steps(4, counter):
        yield FrameStep(frame, 3, info, previous, _stop=lambda: stopped.append(frame))


def test_each_frame_shows_with_the_previous_output_beside_it(live, plan):
    callback, counter, stopped = VideoCallback(live, "clip.mp4", plan), Counter(), []
    for step in frame_steps(0, counter, stopped):
        callback(step)
    assert [run["label"] for run in state(live)] == ["clip.mp4: frame 1/3"]
    for step in frame_steps(1, counter, stopped):
        callback(step)
    runs = state(live)
    assert [run["label"] for run in runs] == ["clip.mp4: frame 2/3", "the output before it"]
    assert runs[1]["status"] == "finished" and runs[1]["image_version"] == 1
    image = live.image_bytes(runs[1]["key"], "current")
    assert image is not None and image[:2] == b"\xff\xd8"  # a JPEG of frame 1's output


def test_stop_on_the_page_ends_the_video_after_the_step(live, plan):
    callback, counter, stopped = VideoCallback(live, "clip.mp4", plan), Counter(), []
    steps = frame_steps(1, counter, stopped)
    callback(next(steps))
    live.request_stop()
    callback(next(steps))
    assert stopped == [1]
