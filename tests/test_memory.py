"""The peak-memory estimate (`stylekit run --dry-run`) and activation checkpointing."""

import torch

from planning import history, plan_for, run_stage
from stylekit.run.build import build_backbone
from stylekit.run.estimate import TensorBytes, _probe, estimate
from stylekit.testing import TINY_RECIPE_HEAD, run_cli, write_recipe


def estimate_for(recipe, **overrides):
    plan = plan_for(recipe, **overrides)
    return estimate(plan, plan.stages[0])

VGG_HEAD = TINY_RECIPE_HEAD.replace('name = "tiny"', 'name = "vgg19"')
VGG_LOSSES = """
[[loss]]
name = "content"
layers = ["relu4_2"]

[[loss]]
name = "gram"
weight = 1e3
layers = ["relu1_1", "relu2_1", "relu3_1", "relu4_1"]
"""


def test_extrapolated_estimate_matches_a_direct_count_at_the_size(stylekit_recipe):
    plan = plan_for(stylekit_recipe, **{"output.width": 320})
    found = estimate(plan, plan.stages[0])
    h, w = 240, 320
    targets, peak = _probe(plan, build_backbone(plan), plan.stages[0])
    assert abs(found.targets - targets) <= 0.05 * targets
    assert abs(found.targets + found.activations - peak) <= 0.05 * peak
    # The tiny backbone's weights are counted apart, Adam's two moments from the formula.
    assert found.optimizer_state == 2 * 3 * h * w * 4


def test_live_bytes_counts_new_tensors_and_the_backward_pass():
    x = torch.ones(1000, requires_grad=True)  # made before: not counted
    with TensorBytes() as forward_only:
        a = x * 2
        b = a * 3
    assert forward_only.peak == 8000 and a.numel() + b.numel() == 2000
    with TensorBytes() as both:
        total = (torch.relu(x * 2) * 3).sum()  # ReLU keeps its output for the backward pass
        total.backward()
    assert both.peak > 8000 and x.grad is not None


def test_lbfgs_state_is_two_images_per_history_entry(tmp_path):
    body = '[[loss]]\nname = "tv"\n[optimizer]\nname = "lbfgs"\n[optimizer.params]\nhistory = {}\n'
    short = estimate_for(write_recipe(tmp_path / "a", body.format(5)))
    long = estimate_for(write_recipe(tmp_path / "b", body.format(25)))
    image_bytes = 3 * 48 * 64 * 4
    assert long.optimizer_state - short.optimizer_state == 2 * 20 * image_bytes


def test_checkpointing_saves_activation_memory_and_keeps_the_result(tmp_path):
    head = VGG_HEAD.replace('weights = "random"', 'weights = "random"') + "\n"
    recipe = write_recipe(tmp_path, VGG_LOSSES, head=head)
    plain = estimate_for(recipe, **{"run.steps": 2})
    checkpointed = estimate_for(recipe, **{"run.steps": 2, "run.checkpoint": True})
    # The estimate watches a real step, the recomputed segments included: about two thirds
    # here (the layers these losses read are kept either way).
    assert checkpointed.activations < 0.7 * plain.activations
    (a, objective, _), (b, _, _) = (run_stage(plan_for(recipe, **{"run.steps": 2})),
                                    run_stage(plan_for(recipe, **{"run.steps": 2, "run.checkpoint": True})))
    last_a, last_b = history(a, objective)[-1]["total"], history(b, objective)[-1]["total"]
    assert abs(last_a - last_b) <= 1e-4 * last_a
    assert torch.allclose(a.image, b.image, atol=1e-5)


def test_dry_run_prints_the_estimate_and_writes_nothing(stylekit_recipe):
    before = sorted(p.name for p in stylekit_recipe.parent.iterdir())
    status, out, err = run_cli("run", str(stylekit_recipe), "--dry-run", "--set", "output.width=128")
    assert status == 0, err
    assert "stage 1: 128x96, 5 steps, fp32 on cpu" in out and "estimated peak" in out
    assert sorted(p.name for p in stylekit_recipe.parent.iterdir()) == before


def test_estimate_grows_with_size(stylekit_recipe):
    small = estimate_for(stylekit_recipe, **{"output.width": 128})
    large = estimate_for(stylekit_recipe, **{"output.width": 512})
    assert large.activations > 10 * small.activations
    assert large.weights == small.weights
