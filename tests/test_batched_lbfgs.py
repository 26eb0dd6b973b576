"""The batched L-BFGS (stylekit/builtins/batched_lbfgs.py) is, per image, the L-BFGS the
built-in `lbfgs` optimizer builds for one image (`GuardedLBFGS`: torch's LBFGS with a guard
on its probes); the step loop (loop.py) uses it only where it applies."""

import dataclasses

import pytest
import torch

from stylekit.builtins.batched_lbfgs import BatchedLBFGS, BatchedRows, TorchRows
from stylekit.builtins.optimizers import GuardedLBFGS
from stylekit.testing import TINY_LOSSES, pattern, write_recipe

SHAPE = (1, 3, 4, 5)


def objectives_of_every_kind():
    """Per image a function with its own curvature: convex (every pair kept), nonconvex
    (pairs with y.s <= 0 refused at some steps, so the rows' counts and ring positions
    part), constant (zero gradient: every pair refused) and Rosenbrock's valley."""
    target = torch.linspace(0, 1, 60, dtype=torch.float64).view(SHAPE)
    return [
        lambda x: ((x - target) ** 2).sum() + 0.1 * (x ** 4).sum(),
        lambda x: torch.sin(3 * x).sum() + 0.05 * (x ** 2).sum(),
        lambda x: (x * 0).sum(),
        lambda x: ((1 - x[..., :-1]) ** 2 + 10 * (x[..., 1:] - x[..., :-1] ** 2) ** 2).sum(),
    ]


def torch_lbfgs_path(f, start, lr, history, steps):
    """The iterates of the L-BFGS stylekit's `lbfgs` builds for one image (no line search),
    and how many pairs it holds at the end."""
    x = start.clone().requires_grad_(True)
    optimizer = GuardedLBFGS([x], lr=lr, max_iter=1, history_size=history, tolerance_grad=-1, tolerance_change=-1)

    def closure():
        optimizer.zero_grad()
        value = f(x)
        value.backward()
        return value

    path = []
    for _ in range(steps):
        optimizer.step(closure)
        path.append(x.detach().clone())
    return path, len(optimizer.state[x]["old_dirs"])


@pytest.mark.parametrize("ops", [TorchRows, BatchedRows])  # the CPU's and the GPU's
@pytest.mark.parametrize("history, lr", [(3, 1.0), (50, 0.5)])
def test_each_row_follows_torch_lbfgs(history, lr, ops):
    """Both ways of computing the rows run torch's algorithm: in float64 every image's
    iterate is torch's to 1e-7 at every step, with histories that wrap (3) and rows
    holding different numbers of pairs (50). Sums in another order (BatchedRows) differ by
    ~1e-16 and the nonconvex rows grow that to ~1e-9 in 20 steps; a step of any other
    algorithm (a pair kept that torch drops, another image's pair) moves by > 1e-3."""
    functions = objectives_of_every_kind()
    starts = [torch.rand(SHAPE, dtype=torch.float64, generator=torch.Generator().manual_seed(i)) for i in range(4)]
    expected = [torch_lbfgs_path(f, start, lr, history, 20) for f, start in zip(functions, starts)]
    images = [start.clone().requires_grad_(True) for start in starts]
    stepper = BatchedLBFGS(images, lr=lr, history=history, ops=ops)
    for step in range(20):
        values = []
        for image, f in zip(images, functions):
            image.grad = None
            values.append(f(image))
            values[-1].backward()
        stepper.step([0, 1, 2, 3], torch.stack(values).detach())
        for image, (path, _) in zip(images, expected):
            assert (image.detach() - path[step]).abs().max() <= 1e-7
    assert stepper.count.tolist() == [pairs for _, pairs in expected]
    assert stepper.count[2] == 0, "the constant objective's pairs are all refused"
    if history > 20:
        assert len(set(stepper.count.tolist())) > 2, "rows hold different numbers of pairs"


