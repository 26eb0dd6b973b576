"""Built-in optimizers over the synthesized image: Adam, L-BFGS and SGD.

Learning rates are in the units of the RGB [0, 1] image, whatever the backbone.
"""

from __future__ import annotations

from typing import Annotated, Literal

import torch
from pydantic import Field, model_validator

from stylekit.builtins.batched_lbfgs import (STEP_BACK, BatchedLBFGS, TorchRows, consistent, longer_probe, overshot,
                                            short_probe)
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


class GuardedLBFGS(torch.optim.LBFGS):
    """torch's L-BFGS (one iteration a step, no line search) with a guard on its probes,
    for gradients computed in reduced precision (bf16, fp16).

    Why: torch's first step is a probe, -g scaled to an L1 length of lr, so that its pair
    (s, y) measures the curvature; on a 150x150 image it moves no pixel by more than 3e-4.
    The backbone sees the image rounded to its precision: in bf16 the values near 1 only to
    2^-8, so most pixels' rounded values do not change and the pair measures rounding, not
    the loss (measured on astronaut + seated-nude, docs/quality.md "Faces at strength 1":
    y.s < 0, or a curvature 2 to 10 times too flat). torch then either keeps the pair, and
    its next step is 2 to 10 times too long, or refuses it and, holding no pair, steps by
    lr x -g, with no scale at all: a pixel moved by 286, the loss up a hundredfold.

    The guard: after a short probe (no pixel moved by `PROBE_LIMIT` or more) its pair is
    kept only when the loss changed over the probe as its two gradients say (within
    `PROBE_AGREEMENT` of the trapezoid rule, exact for a quadratic; `consistent`), and its
    curvature is positive (torch's y.s > 1e-10). Otherwise the pair is dropped and the step
    is a probe again, `PROBE_GROWTH` times longer (`longer_probe`), until one is measured:
    in bf16 on the portraits measured, two re-probes in the first stage and none in the
    second; in fp32 none (there torch's probe agrees to 2%, and every step is torch's, bit
    for bit). Pairs after the first kept one are torch's: those steps are
    long enough to measure.

    And a step back: a step after which the loss is more than `RISE_LIMIT` times what it
    was is taken back, and tried again `STEP_BACK` times as long along the same direction
    (no pair is made of it). Why: the curvature L-BFGS has measured is that of the path so
    far, and a Gram loss is quartic in the pixels: early in a run, at strength 4 and more,
    a full step can land where the loss is far steeper (measured on tubingen + Starry Night
    at 200 px in one stage, in fp32 and bf16: the loss up 85 and 250 times, and what the
    next steps could not undo cost the picture its structure, 0.98 against 0.18 at
    strength 2; docs/quality.md). Where no step more than doubles the loss (every golden
    run, the default's stages in the benchmark's table) every step is torch's. The rise is
    seen when the next step evaluates the loss: a stage's last step is not checked (the
    next stage starts afresh), and a NaN loss is left to the run's divergence check.

    The state (in the state_dict) is torch's plus `step_point`, where the latest step
    started, and while probing `probing` and `probe_loss`, the loss there.
    `BatchedLBFGS` applies the same rules per image. With a line search this is torch's
    LBFGS unchanged: the search evaluates the loss at each trial point.
    """

    #: What a checkpoint of an earlier version may lack (stylekit.run.checkpoint_checks):
    #: `step_point` was kept only while probing, as `probe_point`; without it the first step
    #: after the resume is not checked for a rise.
    optional_state = frozenset({"step_point"})

    @torch.no_grad()
    def step(self, closure):
        if self.param_groups[0]["line_search_fn"] is not None:
            return super().step(closure)
        with torch.enable_grad():
            loss = closure()
        state = self.state[self._params[0]]
        if "probe_point" in state:  # a checkpoint of an earlier version, made while probing
            state["step_point"] = state.pop("probe_point")
        grad = self._gather_flat_grad()
        value = torch.as_tensor(loss, dtype=grad.dtype, device=grad.device).detach()
        if self._overshot(state, value):
            self._step_back(state)
            return loss
        first = state.get("n_iter", 0) == 0
        point = torch.cat([p.detach().reshape(-1) for p in self._params])  # where this step starts
        if state.get("probing"):
            if not self._trusted(state, value, grad, point):
                self._probe_again(state, value, grad, point)
                return loss
            del state["probe_loss"]
            state["probing"] = False
        super().step(lambda: loss)  # the gradient is set: torch's step, evaluated once
        state["step_point"] = point
        if first:
            t = torch.as_tensor(state["t"], dtype=grad.dtype, device=grad.device).view(1)
            state["probing"] = bool(short_probe(t, grad.view(1, -1)))
            if state["probing"]:
                state["probe_loss"] = value.clone()
        return loss

    @staticmethod
    def _overshot(state: dict, loss: torch.Tensor) -> bool:
        """Did the latest step (not a probe: those are guarded apart) overshoot (`overshot`)?"""
        if state.get("n_iter", 0) == 0 or state.get("probing") or "step_point" not in state:
            return False
        return bool(overshot(torch.as_tensor(state["prev_loss"], dtype=loss.dtype, device=loss.device), loss))

    def _step_back(self, state: dict) -> None:
        """Back to where the latest step started, then STEP_BACK times as far along its
        direction; torch's state stays as it was before that step (its gradient, its
        loss), so the next step's pair is measured from there over the shorter step."""
        offset = 0
        for p in self._params:
            p.copy_(state["step_point"][offset:offset + p.numel()].view_as(p))
            offset += p.numel()
        state["t"] = float(state["t"]) * STEP_BACK
        self._add_grad(state["t"], state["d"])
        state["n_iter"] += 1
        state["func_evals"] += 1

    def _trusted(self, state: dict, loss: torch.Tensor, grad: torch.Tensor, point: torch.Tensor) -> bool:
        """Would torch keep the latest probe's pair (y.s above its floor, computed as torch
        computes it), and did the loss change over the probe as its gradients say?"""
        previous = state["prev_flat_grad"]
        if not grad.sub(previous).dot(state["d"].mul(state["t"])) > 1e-10:
            return False
        agrees = consistent(state["probe_loss"].view(1), loss.view(1), previous.view(1, -1),
                            grad.view(1, -1), (point - state["step_point"]).view(1, -1), TorchRows.dots)
        return bool(agrees)

    def _probe_again(self, state: dict, loss: torch.Tensor, grad: torch.Tensor, point: torch.Tensor) -> None:
        """Step along -g, longer than the last probe, and keep torch's state as after a
        step that kept no pair (d, t and the gradient for the next pair)."""
        t = torch.as_tensor(state["t"], dtype=grad.dtype, device=grad.device).view(1)
        longer, short = longer_probe(t, grad.view(1, -1), self.param_groups[0]["lr"])
        d, t = grad.neg(), longer[0]
        self._add_grad(t.item(), d)
        state["prev_flat_grad"].copy_(grad)
        state["prev_loss"] = float(loss)
        state["d"], state["t"] = d, t
        state["n_iter"] += 1
        state["func_evals"] += 1
        state["step_point"] = point
        state["probing"] = bool(short)
        if state["probing"]:
            state["probe_loss"] = loss.clone()
        else:
            del state["probe_loss"]


class LBFGS(Optimizer):
    """L-BFGS, as in Gatys et al.; one recipe step is one evaluation of the loss. Without a
    line search, `GuardedLBFGS`: torch's, safe from its first probe in reduced precision.

    Its memory is 2 x history + 4 times the image's size.
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
        return GuardedLBFGS(
            variables, lr=p.lr, max_iter=1, history_size=p.history,
            line_search_fn=None if p.line_search == "none" else p.line_search,
            tolerance_grad=-1, tolerance_change=-1)

    def build_together(self, variables):
        # A line search evaluates each image at points of its own: those steps stay per image.
        if self.params.line_search != "none":
            return None
        return BatchedLBFGS(variables, lr=self.params.lr, history=self.params.history)

    def state_copies(self) -> float:
        # history pairs (s, y), plus direction, previous gradient and flat gradient, and the
        # point where the latest step started (GuardedLBFGS)
        return 2 * self.params.history + 4


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
