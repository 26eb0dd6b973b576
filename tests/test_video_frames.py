"""The frame loop of `stylekit.video.frames` on tiny clips made here: a pan with an occluder
whose flow is known exactly (a stand-in flow provider returns it), with the tiny random
backbone. The warm start, the earlier outputs handed to the temporal loss, scene cuts,
resume bit for bit, a stop or a signal, a flow provider's NaN, a frame that diverges, and
the multi-pass order."""

import json
import os
import signal

import numpy as np
import pytest
import torch
from PIL import Image

import stylekit
from stylekit.builtins import temporal
from stylekit.contract.components import LossTerm
from stylekit.contract.flow import FlowProvider
from stylekit.contract.hookspecs import hookimpl
from stylekit.errors import PluginError, UserError
from stylekit.files.images import to_image, to_tensor
from stylekit.plugins.registry import PluginInfo
from stylekit.testing import TINY_LOSSES, pattern, tiny_registry
from stylekit.video import frames as frames_module
from stylekit.video.frames import FrameDiverged, stylize_frames
from stylekit.video.start import warped_earlier
from stylekit.video.warp import certainty

W, H, PAN = 32, 24, 10
OCCLUDER = (slice(8, 16), slice(10, 16))  # rows, columns: a red block that stays where it is in the frame


def with_temporal(extra=()):
    """The tiny registry, with the built-in `temporal` term registered where the installed
    stylekit does not list it yet (an install from before the term)."""
    registry = tiny_registry(extra)
    if "temporal" not in registry.components["loss"]:
        registry = tiny_registry([*extra, (temporal, PluginInfo("temporal", "stylekit", stylekit.__version__))])
    return registry


REGISTRY = with_temporal()
BACKGROUND = torch.rand(1, 3, H, W + PAN, generator=torch.Generator().manual_seed(3))


def pan_frame(t: int) -> torch.Tensor:
    """The camera pans right a pixel a frame: frame t's pixel x shows the background at x + t."""
    frame = BACKGROUND[..., t:t + W].clone()
    frame[(..., *OCCLUDER)] = torch.tensor([0.9, 0.1, 0.1]).view(1, 3, 1, 1)
    return frame


def pan_flow(source: int, target: int) -> torch.Tensor:
    """The exact flow: the background moves by source - target pixels, the occluder not at all."""
    flow = torch.zeros(1, 2, H, W)
    flow[:, 0] = source - target
    flow[(slice(None), 0, *OCCLUDER)] = 0
    return flow


class KnownFlow(FlowProvider):
    """Returns the pan's true flow; across `cut` (a frame of another picture) flows that lead
    nowhere consistent, as a real provider's do between unrelated images."""

    name = "known"

    def __init__(self, cut: int | None = None, broken: bool = False, reach: int | None = None):
        super().__init__(FlowProvider.Params())
        self.cut, self.broken, self.reach = cut, broken, reach  # reach: the farthest pair it can trace

    def flow(self, source, target, pair):
        if self.broken:
            return torch.full((1, 2, H, W), float("nan"))
        far = self.reach is not None and abs(pair.source - pair.target) > self.reach
        if far or self.cut is not None and (pair.source < self.cut) != (pair.target < self.cut):
            return torch.full((1, 2, H, W), 5.0)  # both ways the same way: no round trip comes back
        return pan_flow(pair.source, pair.target)


RECIPE = """
[images]
style = "style.png"
[output]
width = 32
[backbone]
name = "tiny"
weights = "random"
[[stage]]
width = 16
steps = 3
[[stage]]
width = 32
steps = 3
""" + TINY_LOSSES + """
[[loss]]
name = "temporal"
weight = 100
[optimizer]
name = "adam"
[optimizer.params]
lr = 0.05
[run]
device = "cpu"
precision = "fp32"
progress_every = 0
[video]
steps = 2
offsets = [1, 2]
"""


def clip(count: int = 4) -> list[Image.Image]:
    return [to_image(pan_frame(t)) for t in range(count)]


