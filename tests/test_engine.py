"""The engine and the run command, with the tiny random backbone: plumbing, not pictures."""

import json
from pathlib import Path

import pytest
import torch

from planning import history, plan_for, run_stage
from stylekit.contract.hookspecs import hookimpl
from stylekit.files import images
from stylekit.plugins.registry import PluginInfo
from stylekit.run.build import build_backbone
from stylekit.testing import TINY_LOSSES, pattern, run_cli, tiny_registry, write_recipe


def test_run_writes_image_and_record_and_lowers_the_loss(stylekit_recipe):
    status, _, err = run_cli("run", str(stylekit_recipe), "--steps", "20", "--set", "run.progress_every=5")
    assert status == 0, err
    out = stylekit_recipe.parent / "out"
    assert sorted(p.name for p in out.iterdir()) == ["result.json", "result.png"]
    assert images.open_rgb(str(out / "result.png")).size == (64, 48)
    record = json.loads((out / "result.json").read_text())
    assert record["recipe"]["run"]["steps"] == 20
    assert record["versions"]["torch"] == torch.__version__
    assert record["device"] == "cpu" and record["precision"] == "fp32"
    assert len(record["losses"]) == 20
    assert set(record["losses"][0]) == {"total", "content", "gram", "tv"}
    assert record["losses"][-1]["total"] < 0.5 * record["losses"][0]["total"]
    assert record["loop_seconds"] > 0
    assert "step     5/20  total" in err and "step    20/20" in err


def test_same_seed_same_image(tmp_path):
    results = []
    for name in ("a", "b"):
        recipe = write_recipe(tmp_path / name)
        assert run_cli("run", str(recipe))[0] == 0
        results.append((recipe.parent / "out" / "result.png").read_bytes())
    assert results[0] == results[1]


def counted(backbone, calls):
    original = backbone.features

    def counting(image, layers):
        calls.append(torch.is_grad_enabled())
        return original(image, layers)

    backbone.features = counting
    return backbone


def test_one_backbone_pass_per_step_and_targets_once(stylekit_recipe):
    plan = plan_for(stylekit_recipe)
    calls = []
    run_stage(plan, backbone=counted(build_backbone(plan), calls))
    # content + one style image without gradients, then one pass per step with them
    assert calls == [False, False] + [True] * plan.total_steps


def test_backbone_is_cut_after_the_last_used_layer(stylekit_recipe):
    backbone = build_backbone(plan_for(stylekit_recipe, **{"loss": [{"name": "content", "layers": ["r1"]}]}))
    assert [name for name, _ in backbone.body.named_children()] == ["c1", "r1"]


def test_the_engine_changes_nothing_it_is_given(stylekit_recipe):
    plan = plan_for(stylekit_recipe)
    backbone = build_backbone(plan)
    weights = [p.clone() for p in backbone.parameters()]
    result, objective, images = run_stage(plan, backbone=backbone)
    start = images.start.clone()
    gram_targets = {k: v[0].clone() for k, v in objective.terms[1].term.targets.items()}
    from stylekit.run.build import build_optimizer, build_scheduler
    from stylekit.run.engine import LoopOptions
    from stylekit.run.loop import optimize

    optimize(objective, images.start, build_optimizer(plan), build_scheduler(plan), LoopOptions(steps=3), plan.device)
    assert torch.equal(images.start, start)
    assert all(torch.equal(a, b) for a, b in zip(weights, backbone.parameters()))
    assert all(torch.equal(v, objective.terms[1].term.targets[k][0]) for k, v in gram_targets.items())


@pytest.mark.parametrize("optimizer", ["adam", "lbfgs", "sgd"])
@pytest.mark.parametrize("scheduler", ["none", "step", "exponential", "cosine"])
def test_every_optimizer_and_scheduler_lowers_the_loss(tmp_path, optimizer, scheduler):
    lr = {"adam": 0.05, "lbfgs": 0.5, "sgd": 0.5}[optimizer]
    body = TINY_LOSSES + f'[optimizer]\nname = "{optimizer}"\n[optimizer.params]\nlr = {lr}\n[scheduler]\nname = "{scheduler}"\n'
    result, objective, _ = run_stage(plan_for(write_recipe(tmp_path, body), **{"run.steps": 15}))
    rows = history(result, objective)
    assert len(rows) == 15
    assert rows[-1]["total"] < rows[0]["total"]


