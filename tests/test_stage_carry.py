"""What a later stage starts from (`[[stage]] carry`): the stage before's result upsampled
("image", the default, unchanged), or the content at the stage's size plus the change the
stage before made, upsampled ("change", which keeps the photo's detail the smaller stage
could not hold)."""

import pytest
import torch
import torch.nn.functional as F

import stylekit

from planning import plan_for
from stylekit.files.images import to_tensor
from stylekit.run import colour
from stylekit.run.build import stage_images
from stylekit.testing import TINY_LOSSES, run_cli, tiny_registry, write_recipe


def two_stages_recipe(tmp_path, carry: str | None = None):
    line = f'carry = "{carry}"\n' if carry else ""
    body = TINY_LOSSES + f"\n[[stage]]\nwidth = 32\nsteps = 2\n\n[[stage]]\nwidth = 64\nsteps = 2\n{line}"
    return write_recipe(tmp_path, body)


def two_stages(tmp_path, carry: str | None = None, **overrides):
    return plan_for(two_stages_recipe(tmp_path, carry), **overrides)


def content_at(plan, hw):
    return to_tensor(plan.images.content, hw)


def coarse_size(plan):
    return tuple(stage_images(plan, plan.stages[0]).content.shape[-2:])


def test_a_stage_carries_the_image_unless_told(tmp_path):
    plan = two_stages(tmp_path)
    assert [s.carry for s in plan.stages] == ["image", "image"]
    previous = torch.rand(1, 3, *coarse_size(plan), generator=torch.Generator().manual_seed(0))
    start = stage_images(plan, plan.stages[1], previous).start
    expected = F.interpolate(previous, size=start.shape[-2:], mode="bicubic", align_corners=False).clamp(0, 1)
    assert torch.equal(start, expected)


def test_a_stage_before_that_changed_nothing_hands_on_the_full_size_content(tmp_path):
    plan = two_stages(tmp_path, "change")
    hw = coarse_size(plan)
    images = stage_images(plan, plan.stages[1], content_at(plan, hw))
    # Upsampling the coarse content would blur it; the change (zero) adds nothing to the photo.
    assert torch.equal(images.start, images.content)


def test_the_change_is_added_to_the_content_at_the_larger_size(tmp_path):
    plan = two_stages(tmp_path, "change")
    hw = coarse_size(plan)
    before = content_at(plan, hw)
    # A change that is 0.1 on the left half and 0 on the right: away from the border between
    # them, bicubic upsampling keeps each value (its weights sum to one), so the start is the
    # full-size content plus 0.1 on the left and the content itself on the right.
    change = torch.zeros_like(before)
    change[..., : hw[1] // 2] = 0.1
    images = stage_images(plan, plan.stages[1], before + change)
    start, content = images.start, images.content
    width = start.shape[-1]
    left, right = slice(0, width // 2 - 4), slice(width // 2 + 4, width)
    expected_left = (content[..., left] + 0.1).clamp(0, 1)
    assert torch.allclose(start[..., left], expected_left, atol=1e-5)
    assert torch.allclose(start[..., right], content[..., right], atol=1e-5)


def test_with_preserved_colours_the_change_is_one_of_luminance(tmp_path):
    plan = two_stages(tmp_path, "change", **{"images.preserve_colors": "luminance"})
    hw = coarse_size(plan)
    unchanged = colour.luminance_image(content_at(plan, hw))  # what the coarse stage starts from
    images = stage_images(plan, plan.stages[1], unchanged)
    assert torch.equal(images.start, images.content)  # grey: the luminance at full size, no colour let in
    assert torch.equal(images.start[:, 0], images.start[:, 1])


def test_a_two_stage_run_that_carries_the_change_finishes(tmp_path):
    status, _, err = run_cli("run", str(two_stages_recipe(tmp_path, "change")))
    assert status == 0, err
    assert (tmp_path / "out" / "result.png").exists()


def test_an_unknown_carry_is_one_message_naming_the_field(tmp_path):
    status, _, err = run_cli("run", str(two_stages_recipe(tmp_path, "residual")))
    assert status == 2
    assert "stage[1].carry" in err and "'image'" in err and "'change'" in err
    assert "Traceback" not in err


def test_a_first_stage_that_carries_is_told_it_has_nothing_to_carry(tmp_path):
    body = TINY_LOSSES + '\n[[stage]]\nwidth = 32\nsteps = 2\ncarry = "change"\n\n[[stage]]\nwidth = 64\nsteps = 2\n'
    status, _, err = run_cli("run", str(write_recipe(tmp_path, body)))
    assert status == 2 and "Traceback" not in err
    assert "stage[0].carry" in err and "the first stage has no stage before it" in err


def test_a_checkpoint_made_before_stages_had_a_carry_resumes_and_one_of_change_does_not(tmp_path):
    plan = stylekit.load(two_stages_recipe(tmp_path), registry=tiny_registry())
    checkpoint = tmp_path / "c.pt"
    stylekit.stylize(plan, callback=lambda info: info.step == 1 and info.stop(), checkpoint=checkpoint)
    # The default carry is left out of what a checkpoint keeps, as a checkpoint made before
    # stages had a carry holds it, so such a checkpoint resumes.
    assert all("carry" not in stage for stage in torch.load(checkpoint, weights_only=True)["recipe"]["stage"])
    assert stylekit.stylize(plan, checkpoint=checkpoint, resume=True).status == "finished"
    other = stylekit.load(two_stages_recipe(tmp_path, "change"), registry=tiny_registry())
    with pytest.raises(stylekit.UserError, match=r"different recipe \(changed: stage\[1\]\.carry\)"):
        stylekit.stylize(other, checkpoint=checkpoint, resume=True)


def test_checkpoints_and_video_folders_key_on_one_identity(tmp_path):
    # stylekit/recipe/identity.py: where files go, the progress display, and the fields added
    # later while they hold their earlier value are in neither key; a carry of "change" and a
    # flow of its own are in both.
    from stylekit.builtins.flow import DIS
    from stylekit.recipe.identity import resumable_recipe
    from stylekit.run.checkpoints import state_of
    from stylekit.video.start import run_key

    plan = two_stages(tmp_path)
    kept = resumable_recipe(plan)
    assert "flow" not in kept and all("carry" not in stage for stage in kept["stage"])
    assert "path" not in kept["output"] and "progress_every" not in kept["run"]
    moved = two_stages(tmp_path, "image", **{"output.path": str(tmp_path / "elsewhere.png"), "output.save_every": 1,
                                              "run.progress_every": 3})
    flow = DIS(DIS.Params())
    assert run_key(plan, flow, "clip") == run_key(moved, flow, "clip")
    loop = type("Loop", (), {"state": lambda self: {}})()
    assert state_of(plan, 0, loop, [])["recipe"] == state_of(moved, 0, loop, [])["recipe"]
    for other in (two_stages(tmp_path, "change"), two_stages(tmp_path, **{"flow.params.preset": "fast"})):
        assert run_key(other, flow, "clip")["recipe"] != run_key(plan, flow, "clip")["recipe"]
        assert state_of(other, 0, loop, [])["recipe"] != state_of(plan, 0, loop, [])["recipe"]