def plan_for(frames, overrides=None, registry=REGISTRY, recipe=RECIPE):
    return stylekit.load(recipe, overrides, content=frames[0], style=pattern(H, W, "style"), registry=registry)


@pytest.fixture
def runs(monkeypatch):
    """Each frame run's plan, as the loop hands it to run_plans."""
    seen = []
    real = frames_module.run_plans

    def recording(plans, callbacks, reuse=None, *args, **kwargs):
        seen.append(plans[0])
        return real(plans, callbacks, reuse, *args, **kwargs)
    monkeypatch.setattr(frames_module, "run_plans", recording)
    return seen


def pixels(paths) -> list[np.ndarray]:
    return [np.asarray(Image.open(path)) for path in paths]


def test_a_later_frame_starts_from_the_warped_output_with_holes_from_the_content(tmp_path, runs):
    frames = clip(3)
    fed = []
    result = stylize_frames(plan_for(frames), frames, KnownFlow(), tmp_path / "work",
                            callback=lambda s: fed.append((s.frame, s.step.step, s.step.losses["temporal"])))
    assert result.status == "finished" and result.cuts == [0] and len(result.paths) == 3
    out0 = to_tensor(Image.open(result.paths[0]), (H, W))
    start = runs[1].images.start
    sure = certainty(pan_flow(1, 0), pan_flow(0, 1))
    # Holes where the flow cannot be trusted: the column the pan brings in at the right, and
    # the background the block uncovers at its left; elsewhere the previous output, shifted.
    assert not sure[..., :, W - 1].any() and not sure[..., 12, 9].any() and sure[..., 2, 2].all()
    shifted = torch.cat([out0[..., 1:], out0[..., -1:]], dim=-1)
    shifted[(..., *OCCLUDER)] = out0[(..., *OCCLUDER)]  # the block does not move
    expected = sure * shifted + (1 - sure) * to_tensor(frames[1], (H, W))  # the content as read: 8 bits
    assert torch.allclose(start, expected, atol=1e-5)
    # The shot's first frame runs the recipe's stages and steps; later ones the final size alone.
    assert [s.steps for s in runs[0].stages] == [3, 3] and [s.steps for s in runs[1].stages] == [2]
    assert [(p.offset, p.anchor) for p in runs[1].images.previous] == [(1, False), (1, True)]
    assert [(p.offset, p.anchor) for p in runs[2].images.previous] == [(1, False), (2, False), (2, True)]
    # The temporal term is inert on frame 0 and pulls once a later frame moves off its start.
    assert all(value == 0 for frame, _, value in fed if frame == 0)
    assert any(value > 0 for frame, _, value in fed if frame == 2)
    assert result.steps == [6, 2, 2]


def test_the_earlier_outputs_reach_the_temporal_term_at_each_stage(tmp_path, monkeypatch):
    from stylekit.run import build  # patched there: where build_objective calls it

    handed = []
    real = build.compute_targets

    def recording(*args, **kwargs):
        targets = real(*args, **kwargs)
        handed.append([(p.offset, tuple(p.image.shape), tuple(p.certainty.shape)) for p in targets.previous])
        return targets
    monkeypatch.setattr(build, "compute_targets", recording)
    frames = clip(3)
    stylize_frames(plan_for(frames), frames, KnownFlow(), tmp_path / "work")
    # Each stage's targets: frame 0's none (it runs two stages); frame 1's the frame before,
    # which is also the shot's anchor (last); frame 2's two frames before, the second the anchor.
    one = (1, 3, H, W), (1, 1, H, W)
    assert handed == [[], [], [(1, *one), (1, *one)], [(1, *one), (2, *one), (2, *one)]]