def test_lbfgs_evaluates_the_loss_once_per_step(tmp_path):
    body = TINY_LOSSES + '[optimizer]\nname = "lbfgs"\n'
    plan = plan_for(write_recipe(tmp_path, body))
    calls = []
    run_stage(plan, backbone=counted(build_backbone(plan), calls))
    assert len(calls) == 2 + plan.total_steps


def test_intermediate_images_every_n_steps(stylekit_recipe):
    status, _, err = run_cli("run", str(stylekit_recipe), "--steps", "6", "--set", "output.save_every=2")
    assert status == 0, err
    names = sorted(p.name for p in (stylekit_recipe.parent / "out").iterdir())
    assert names == ["result.json", "result.png", "result.step00002.png", "result.step00004.png"]


def test_command_line_overrides_images_and_output(stylekit_recipe, tmp_path, monkeypatch):
    other = tmp_path / "elsewhere"
    other.mkdir()
    pattern(30, 40, "style").save(other / "c.png")
    monkeypatch.chdir(other)
    status, _, err = run_cli("run", str(stylekit_recipe), "--content", "c.png", "--output", "mine.png", "--steps", "2")
    assert status == 0, err
    record = json.loads((other / "mine.json").read_text())
    assert record["recipe"]["images"]["content"] == str(other / "c.png")
    assert images.open_rgb(str(other / "mine.png")).size == (64, 48)


def test_a_second_interrupt_ends_at_once_and_writes_nothing(stylekit_recipe, monkeypatch):
    def interrupt(*args, **kwargs):
        raise KeyboardInterrupt

    monkeypatch.setattr("stylekit.run.stages.optimize_group", interrupt)
    status, _, err = run_cli("run", str(stylekit_recipe))
    assert status == 130
    assert "interrupted" in err
    assert not (stylekit_recipe.parent / "out").exists()


def test_crash_while_saving_keeps_the_old_file(tmp_path, monkeypatch):
    target = tmp_path / "x.png"
    target.write_bytes(b"old")

    class Boom(Exception):
        pass

    def broken_save(self, handle, **kwargs):
        handle.write(b"half")
        raise Boom

    monkeypatch.setattr(images.Image.Image, "save", broken_save)
    with pytest.raises(Boom):
        images.save_atomic(pattern(4, 4, "content"), target)
    assert target.read_bytes() == b"old"
    assert [p.name for p in tmp_path.iterdir()] == ["x.png"]


def test_fp16_on_cpu_is_refused_with_a_message(stylekit_recipe):
    status, _, err = run_cli("run", str(stylekit_recipe), "--set", "run.precision=fp16")
    assert status == 2
    assert "run.precision: fp16 runs only on CUDA" in err


def totals(plan):
    result, objective, _ = run_stage(plan)
    return [row["total"] for row in history(result, objective)], result


def test_cuda_graph_is_ignored_off_cuda(stylekit_recipe):
    eager, _ = totals(plan_for(stylekit_recipe, **{"run.steps": 3}))
    graphed, _ = totals(plan_for(stylekit_recipe, **{"run.steps": 3, "run.cuda_graph": True}))
    assert graphed == eager


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU (benchmarks/gpu.py runs the same on VGG-19)")
@pytest.mark.parametrize("optimizer", ["adam", "lbfgs"])
def test_cuda_graph_replays_the_eager_steps(stylekit_recipe, optimizer):
    settings = {"run.steps": 6, "run.device": "cuda", "optimizer.name": optimizer, "optimizer.params": {}}
    eager, eager_result = totals(plan_for(stylekit_recipe, **settings))
    graphed, graphed_result = totals(plan_for(stylekit_recipe, **settings, **{"run.cuda_graph": True}))
    assert len(set(graphed)) == len(graphed), "each step's losses are kept, not the last replay's"
    for a, b in zip(eager, graphed):
        assert abs(a - b) <= 1e-4 * abs(a)
    assert torch.allclose(eager_result.image, graphed_result.image, atol=1e-4)


@pytest.mark.slow  # inductor compiles C++ kernels: about 30 s with a cold cache on 2 cores
def test_compiled_objective_gives_the_eager_losses(stylekit_recipe):
    eager, _ = totals(plan_for(stylekit_recipe, **{"run.steps": 3}))
    compiled, _ = totals(plan_for(stylekit_recipe, **{"run.steps": 3, "run.compile": True}))
    for a, b in zip(eager, compiled):
        assert abs(a - b) <= 1e-4 * abs(a)


