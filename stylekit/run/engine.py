"""What the optimization loop works on and gives back: the objective (a backbone and
weighted loss terms, built), the loop's options, the state of one image's optimization
(`Loop`, what a checkpoint keeps) and its outcome (`LoopResult`, or `Diverged`).

One step: one forward pass of the backbone over the synthesized image feeds every loss
term, the weighted sum is back-propagated to the pixels, and the optimizer updates them.
Targets (content features, style Grams, ...) are computed once, before the loop. The loop
itself is `stylekit.run.loop`; it changes nothing it is given and never loads plugins, so
it runs the same with VGG-19 on a GPU as with a tiny random backbone in a test.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from stylekit.contract.components import Backbone, LossTerm


@dataclass(frozen=True)
class WeightedTerm:
    label: str  # unique within a run: the loss name, with '#2' etc. for repeats
    term: LossTerm
    weight: float
    package: str = "?"  # the plugin package that provides the term, for messages
    entry: str = "?"  # the recipe's entry, e.g. "loss[1]"


@dataclass(frozen=True)
class Objective:
    """What is minimized: the weighted loss terms, each holding its targets, over the
    features of one backbone pass. Built per stage by `stylekit.run.build.build_objective`."""

    backbone: Backbone
    terms: tuple[WeightedTerm, ...]
    dtype: torch.dtype = torch.float32

    @property
    def layers(self) -> frozenset[str]:
        """Every layer some loss term reads: what the backbone must produce."""
        return frozenset(name for wt in self.terms for name in wt.term.layers)

    @property
    def labels(self) -> list[str]:
        return [wt.label for wt in self.terms]

    def values(self, pixels: torch.Tensor, check: bool = False) -> torch.Tensor:
        """The weighted loss terms, stacked. Its own function so that the features dict is
        released before the backward pass, and so that torch.compile sees the whole step.
        `check`: each term's value checked against the contract first, so that a term that
        returns, say, a shape (1,) tensor is named rather than failing in `torch.stack`
        unattributed; the first evaluation of a run does that, once (a compiled or recorded
        step need not carry it)."""
        features = self.backbone.features(network_input(pixels, self.dtype), self.layers)
        checked = check_term_value if check else _unchecked
        return torch.stack([checked(wt.term, wt.term(features, pixels)) * wt.weight for wt in self.terms])


class BadTermValue(Exception):
    """A loss term's `forward` returned what the contract does not allow (anything but a
    0-dim float tensor). `term` is the term, for `stylekit.run.blame` to name its plugin:
    the fault is found in stylekit's frames, not the plugin's."""

    def __init__(self, term: LossTerm, found: str):
        self.term = term
        super().__init__(f"forward() returned {found}, where the contract wants the term's unweighted value "
                         "as a 0-dim float tensor (reduce it, e.g. with .sum() or .mean())")


def check_term_value(term: LossTerm, value) -> torch.Tensor:
    """`value`, when it is what a term's `forward` must return; else raises `BadTermValue`."""
    if isinstance(value, torch.Tensor) and value.dim() == 0 and value.is_floating_point():
        return value
    found = (f"a {value.dtype} tensor of shape {tuple(value.shape)}" if isinstance(value, torch.Tensor)
             else f"a {type(value).__name__}")
    raise BadTermValue(term, found)


def _unchecked(term: LossTerm, value: torch.Tensor) -> torch.Tensor:
    return value


@dataclass(frozen=True)
class LoopOptions:
    steps: int
    clamp: bool = True  # keep the image in [0, 1] after every step
    #: Output the exponential moving average of the iterates with this decay (0: off).
    ema_decay: float = 0.0
    compile: bool = False  # torch.compile of the objective, for a group of one image
    cuda_graph: bool = False  # honoured on CUDA only
    #: Check for a non-finite loss, step or image every this many steps. Each check waits
    #: for the device; on a CPU that costs nothing, on a GPU it would stall the queue.
    check_every: int = 1
    #: End an image's stage once `gain_steps` steps lower its lowest loss by less than this
    #: fraction (`gained_little`); 0: take every step. Checked where finiteness is.
    min_gain: float = 0.0
    gain_steps: int = 10


