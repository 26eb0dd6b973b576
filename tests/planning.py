"""Test helpers: a checked plan from a recipe with overrides, and one stage of it run
through the engine directly, with the backbone and objective exposed for inspection."""

from pathlib import Path

import torch

from stylekit.run.build import build_backbone, build_objective, build_optimizer, build_scheduler, stage_images
from stylekit.run.engine import LoopOptions
from stylekit.run.loop import optimize
from stylekit.recipe.load import load_recipe
from stylekit.testing import tiny_registry


def plan_for(recipe: Path, registry=None, **overrides):
    """The plan of `recipe` with dotted overrides (`**{"run.steps": 3}`)."""
    return load_recipe(recipe, registry or tiny_registry(), {tuple(k.split(".")): v for k, v in overrides.items()})


def run_stage(plan, backbone=None, images=None, on_step=None):
    """(loop result, objective, stage images) of the plan's first stage, seeded as a run is."""
    torch.manual_seed(plan.recipe.run.seed)
    backbone = backbone or build_backbone(plan)
    images = images or stage_images(plan, plan.stages[0])
    objective = build_objective(plan, backbone, images)
    run = plan.recipe.run
    options = LoopOptions(steps=plan.stages[0].steps, clamp=run.clamp, ema_decay=run.ema_decay, compile=run.compile,
                          cuda_graph=run.cuda_graph)
    result = optimize(objective, images.start, build_optimizer(plan), build_scheduler(plan), options, plan.device,
                      on_step=on_step)
    return result, objective, images


def history(result, objective):
    """The loop's rows as dicts {'total': ..., label: ...}."""
    labels = ["total", *objective.labels]
    return [dict(zip(labels, row.tolist())) for row in result.rows]


def three_in_step(folder: Path, recipe: Path, steps: int):
    """(plans, objectives, stage images) of three different images (rotated patterns, one
    of them the style pattern) run with `recipe` for `steps` steps, in float64: for images
    optimized in step against each alone, where only the method's invariance is compared,
    not one machine's kernels (tests/test_batch.py says why float64)."""
    import dataclasses

    from stylekit.testing import pattern

    for i in range(3):
        pattern(48, 64, "content" if i != 1 else "style").rotate(90 * i).save(folder / f"c{i}.png")
    plans = [dataclasses.replace(plan_for(recipe, **{"images.content": f"c{i}.png", "run.steps": steps}),
                                 dtype=torch.float64) for i in range(3)]
    torch.manual_seed(0)
    backbone = build_backbone(plans[0]).double()
    inputs = [stage_images(plan, plan.stages[0]) for plan in plans]
    objectives = [build_objective(plan, backbone, images) for plan, images in zip(plans, inputs)]
    return plans, objectives, inputs