@pytest.mark.parametrize("ops", [TorchRows, BatchedRows])
def test_a_diverged_image_left_out_stays_and_the_others_go_on(ops):
    """An image whose gradient went nan is stepped once with it (as loop.py does
    before its check), then dropped from `alive`: it is not moved again and changes
    nothing for the images still going, whose iterates stay torch's."""
    functions = objectives_of_every_kind()
    starts = [torch.rand(SHAPE, dtype=torch.float64, generator=torch.Generator().manual_seed(i)) for i in range(4)]
    images = [start.clone().requires_grad_(True) for start in starts]
    stepper = BatchedLBFGS(images, lr=1.0, history=5, ops=ops)
    for step in range(8):
        alive = [0, 1, 2, 3] if step <= 3 else [0, 2, 3]
        values = []
        for i in alive:
            images[i].grad = None
            values.append(functions[i](images[i]))
            values[-1].backward()
        if step == 3:
            images[1].grad = torch.full_like(images[1], float("nan"))
        stepper.step(alive, torch.stack(values).detach())
        if step == 3:
            left = images[1].detach().clone()
    assert torch.allclose(images[1].detach(), left, rtol=0, atol=0, equal_nan=True) and left.isnan().all()
    for i in (0, 2, 3):
        path, _ = torch_lbfgs_path(functions[i], starts[i], 1.0, 5, 8)
        assert (images[i].detach() - path[-1]).abs().max() <= 1e-7


def _tiny_group(tmp_path, optimizer_params: str, scheduler: str = "none", steps: int = 15):
    """Three same-size images of different content through the tiny backbone: their
    objectives, starts, components and loop options, as stylekit batch builds them."""
    from planning import plan_for
    from stylekit.run.build import build_backbone, build_objective, build_optimizer, build_scheduler, stage_images
    from stylekit.run.stages import loop_options

    body = f'[optimizer]\nname = "lbfgs"\n[optimizer.params]\n{optimizer_params}\n[scheduler]\nname = "{scheduler}"\n'
    recipe = write_recipe(tmp_path, TINY_LOSSES + body)
    for i in range(3):
        pattern(32, 40, "content" if i != 1 else "style").rotate(90 * i).save(tmp_path / f"c{i}.png")
    plans = [plan_for(recipe, **{"images.content": f"c{i}.png", "run.steps": steps, "output.width": 32})
             for i in range(3)]
    torch.manual_seed(0)
    backbone = build_backbone(plans[0])
    inputs = [stage_images(plan, plan.stages[0]) for plan in plans]
    objectives = [build_objective(plan, backbone, images) for plan, images in zip(plans, inputs)]
    return (objectives, [images.start for images in inputs], build_optimizer(plans[0]), build_scheduler(plans[0]),
            loop_options(plans[0], plans[0].stages[0]), plans[0].device)


def _together_and_alone(objectives, starts, optimizer, scheduler, options, device, alone_for=None):
    from stylekit.run.loop import optimize, optimize_group

    # Batch-invariant convolutions, so that stacking changes no bit of a gradient (see
    # together.py); what is compared is then the optimizer alone.
    was = torch.backends.mkldnn.enabled
    torch.backends.mkldnn.enabled = False
    try:
        together = optimize_group(objectives, starts, optimizer, scheduler, options, device, stacked=True)
        alone = [optimize(objectives[i], starts[i], optimizer, scheduler, options, device)
                 for i in (alone_for or range(len(objectives)))]
    finally:
        torch.backends.mkldnn.enabled = was
    return together, alone


def _count_batched_steps(monkeypatch) -> list:
    steps = []
    original = BatchedLBFGS.step
    monkeypatch.setattr(BatchedLBFGS, "step",
                        lambda self, alive, losses: steps.append(list(alive)) or original(self, alive, losses))
    return steps