class Diverged(Exception):
    """A loss term or the image (or the optimizer's step, before the clamp) went non-finite.
    `last_finite` is the image after step `last_finite_step` (0: the start), the latest one
    known to be finite."""

    def __init__(self, step: int, labels: list[str], last_finite: torch.Tensor, last_finite_step: int,
                 rows: list[torch.Tensor] = ()):
        self.step, self.labels, self.rows = step, labels, list(rows)
        self.last_finite, self.last_finite_step = last_finite, last_finite_step
        what = ", ".join(labels) if labels else "the image"
        super().__init__(f"{what} went non-finite at step {step}")


@dataclass
class LoopResult:
    image: torch.Tensor  # the output: the last iterate, or their moving average
    rows: list[torch.Tensor]  # per step: [total, term values...], on the device
    steps_done: int
    seconds: float
    setup_seconds: float
    stopped: bool = False  # ended early by `on_step`
    settled: bool = False  # ended early because its loss had stopped falling (`LoopOptions.min_gain`)


class Loop:
    """The state of one stage's optimization, as `on_step` sees it and a checkpoint keeps it."""

    def __init__(self, image: torch.Tensor, average: torch.Tensor | None, optimizer, scheduler):
        self.image, self.average, self.optimizer, self.scheduler = image, average, optimizer, scheduler
        self.step = 0
        self.rows: list[torch.Tensor] = []  # per step of this run: [total, term values...], on the device
        #: Per step of this stage (before a resume too): the lowest total so far, for `min_gain`.
        self.lowest: list[float] = []
        self.settled = False  # its loss stopped falling: this step is the stage's last (min_gain)

    @property
    def output(self) -> torch.Tensor:
        return (self.image if self.average is None else self.average).detach()

    def state(self) -> dict:
        """Everything needed to continue from this step (tensors only where tensors are)."""
        return {"step": self.step, "settled": self.settled, "image": self.image.detach().clone(),
                "average": None if self.average is None else self.average.clone(),
                "optimizer": self.optimizer.state_dict(),
                "scheduler": None if self.scheduler is None else self.scheduler.state_dict()}

    def restore(self, state: dict) -> None:
        with torch.no_grad():
            self.image.copy_(state["image"])
        if self.average is not None and state["average"] is not None:
            self.average.copy_(state["average"])
        self.optimizer.load_state_dict(state["optimizer"])
        if self.scheduler is not None and state["scheduler"] is not None:
            self.scheduler.load_state_dict(state["scheduler"])
        self.step = state["step"]
        self.lowest = list(state.get("lowest", ()))  # given by the caller; a checkpoint keeps the rows instead
        # A checkpoint kept at the step its stage settled: the stage is over (one from before
        # min_gain has no such key, and its stage was not).
        self.settled = bool(state.get("settled", False))


def image_dtype(compute: torch.dtype) -> torch.dtype:
    """The synthesized image's own precision: float32, whatever the backbone computes in (an
    optimizer's small steps would vanish in bf16), or float64 when it computes in float64 -
    no recipe does; the tests check invariances there, where kernels' rounding cannot hide a
    difference."""
    return torch.float64 if compute == torch.float64 else torch.float32


def network_input(image: torch.Tensor, dtype: torch.dtype) -> torch.Tensor:
    """The image as the backbone runs it: in the compute precision, channels_last."""
    return image.to(dtype=dtype).contiguous(memory_format=torch.channels_last)


def extend_lowest(lowest: list[float], totals) -> None:
    """Append to `lowest`, the lowest total so far at each step, the steps of `totals`."""
    for total in totals:
        lowest.append(min(total, lowest[-1]) if lowest else total)


def gained_little(lowest: list[float], window: int, min_gain: float) -> bool:
    """Over the last `window` steps, did the lowest loss so far fall by less than `min_gain`
    of itself? The lowest, not the latest: a step that rises (L-BFGS's probes, a step taken
    back) is not the run arriving. Never before `window` steps."""
    if len(lowest) <= window:
        return False
    before, now = lowest[-1 - window], lowest[-1]
    return before - now < min_gain * abs(before)