def test_later_frames_are_held_to_the_shots_anchor_too(tmp_path, runs):
    frames = clip(4)
    result = stylize_frames(plan_for(frames, {"video.offsets": [1]}), frames, KnownFlow(), tmp_path / "work")
    assert result.status == "finished"
    held = [[(p.offset, p.anchor) for p in run.images.previous] for run in runs]
    # Frame 0 is the anchor: frame 1 is held to it as the frame before and as the anchor.
    assert held == [[], [(1, False), (1, True)], [(1, False), (2, True)], [(1, False), (3, True)]]
    out0 = to_tensor(Image.open(result.paths[0]), (H, W))
    anchor = runs[3].images.previous[1]
    sure = certainty(pan_flow(3, 0), pan_flow(0, 3))
    shifted = torch.cat([out0[..., 3:], out0[..., -1:].expand(-1, -1, -1, 3)], dim=-1)
    shifted[(..., *OCCLUDER)] = out0[(..., *OCCLUDER)]
    # The anchor holds still regions only: the block, which stays where it is; the panning
    # background, three pixels from where it was, answers to the frames before.
    still = torch.zeros(1, 1, H, W)
    still[(..., *OCCLUDER)] = 1
    assert torch.equal(anchor.certainty, sure * still) and torch.allclose(anchor.image * sure, shifted * sure, atol=1e-5)
    # It holds; it does not start: frame 3 starts from frame 2 alone where that is certain.
    out2 = to_tensor(Image.open(result.paths[2]), (H, W))
    near = runs[3].images.previous[0]
    expected = near.certainty * near.image + (1 - near.certainty) * to_tensor(frames[3], (H, W))
    assert torch.allclose(runs[3].images.start, expected, atol=1e-6) and near.image.ne(out2).any()


def test_without_video_anchor_nothing_is_held_to_the_shots_start(tmp_path, runs):
    frames = clip(4)
    stylize_frames(plan_for(frames, {"video.offsets": [1], "video.anchor": False}), frames, KnownFlow(), tmp_path / "w")
    assert [[p.offset for p in run.images.previous] for run in runs] == [[], [1], [1], [1]]


def test_an_anchor_without_its_flow_is_refused_by_name():
    # The anchor is warped by its own flow; one the caller did not pass is its mistake, said so.
    image = torch.rand(1, 3, 4, 4)
    flows = {1: (torch.zeros(1, 2, 4, 4), torch.ones(1, 1, 4, 4))}
    with pytest.raises(ValueError, match="the anchor, 3 frame"):
        warped_earlier({1: image}, flows, anchor=3)


def test_an_anchor_that_cannot_be_traced_passes_on_and_resume_keeps_it(tmp_path, runs):
    # Flows reach 2 frames: frame 3 cannot trace frame 0, so it becomes the anchor; frame 5
    # is held to it. A video stopped at frame 5 and resumed makes the same frames.
    frames, overrides = clip(6), {"video.offsets": [1]}
    whole = stylize_frames(plan_for(frames, overrides), frames, KnownFlow(reach=2), tmp_path / "whole")
    held = [[(p.offset, p.anchor) for p in run.images.previous] for run in runs]
    assert held[2:] == [[(1, False), (2, True)], [(1, False), (3, True)], [(1, False), (1, True)], [(1, False), (2, True)]]
    assert whole.cuts == [0]

    def stop_in_frame_5(step):
        if step.frame == 5 and step.step.step == 1:
            step.stop()
    stylize_frames(plan_for(frames, overrides), frames, KnownFlow(reach=2), tmp_path / "part", callback=stop_in_frame_5)
    resumed = stylize_frames(plan_for(frames, overrides), frames, KnownFlow(reach=2), tmp_path / "part", resume=True)
    assert resumed.status == "finished"
    assert all(np.array_equal(a, b) for a, b in zip(pixels(whole.paths), pixels(resumed.paths), strict=True))
    assert json.loads((tmp_path / "part" / "state.json").read_text())["anchors"] == [3]


def test_a_recipe_without_the_term_gets_it_and_says_so(tmp_path):
    frames = clip(2)
    recipe = RECIPE.replace('[[loss]]\nname = "temporal"\nweight = 100\n', "")
    result = stylize_frames(plan_for(frames, recipe=recipe), frames, KnownFlow(), tmp_path / "work")
    assert len(result.notes) == 1 and "added one with weight" in result.notes[0]