def test_stacked_images_stepped_by_the_batched_lbfgs_come_out_as_alone(tmp_path, monkeypatch):
    """optimize_group on stacked images with L-BFGS (history 3 < 15 steps: the ring
    wraps) and a constant learning rate steps them with one BatchedLBFGS; each image is
    within 1e-5 of its own run's (CPU, fp32), its rows too. The second image's objective
    is made constant (all weights 0): its gradient is zero, so each of its pairs is
    refused (y.s = 0) while the others keep theirs, and it stays where it started."""
    objectives, starts, optimizer, scheduler, options, device = _tiny_group(tmp_path, "lr = 0.5\nhistory = 3")
    objectives[1] = dataclasses.replace(
        objectives[1], terms=tuple(dataclasses.replace(wt, weight=0.0) for wt in objectives[1].terms))
    steps = _count_batched_steps(monkeypatch)
    together, alone = _together_and_alone(objectives, starts, optimizer, scheduler, options, device)
    assert steps == [[0, 1, 2]] * 15, "every step went through the batched L-BFGS"
    for one, joint in zip(alone, together):
        assert (joint.image - one.image).abs().max() <= 1e-5
        for a, b in zip(torch.stack(one.rows), torch.stack(joint.rows), strict=True):
            assert torch.allclose(a, b, rtol=1e-5, atol=1e-7)
    assert torch.equal(together[1].image, starts[1].clamp(0, 1))
    assert not torch.equal(together[0].image, starts[0])


@pytest.mark.parametrize("params, scheduler", [('line_search = "strong_wolfe"', "none"), ("lr = 0.5", "cosine")])
def test_per_image_optimizers_where_the_batched_lbfgs_does_not_apply(tmp_path, monkeypatch, params, scheduler):
    """A line search (several evaluations per image and step) or a schedule (which steps
    a torch optimizer's learning rate) keeps one torch LBFGS per image; that those come
    out as alone is tests/test_batch.py's check."""
    from stylekit.run.loop import optimize_group

    objectives, starts, optimizer, scheduler_, options, device = _tiny_group(tmp_path, params, scheduler, steps=2)
    batched = _count_batched_steps(monkeypatch)
    per_image = []
    original = torch.optim.LBFGS.step
    monkeypatch.setattr(torch.optim.LBFGS, "step", lambda self, closure: per_image.append(self) or original(self, closure))
    optimize_group(objectives, starts, optimizer, scheduler_, options, device, stacked=True)
    assert batched == [] and len(per_image) == 3 * 2 and len({id(o) for o in per_image}) == 3


def test_an_image_that_diverges_in_the_batched_lbfgs_stops_alone(tmp_path, monkeypatch):
    """optimize_group with the batched L-BFGS: an image whose loss is nan from the first
    step is reported `Diverged` at step 1 with its start as the last finite image and is
    stepped no more; the others finish as they would alone."""
    from stylekit.run.engine import Diverged

    objectives, starts, optimizer, scheduler, options, device = _tiny_group(tmp_path, "lr = 0.5", steps=5)
    objectives[1] = dataclasses.replace(
        objectives[1], terms=tuple(dataclasses.replace(wt, weight=float("nan")) for wt in objectives[1].terms))
    steps = _count_batched_steps(monkeypatch)
    together, alone = _together_and_alone(objectives, starts, optimizer, scheduler, options, device, alone_for=(0, 2))
    assert isinstance(together[1], Diverged) and together[1].step == 1
    assert torch.equal(together[1].last_finite, starts[1].clamp(0, 1))
    assert steps == [[0, 1, 2]] + [[0, 2]] * 4
    for i, one in zip((0, 2), alone):
        assert (together[i].image - one.image).abs().max() <= 1e-5


def test_a_stepper_written_before_the_losses_were_passed_is_still_called_with_alive_alone(tmp_path):
    """`BatchedStepper.step` gained `losses`; a plugin's stepper whose `step(alive)` was
    written for the contract before it keeps working: called with `alive` alone."""
    from stylekit.run.loop import optimize_group

    objectives, starts, optimizer, scheduler, options, device = _tiny_group(tmp_path, "lr = 0.5\nhistory = 3", steps=2)
    calls = []

    class OldStepper:
        def __init__(self, variables):
            self.variables = variables

        def step(self, alive):
            calls.append(list(alive))
            with torch.no_grad():
                for i in alive:
                    self.variables[i].add_(self.variables[i].grad, alpha=-1e-3)

    optimizer.build_together = OldStepper
    optimize_group(objectives, starts, optimizer, scheduler, options, device, stacked=True)
    assert calls == [[0, 1, 2]] * 2