def test_user_errors_raised_during_the_run_name_the_recipe(stylekit_recipe):
    from stylekit.builtins.losses import TotalVariation
    from stylekit.errors import Problem, UserError
    from stylekit.contract.hookspecs import hookimpl
    from stylekit.plugins.registry import PluginInfo

    class Picky(TotalVariation):
        name = "picky"

        def prepare(self, targets):
            raise UserError(Problem("needs a square image - crop it first", field="loss[0]"))

    class Plugin:
        @hookimpl
        def register_losses(self, register):
            register(Picky)

    registry = tiny_registry([(Plugin(), PluginInfo("picky", "stylekit-picky", "1.0"))])
    stylekit_recipe.write_text(stylekit_recipe.read_text().replace('name = "tv"', 'name = "picky"'))
    status, _, err = run_cli("run", str(stylekit_recipe), registry=registry)
    assert status == 2 and "Traceback" not in err
    assert f"{stylekit_recipe}: loss[0]: needs a square image - crop it first" in err
    assert not (stylekit_recipe.parent / "out").exists()


def test_running_a_recipe_does_not_import_torchvision():
    """torchvision is only for its weights (backbone.weights = "torchvision"); importing it
    costs every run about a second of start-up."""
    import subprocess
    import sys

    code = ("import sys, stylekit.commands.cli, stylekit.commands.run, stylekit.run.build, stylekit.api, stylekit.builtins.vgg19, stylekit.files.images; "
            "sys.exit('torchvision' in sys.modules)")
    assert subprocess.run([sys.executable, "-c", code]).returncode == 0


def test_targets_compute_only_the_layers_each_image_is_read_at(stylekit_recipe):
    """The content loss reads the content image at c3, the Gram loss the style image at r1
    and r2 (LossTerm.target_images): nothing else is computed or kept."""
    from stylekit.run.build import build_objective, stage_images

    plan = plan_for(stylekit_recipe)
    backbone = build_backbone(plan)
    asked = []
    features = backbone.features
    backbone.features = lambda image, layers: asked.append(set(layers)) or features(image, layers)
    build_objective(plan, backbone, stage_images(plan, plan.stages[0]))
    assert asked == [{"c3"}, {"r1", "r2"}]


class Steep:
    """A plugin whose loss term is 0 with a slope of 10 at every pixel: a stand-in for a
    deep backbone's backward pass, which multiplies a term's gradient many times over while
    its value stays small (VGG-19's overflows float32 with a weight of 1e38)."""

    @hookimpl
    def register_losses(self, register):
        from stylekit.contract.components import LossTerm

        class SteepTerm(LossTerm):
            name = "steep"
            reads_features = False

            def forward(self, features, image):
                return ((image - image.detach()) * 10).sum()

        register(SteepTerm)


def steep_recipe(recipe: Path, weight: str = "1e38") -> Path:
    """`recipe` with its TV term replaced by the steep one at `weight`, stepped by SGD, whose
    step is then lr x infinity."""
    text = recipe.read_text().replace('name = "tv"\nweight = 0.1', f'name = "steep"\nweight = {weight}')
    recipe.write_text(text + '\n[optimizer]\nname = "sgd"\n')
    return recipe


STEEP_REGISTRY = [(Steep(), PluginInfo("steep", "stylekit-steep", "1.0"))]


def test_an_infinite_step_is_not_hidden_by_the_clamp(stylekit_recipe):
    """The gradient overflows to -inf, and so does SGD's step; clamping turned that into a
    black image whose losses are all finite, written with exit 0 (issue 19, item 4). The
    step is checked before the clamp: the run diverges, as a non-finite loss does."""
    registry = tiny_registry(STEEP_REGISTRY)
    status, _, err = run_cli("run", str(steep_recipe(stylekit_recipe)), registry=registry)
    assert status == 3 and "Traceback" not in err
    assert "the run diverged: the image went non-finite or was stepped far past [0, 1] at step 1 of 5" in err
    out = stylekit_recipe.parent / "out"
    assert not (out / "result.png").exists()
    assert json.loads((out / "result.diverged.json").read_text())["non_finite"] == ["image"]