def test_a_scene_cut_restarts_as_a_first_frame(tmp_path, runs):
    frames = clip(4)
    frames[2] = pattern(H, W, "content")  # another picture: a new shot
    result = stylize_frames(plan_for(frames), frames, KnownFlow(cut=2), tmp_path / "work")
    assert result.cuts == [0, 2]
    assert [s.steps for s in runs[2].stages] == [3, 3] and runs[2].images.start is None and runs[2].images.previous == ()
    # Frame 3 looks back to frame 2 only (the frame before and the new shot's anchor): frame 1
    # is of the shot before.
    assert [(p.offset, p.anchor) for p in runs[3].images.previous] == [(1, False), (1, True)]


def test_resume_after_a_stop_makes_the_frames_of_an_uninterrupted_run(tmp_path):
    frames = clip(4)
    whole = stylize_frames(plan_for(frames), frames, KnownFlow(), tmp_path / "whole")

    def stop_in_frame_2(step):
        if step.frame == 2 and step.step.step == 1:
            step.stop()
    stopped = stylize_frames(plan_for(frames), frames, KnownFlow(), tmp_path / "part", callback=stop_in_frame_2)
    assert stopped.status == "stopped" and len(stopped.paths) == 2  # the frame in progress is dropped
    again = []
    resumed = stylize_frames(plan_for(frames), frames, KnownFlow(), tmp_path / "part", resume=True,
                             callback=lambda s: again.append(s.frame))
    assert resumed.status == "finished" and sorted(set(again)) == [2, 3]
    assert all(np.array_equal(a, b) for a, b in zip(pixels(whole.paths), pixels(resumed.paths), strict=True))


def test_a_signal_ends_the_video_after_the_step_in_progress(tmp_path):
    frames = clip(3)

    def interrupt(step):
        if step.frame == 1 and step.step.step == 1:
            os.kill(os.getpid(), signal.SIGINT)
    result = stylize_frames(plan_for(frames), frames, KnownFlow(), tmp_path / "work", callback=interrupt)
    assert result.status == "interrupted" and len(result.paths) == 1


def test_resume_refuses_another_recipe_and_a_new_run_a_used_folder(tmp_path):
    frames = clip(2)
    stylize_frames(plan_for(frames), frames, KnownFlow(), tmp_path / "work")
    with pytest.raises(UserError, match="made with another recipe"):
        stylize_frames(plan_for(frames, {"video.steps": 3}), frames, KnownFlow(), tmp_path / "work", resume=True)
    with pytest.raises(UserError, match="already holds a video's frames - resume it"):
        stylize_frames(plan_for(frames), frames, KnownFlow(), tmp_path / "work")
    other = clip(3)[1:]
    with pytest.raises(UserError, match="its frame 0 differs"):
        stylize_frames(plan_for(frames), other, KnownFlow(), tmp_path / "work", resume=True)


def test_a_folder_begun_by_an_earlier_stylekit_is_told_so_and_kept(tmp_path):
    frames = clip(2)
    stylize_frames(plan_for(frames), frames, KnownFlow(), tmp_path / "work")
    state_file = tmp_path / "work" / "state.json"
    state = json.loads(state_file.read_text())
    state["format"] = "stylekit-video-2"  # its key was computed another way
    state_file.write_text(json.dumps(state))
    before = {p: p.read_bytes() for p in (tmp_path / "work").rglob("*") if p.is_file()}
    with pytest.raises(UserError, match=r"begun by another version of stylekit \(its work folder stylekit-video-2, "
                                        r"this version's stylekit-video-3\).*start the video again in another folder"):
        stylize_frames(plan_for(frames), frames, KnownFlow(), tmp_path / "work", resume=True)
    assert {p: p.read_bytes() for p in (tmp_path / "work").rglob("*") if p.is_file()} == before


