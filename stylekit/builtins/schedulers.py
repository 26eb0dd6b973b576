"""Built-in learning-rate schedules, stepped once per recipe step."""

from __future__ import annotations

import torch
from pydantic import Field

from stylekit.builtins.optimizers import FLOAT32_MAX
from stylekit.contract.components import Params, Scheduler
from stylekit.contract.hookspecs import hookimpl


class Constant(Scheduler):
    """No schedule: the optimizer's learning rate throughout."""

    name = "none"

    def build(self, optimizer, total_steps):
        return None


class Step(Scheduler):
    """Multiply the learning rate by `gamma` every `step_size` steps (the chapter: 50, 0.8)."""

    name = "step"

    class Params(Params):
        step_size: int = Field(50, ge=1, description="steps between two decays")
        # At most 1: a decay. A larger factor grows the learning rate exponentially, past
        # what float32 holds within a few hundred steps.
        gamma: float = Field(0.8, gt=0, le=1, description="factor applied to the learning rate at each decay (at most 1)")

    def build(self, optimizer, total_steps):
        return torch.optim.lr_scheduler.StepLR(optimizer, self.params.step_size, self.params.gamma)


class Exponential(Scheduler):
    """Multiply the learning rate by `gamma` every step."""

    name = "exponential"

    class Params(Params):
        gamma: float = Field(0.99, gt=0, le=1, description="factor applied to the learning rate every step (at most 1, "
                                                            "as for step)")

    def build(self, optimizer, total_steps):
        return torch.optim.lr_scheduler.ExponentialLR(optimizer, self.params.gamma)


class Cosine(Scheduler):
    """Cosine decay from the optimizer's learning rate to `min_lr` over the run."""

    name = "cosine"

    class Params(Params):
        min_lr: float = Field(0.0, ge=0, le=FLOAT32_MAX, description="the learning rate at the last step")

    def build(self, optimizer, total_steps):
        return torch.optim.lr_scheduler.CosineAnnealingLR(optimizer, max(1, total_steps), eta_min=self.params.min_lr)


@hookimpl
def register_schedulers(register):
    for cls in (Constant, Step, Exponential, Cosine):
        register(cls)