def test_a_finite_step_far_past_the_image_is_a_divergence_too(stylekit_recipe):
    """With a weight of 1e30 the steep term's gradient stays finite and so does SGD's step,
    about 1e30: clamping made it a 0/255 image written with exit 0 (found trying issue 19's
    weight of 1e38 with SGD). A step a million times the image's range is a blow-up."""
    registry = tiny_registry(STEEP_REGISTRY)
    status, _, err = run_cli("run", str(steep_recipe(stylekit_recipe, "1e30")), registry=registry)
    assert status == 3 and "Traceback" not in err
    assert "the image went non-finite or was stepped far past [0, 1] at step 1 of 5" in err
    assert not (stylekit_recipe.parent / "out" / "result.png").exists()


def test_an_infinite_step_between_two_checks_is_found_at_its_step_and_stops_its_image_alone(tmp_path):
    """Off the CPU finiteness is checked every few steps: a step that went infinite (and
    was clamped) in between is reported at its own step, with the image of the last check
    as the last finite one; in a group, only that image stops, and the other comes out
    exactly as alone."""
    from stylekit.run.build import build_objective, build_optimizer, build_scheduler, stage_images
    from stylekit.run.engine import Diverged, LoopOptions
    from stylekit.run.loop import optimize, optimize_group

    registry = tiny_registry(STEEP_REGISTRY)
    plans = [plan_for(write_recipe(tmp_path / "plain", TINY_LOSSES + '[optimizer]\nname = "sgd"\n'), registry),
             plan_for(steep_recipe(write_recipe(tmp_path / "steep")), registry)]
    backbone = build_backbone(plans[0])
    inputs = [stage_images(plan, plan.stages[0]) for plan in plans]
    objectives = [build_objective(plan, backbone, images) for plan, images in zip(plans, inputs)]
    options = LoopOptions(steps=6, check_every=4)
    args = build_optimizer(plans[0]), build_scheduler(plans[0]), options, plans[0].device
    plain, steep = optimize_group(objectives, [images.start for images in inputs], *args)
    assert isinstance(steep, Diverged) and steep.labels == []
    assert steep.step == 1 and steep.last_finite_step == 0 and torch.equal(steep.last_finite, inputs[1].start)
    alone = optimize(objectives[0], inputs[0].start, *args)
    assert plain.steps_done == 6 and torch.equal(plain.image, alone.image)


class StepWatch:
    """A plugin of one loss term, `stepwatch`, that records the `step` it sees at every
    evaluation; and the `step` at `prepare`."""

    def __init__(self):
        from stylekit.builtins.losses import TotalVariation

        seen, prepared = self.seen, self.prepared = [], []

        class Watch(TotalVariation):
            name = "stepwatch"

            def prepare(self, targets):
                prepared.append(self.step)

            def forward(self, features, image):
                seen.append(self.step)
                return super().forward(features, image)

        self.term = Watch

    @hookimpl
    def register_losses(self, register):
        register(self.term)


def watched(tmp_path, body: str):
    import stylekit

    plugin = StepWatch()
    registry = tiny_registry([(plugin, PluginInfo("stepwatch", "stylekit-stepwatch", "1.0"))])
    recipe = write_recipe(tmp_path, TINY_LOSSES.replace('name = "tv"', 'name = "stepwatch"') + body)
    callbacks = []
    result = stylekit.stylize(recipe, registry=registry, callback=lambda info: callbacks.append(info.step))
    return plugin, result, callbacks


TWO_STAGES = "\n[[stage]]\nwidth = 32\nsteps = 3\n\n[[stage]]\nwidth = 64\nsteps = 2\n"


def test_loss_terms_see_the_step_counted_over_all_stages(tmp_path):
    plugin, result, callbacks = watched(tmp_path, '\n[optimizer]\nname = "adam"\n' + TWO_STAGES)
    assert result.steps_done == 5 and callbacks == [1, 2, 3, 4, 5]
    assert plugin.seen == [1, 2, 3, 4, 5]  # Adam: one evaluation a step, each the callback's step
    assert plugin.prepared == [0, 0]  # once per stage, before the first step


def test_every_evaluation_within_an_lbfgs_step_sees_that_step(tmp_path):
    body = '\n[optimizer]\nname = "lbfgs"\n[optimizer.params]\nline_search = "strong_wolfe"\n' + TWO_STAGES
    plugin, result, _ = watched(tmp_path, body)
    assert len(plugin.seen) > result.steps_done == 5  # the line search evaluates several times a step
    assert sorted(plugin.seen) == plugin.seen and sorted(set(plugin.seen)) == [1, 2, 3, 4, 5]