def test_a_flow_provider_that_returns_nan_is_named(tmp_path):
    frames = clip(2)
    with pytest.raises(PluginError) as caught:
        stylize_frames(plan_for(frames), frames, KnownFlow(broken=True), tmp_path / "work", package="stylekit-known")
    assert str(caught.value) == (f"flow: flow 'known' of package 'stylekit-known' broke the contract for frames 1 -> 0: "
                                 f"flow() returned {2 * H * W} non-finite values (NaN or infinity) among its {2 * H * W} "
                                 "- a bug in stylekit-known")
    assert (tmp_path / "work" / "pass1" / "000000.png").is_file()  # the frame before it is kept


class NaNOnLaterFrames(LossTerm):
    """Goes NaN as soon as it has earlier frames: a bug that shows on a video's second frame."""

    name = "nan_later"
    reads_features = False

    def prepare(self, targets):
        self.bad = bool(targets.previous)

    def forward(self, features, image):
        return image.mean() * (float("nan") if self.bad else 0.0)


class Fragile:
    @hookimpl
    def register_losses(self, register):
        register(NaNOnLaterFrames)


def test_a_frame_that_diverges_fails_the_video_naming_the_frame(tmp_path):
    frames = clip(3)
    registry = with_temporal([(Fragile(), PluginInfo("fragile", "stylekit-fragile", "1.0"))])
    recipe = RECIPE + '[[loss]]\nname = "nan_later"\n'
    with pytest.raises(FrameDiverged) as caught:
        stylize_frames(plan_for(frames, registry=registry, recipe=recipe), frames, KnownFlow(), tmp_path / "work")
    assert caught.value.frame == 1 and str(caught.value).startswith("frame 1: the run diverged: nan_later")


def test_multi_pass_alternates_direction_and_blends_with_the_neighbour(tmp_path, runs):
    frames = clip(3)
    order = []
    result = stylize_frames(plan_for(frames, {"video.passes": 3}), frames, KnownFlow(), tmp_path / "work",
                            callback=lambda s: order.append((s.pass_number, s.frame)) if s.step.step == 1 else None)
    assert order == [(1, 0), (1, 1), (1, 2), (2, 2), (2, 1), (2, 0), (3, 0), (3, 1), (3, 2)]
    assert result.status == "finished" and [p.parent.name for p in result.paths] == ["pass3"] * 3
    assert result.steps == [6 + 2 + 2, 2 + 2 + 2, 2 + 2 + 2]
    # Pass 2, frame 1: its own pass-1 output moved half way to frame 2's pass-2 output where certain.
    work = tmp_path / "work"
    own = to_tensor(Image.open(work / "pass1" / "000001.png"), (H, W))
    [neighbour] = runs[4].images.previous
    assert neighbour.offset == 1
    assert torch.allclose(runs[4].images.start, own + 0.5 * neighbour.certainty * (neighbour.image - own), atol=1e-6)
    # Each later pass's first frame has no neighbour: it starts from its own output.
    assert runs[3].images.previous == () and torch.equal(runs[3].images.start, to_tensor(
        Image.open(work / "pass1" / "000002.png"), (H, W)))


def test_multi_pass_resumes_within_a_later_pass_to_the_same_frames(tmp_path):
    frames = clip(3)
    plan = plan_for(frames, {"video.passes": 2})
    whole = stylize_frames(plan, frames, KnownFlow(), tmp_path / "whole")

    def stop_in_pass_2(step):
        if step.pass_number == 2 and step.frame == 1 and step.step.step == 1:
            step.stop()
    stopped = stylize_frames(plan, frames, KnownFlow(), tmp_path / "part", callback=stop_in_pass_2)
    # Frame 2 is done in pass 2 (the pass goes backward); 1 and 0 are still pass 1's.
    assert stopped.status == "stopped" and [p.parent.name for p in stopped.paths] == ["pass1", "pass1", "pass2"]
    resumed = stylize_frames(plan, frames, KnownFlow(), tmp_path / "part", resume=True)
    assert resumed.status == "finished" and [p.parent.name for p in resumed.paths] == ["pass2"] * 3
    assert all(np.array_equal(a, b) for a, b in zip(pixels(whole.paths), pixels(resumed.paths), strict=True))
