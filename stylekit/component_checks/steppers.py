"""`check_optimizer` and `check_scheduler`: the contracts of what steps the image."""

from __future__ import annotations

import copy
import math
from typing import Any, Callable

import torch
from pydantic import BaseModel

from stylekit.contract.components import Optimizer, Scheduler
from stylekit.component_checks.common import _describe, _images, _Who, AGREE, STEPS

def _quadratic(target: torch.Tensor, curvature: float) -> Callable[[torch.Tensor], torch.Tensor]:
    """A smooth convex loss of the image, minimal at `target` (inside [0, 1]), whose
    gradient is small in image units: any sane learning rate lowers it."""
    return lambda image: curvature * ((image - target) ** 2).mean()


def check_optimizer(cls: type[Optimizer], params: BaseModel | dict | None = None) -> None:
    """Check the optimizer `cls` with `params` (default: its Params' defaults)."""
    who = _Who(cls, "optimizer", Optimizer)
    params = who.params(params)
    component = who.call(f"{cls.__name__}(params)", cls, params)
    start, target = _images(2, 16, 16, seed=41)
    loss = _quadratic(target, 1.0)
    image = start.clone().requires_grad_(True)
    optimizer = _built_optimizer(who, component, image)
    first = loss(image).item()
    _steps(who, component, optimizer, image, loss, STEPS // 2)
    resumed_image = image.detach().clone().requires_grad_(True)
    resumed = _built_optimizer(who, component, resumed_image)
    who.call("load_state_dict(state_dict()) of the optimizer build returns", resumed.load_state_dict,
             copy.deepcopy(optimizer.state_dict()),
             wants="a checkpoint keeps the optimizer's state_dict() and a resumed run loads it")
    _steps(who, component, optimizer, image, loss, STEPS - STEPS // 2)
    _steps(who, component, resumed, resumed_image, loss, STEPS - STEPS // 2)
    last = loss(image).item()
    if not math.isfinite(last) or not last < first:
        raise who.fail(f"its steps lower a smooth convex loss (the mean squared distance to an image, {STEPS} steps "
                       "with its params)", f"the loss went from {first:.6g} to {last:.6g}")
    if not torch.equal(image.detach(), resumed_image.detach()):
        raise who.fail("an optimizer restored from its state_dict() steps as the original does (a resumed run "
                       "continues the same)", "their images part after the restore - keep all state in self.state")
    _check_state_copies(who, component, optimizer, image)
    if type(component).build_together is not Optimizer.build_together:
        _check_build_together(who, component)


def _built_optimizer(who: _Who, component: Optimizer, image: torch.Tensor) -> torch.optim.Optimizer:
    optimizer = who.call("build(variables)", component.build, [image])
    if not isinstance(optimizer, torch.optim.Optimizer):
        raise who.fail("build(variables) returns a torch.optim.Optimizer", f"it returned {_describe(optimizer)}")
    if not any(p is image for group in optimizer.param_groups for p in group["params"]):
        raise who.fail("build(variables) returns an optimizer over the image it is given (variables[0])",
                       "the image is not among its parameters")
    return optimizer


def _steps(who: _Who, component: Optimizer, optimizer, image: torch.Tensor, loss, count: int) -> None:
    """`count` steps as the engine takes them: step(closure) when `needs_closure`, else the
    gradient first and step(); then the image clamped to [0, 1]."""
    def closure() -> torch.Tensor:
        optimizer.zero_grad(set_to_none=True)
        value = loss(image)
        value.backward()
        return value

    for _ in range(count):
        if component.needs_closure:
            who.call("step(closure)", optimizer.step, closure)
        else:
            closure()
            who.call("step()", optimizer.step, wants="set needs_closure = True if it needs a closure")
        with torch.no_grad():
            image.clamp_(0, 1)
    if not bool(torch.isfinite(image).all()):
        raise who.fail("steps leave the image finite", "it holds nan or inf")


def _image_sized(state: Any, numel: int) -> int:
    """How many tensors of `numel` elements `state` (nested dicts and lists) holds."""
    if isinstance(state, torch.Tensor):
        return int(state.numel() == numel)
    if isinstance(state, dict):
        return sum(_image_sized(value, numel) for value in state.values())
    if isinstance(state, (list, tuple)):
        return sum(_image_sized(value, numel) for value in state)
    return 0


def _check_state_copies(who: _Who, component: Optimizer, optimizer, image: torch.Tensor) -> None:
    copies = who.call("state_copies()", component.state_copies)
    if isinstance(copies, bool) or not isinstance(copies, (int, float)) or not math.isfinite(copies) or copies < 0:
        raise who.fail("state_copies() returns how many image-sized tensors its state holds, a number >= 0",
                       f"it returned {copies!r}")
    held = _image_sized(list(optimizer.state.values()), image.numel())
    if held > copies:
        raise who.fail("state_copies() counts the image-sized tensors its state holds at most (stylekit run "
                       "--dry-run estimates memory with it)",
                       f"after {STEPS} steps its state holds {held}, and state_copies() says {copies:g}")


def _check_build_together(who: _Who, component: Optimizer) -> None:
    """3 images, each with its own loss; image 1 stops after 2 steps (as a diverged one
    does). The stepper must move each image alive as its own optimizer would, and leave
    the stopped one where it is."""
    starts, targets = _images(3, 16, 16, seed=51), _images(3, 16, 16, seed=61)
    losses = [_quadratic(target, curvature) for target, curvature in zip(targets, (1.0, 3.0, 0.3))]
    grouped = [start.clone().requires_grad_(True) for start in starts]
    stepper = who.call("build_together(variables)", component.build_together, grouped)
    if stepper is None:
        return
    if not callable(getattr(stepper, "step", None)):
        raise who.fail("build_together(variables) returns a BatchedStepper (with step(alive, losses)) or None",
                       f"it returned {_describe(stepper)}")
    alone = [start.clone().requires_grad_(True) for start in starts]
    optimizers = [_built_optimizer(who, component, image) for image in alone]
    for step in range(1, STEPS + 1):
        alive = [0, 1, 2] if step <= 2 else [0, 2]
        values = []
        for k in alive:
            grouped[k].grad = None
            value = losses[k](grouped[k])
            value.backward()
            values.append(value.detach())
        held = grouped[1].detach().clone()
        who.call(f"step({alive}, losses) of the stepper build_together returns", stepper.step, alive,
                 torch.stack(values))
        for k in alive:
            _steps(who, component, optimizers[k], alone[k], losses[k], 1)
        with torch.no_grad():
            for k in alive:
                grouped[k].clamp_(0, 1)
        if 1 not in alive and not torch.equal(grouped[1].detach(), held):
            raise who.fail("the stepper leaves an image not in alive as it is (it stopped)",
                           f"step({alive}) moved image 1")
        for k in alive:
            gap = (grouped[k].detach() - alone[k].detach()).abs().max().item()
            if not gap <= AGREE:  # the images are in [0, 1]
                raise who.fail("build_together's stepper moves each image as the optimizer build returns moves "
                               "it alone", f"at step {step}, image {k} of 3 is {gap:.3g} away from its own "
                               "optimizer's")


def check_scheduler(cls: type[Scheduler], params: BaseModel | dict | None = None, total_steps: int = 10) -> None:
    """Check the scheduler `cls` with `params` (default: its Params' defaults), over runs of
    `total_steps` steps and of 1, with the SGD and the L-BFGS of torch."""
    who = _Who(cls, "scheduler", Scheduler)
    params = who.params(params)
    component = who.call(f"{cls.__name__}(params)", cls, params)
    for make in (lambda image: torch.optim.SGD([image], lr=0.5),
                 lambda image: torch.optim.LBFGS([image], lr=1.0, max_iter=1)):
        for steps in (total_steps, 1):
            rates = _scheduled_rates(who, component, make, steps)
            if rates is None:
                return  # a constant learning rate
            if steps == total_steps:
                resumed = _scheduled_rates(who, component, make, steps, restart_at=steps // 2)
                if resumed != rates:
                    raise who.fail("a scheduler restored from its state_dict() goes on as the original does (a "
                                   "resumed run continues the same)",
                                   f"rates {rates} uninterrupted, {resumed} restored after {steps // 2} steps")


def _scheduled_rates(who: _Who, component: Scheduler, make, steps: int, restart_at: int | None = None) -> list | None:
    """The learning rates of `steps` steps, as the engine steps them (the optimizer, then
    the scheduler); with `restart_at`, rebuilt there from its state_dict() as a resumed
    run is. None when build gives no scheduler."""
    image = torch.zeros(1, 3, 4, 4, requires_grad=True)
    optimizer = make(image)
    scheduler = who.call(f"build(optimizer, {steps})", component.build, optimizer, steps)
    if scheduler is None:
        return None
    if not callable(getattr(scheduler, "step", None)) or not callable(getattr(scheduler, "state_dict", None)):
        raise who.fail("build(optimizer, total_steps) returns a torch LR scheduler (with step() and state_dict()) "
                       "or None", f"it returned {_describe(scheduler)}")
    rates = []
    for step in range(steps):
        if step == restart_at:  # as a resumed run: both built afresh, then both states loaded
            states = copy.deepcopy((optimizer.state_dict(), scheduler.state_dict()))
            optimizer = make(image)
            scheduler = who.call(f"build(optimizer, {steps})", component.build, optimizer, steps)
            optimizer.load_state_dict(states[0])
            who.call("load_state_dict(state_dict()) of the scheduler", scheduler.load_state_dict, states[1])
        rate = optimizer.param_groups[0]["lr"]
        if not (isinstance(rate, (int, float)) and math.isfinite(rate) and rate >= 0):
            raise who.fail("the learning rate stays a finite number >= 0", f"before step {step + 1} of {steps} it is {rate!r}")
        rates.append(rate)
        image.grad = torch.zeros_like(image)  # a zero gradient: neither optimizer moves, and L-BFGS stops at once
        optimizer.step((lambda: image.sum() * 0) if isinstance(optimizer, torch.optim.LBFGS) else None)
        who.call(f"step() of the scheduler, after optimizer step {step + 1} of {steps}", scheduler.step)
    return rates
