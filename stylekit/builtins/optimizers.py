"""Built-in optimizers over the synthesized image: Adam, L-BFGS and SGD.

Learning rates are in the units of the RGB [0, 1] image, whatever the backbone.
"""

from __future__ import annotations

from typing import Annotated, Literal

import torch
from pydantic import Field, model_validator

from stylekit.builtins.batched_lbfgs import BatchedLBFGS
from stylekit.contract.components import Optimizer, Params
from stylekit.contract.hookspecs import hookimpl
from stylekit.files.limits import MAX_STEPS

#: float32's largest number. torch adds each step to the float32 image with the learning
#: rate as a scalar factor (`add_(d, alpha=lr)`), converted to float32: a larger learning
#: rate is not a huge step but a RuntimeError in the middle of the run.
FLOAT32_MAX = float(torch.finfo(torch.float32).max)
#: A learning rate: positive, and a float32 number (see FLOAT32_MAX).
LearningRate = Annotated[float, Field(gt=0, le=FLOAT32_MAX)]
#: A moment's decay rate: torch's Adam refuses any outside [0, 1).
Decay = Annotated[float, Field(ge=0, lt=1)]


class Adam(Optimizer):
    """Adam (Kingma & Ba 2015), the chapter's optimizer."""

    name = "adam"

    class Params(Params):
        lr: LearningRate = Field(0.02, description="learning rate, in units of the RGB [0, 1] image")
        betas: tuple[Decay, Decay] = Field((0.9, 0.999), description="decay rates of the gradient's first and second moments")
        eps: float = Field(1e-8, gt=0, description="added to the second moment's root for stability")

        @model_validator(mode="after")
        def first_step_fits(self):
            # Adam's first step is lr / (1 - beta1) long (its bias correction), the longest.
            if self.lr / (1 - self.betas[0]) > FLOAT32_MAX:
                raise ValueError(f"lr / (1 - betas[0]), Adam's first step, is {self.lr / (1 - self.betas[0]):.3g}, more "
                                 f"than float32 numbers hold ({FLOAT32_MAX:.3g}) - lower lr (about 0.02 is usual)")
            return self

    def build(self, variables):
        p = self.params
        return torch.optim.Adam(variables, lr=p.lr, betas=p.betas, eps=p.eps)

    def state_copies(self) -> float:
        return 2  # first and second moments


class LBFGS(Optimizer):
    """L-BFGS, as in Gatys et al.; one recipe step is one evaluation of the loss.

    Its memory is 2 x history x the image's size.
    """

    name = "lbfgs"
    needs_closure = True

    class Params(Params):
        lr: LearningRate = Field(1.0, description="step length along the L-BFGS direction")
        # A run makes one pair a step: a history longer than the longest run holds nothing more.
        history: int = Field(100, ge=1, le=MAX_STEPS,
                             description="gradient pairs kept; memory is 2 x history x the image's size")
        line_search: Literal["none", "strong_wolfe"] = Field(
            "none", description="strong_wolfe: a line search, several loss evaluations per step")

    def build(self, variables):
        p = self.params
        # max_iter=1: the engine calls step() once per recipe step, so progress, schedulers
        # and intermediate saves see every iteration; torch keeps the history across calls.
        return torch.optim.LBFGS(
            variables, lr=p.lr, max_iter=1, history_size=p.history,
            line_search_fn=None if p.line_search == "none" else p.line_search,
            tolerance_grad=-1, tolerance_change=-1)

    def build_together(self, variables):
        # A line search evaluates each image at points of its own: those steps stay per image.
        if self.params.line_search != "none":
            return None
        return BatchedLBFGS(variables, lr=self.params.lr, history=self.params.history)

    def state_copies(self) -> float:
        # history pairs (s, y), plus direction, previous gradient and flat gradient
        return 2 * self.params.history + 3


class SGD(Optimizer):
    """Stochastic gradient descent with optional momentum."""

    name = "sgd"

    class Params(Params):
        lr: LearningRate = Field(0.1, description="learning rate, in units of the RGB [0, 1] image")
        # Below 1: with 1 or more, the velocity never decays and grows without bound.
        momentum: float = Field(0.0, ge=0, lt=1, description="momentum factor (0: none; below 1)")
        nesterov: bool = Field(False, description="Nesterov momentum (needs momentum > 0)")

    def build(self, variables):
        p = self.params
        return torch.optim.SGD(variables, lr=p.lr, momentum=p.momentum, nesterov=p.nesterov)

    def state_copies(self) -> float:
        return 1 if self.params.momentum else 0


@hookimpl
def register_optimizers(register):
    for cls in (Adam, LBFGS, SGD):
        register(cls)
