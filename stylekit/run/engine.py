"""The optimization loop. It receives an objective (a backbone and loss terms, built), a
start image and options, changes none of them and never loads plugins, so it runs the same
with VGG-19 on a GPU as with a tiny random backbone in a test.

One step: one forward pass of the backbone over the synthesized image feeds every loss
term, the weighted sum is back-propagated to the pixels, and the optimizer updates them.
Targets (content features, style Grams, ...) are computed once, before the loop.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Callable

import torch

from stylekit.contract.components import Backbone, LossTerm, Optimizer, Scheduler
from stylekit.errors import Problem, UserError


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

    def values(self, pixels: torch.Tensor) -> torch.Tensor:
        """The weighted loss terms, stacked. Its own function so that the features dict is
        released before the backward pass, and so that torch.compile sees the whole step."""
        features = self.backbone.features(network_input(pixels, self.dtype), self.layers)
        return torch.stack([wt.term(features, pixels) * wt.weight for wt in self.terms])


@dataclass(frozen=True)
class LoopOptions:
    steps: int
    clamp: bool = True  # keep the image in [0, 1] after every step
    #: Output the exponential moving average of the iterates with this decay (0: off).
    ema_decay: float = 0.0
    compile: bool = False
    cuda_graph: bool = False  # honoured on CUDA only
    #: Check for a non-finite loss or image every this many steps. Each check waits for
    #: the device; on a CPU that costs nothing, on a GPU it would stall the queue.
    check_every: int = 1


class Diverged(Exception):
    """A loss term or the image went non-finite. `last_finite` is the image after step
    `last_finite_step` (0: the start), the latest one known to be finite."""

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


class Loop:
    """The state of one stage's optimization, as `on_step` sees it and a checkpoint keeps it."""

    def __init__(self, image: torch.Tensor, average: torch.Tensor | None, optimizer, scheduler):
        self.image, self.average, self.optimizer, self.scheduler = image, average, optimizer, scheduler
        self.step = 0
        self.rows: list[torch.Tensor] = []  # per step of this run: [total, term values...], on the device

    @property
    def output(self) -> torch.Tensor:
        return (self.image if self.average is None else self.average).detach()

    def state(self) -> dict:
        """Everything needed to continue from this step (tensors only where tensors are)."""
        return {"step": self.step, "image": self.image.detach().clone(),
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


def image_dtype(compute: torch.dtype) -> torch.dtype:
    """The synthesized image's own precision: float32, whatever the backbone computes in (an
    optimizer's small steps would vanish in bf16), or float64 when it computes in float64 -
    no recipe does; the tests check invariances there, where kernels' rounding cannot hide a
    difference."""
    return torch.float64 if compute == torch.float64 else torch.float32


def network_input(image: torch.Tensor, dtype: torch.dtype) -> torch.Tensor:
    """The image as the backbone runs it: in the compute precision, channels_last."""
    return image.to(dtype=dtype).contiguous(memory_format=torch.channels_last)


def optimize(objective: Objective, start: torch.Tensor, optimizer: Optimizer, scheduler: Scheduler,
             options: LoopOptions, device: torch.device, on_step: Callable[[Loop], bool] | None = None,
             resume: dict | None = None) -> LoopResult:
    """Minimize `objective` over the pixels of an image that starts as `start`. Nothing given
    is changed: the image is a copy. `on_step(loop)` runs after every step; returning True
    ends the run there. `resume` is a `Loop.state()` to continue from."""
    began = time.perf_counter()
    if device.type == "cuda":
        torch.backends.cudnn.benchmark = True  # same shapes every step: autotuning pays off
    image = start.detach().clone().to(device=device, dtype=image_dtype(objective.dtype)).requires_grad_(True)
    torch_optimizer = optimizer.build([image])
    loop = Loop(image, image.detach().clone() if options.ema_decay else None, torch_optimizer,
                scheduler.build(torch_optimizer, options.steps))
    if resume is not None:
        loop.restore(resume)
    last_row: list[torch.Tensor] = []
    # Compiled only for the loop: the targets were computed once, eagerly.
    evaluate = torch.compile(objective.values, dynamic=False) if options.compile else objective.values

    def forward_backward() -> torch.Tensor:
        values = evaluate(image)
        total = values.sum()
        total.backward()
        # The gradient arrives channels_last from the network; optimizers like L-BFGS
        # flatten it with view(), which needs the image's own (contiguous) layout.
        if not image.grad.is_contiguous():
            image.grad = image.grad.contiguous()
        last_row[:] = [torch.cat([total.detach().view(1), values.detach()])]
        return total

    def eager_closure() -> torch.Tensor:
        torch_optimizer.zero_grad(set_to_none=True)
        return forward_backward()

    graphed = options.cuda_graph and device.type == "cuda"
    closure = record_cuda_graph(forward_backward, [image]) if graphed else eager_closure
    rows = loop.rows
    last_finite, last_finite_step = loop.output.clone(), loop.step

    if device.type == "cuda":
        torch.cuda.synchronize()
    setup_seconds = time.perf_counter() - began
    loop_start = time.perf_counter()
    stopped = False
    while loop.step < options.steps:
        if optimizer.needs_closure:
            torch_optimizer.step(closure)
        else:
            closure()
            torch_optimizer.step()
        if loop.scheduler is not None:
            loop.scheduler.step()
        if options.clamp:
            with torch.no_grad():
                image.clamp_(0, 1)
        if loop.average is not None:
            loop.average.lerp_(image.detach(), 1 - options.ema_decay)
        loop.step += 1
        # A replayed graph rewrites the same tensor every step: keep a copy (on the device).
        rows.append(last_row[0].clone() if graphed else last_row[0])
        if loop.step % options.check_every == 0 or loop.step == options.steps:
            first_bad = first_non_finite(rows[len(rows) - (loop.step - last_finite_step):], loop.output)
            if first_bad is not None:
                offset, bad = first_bad
                labels = [label for label, ok in zip(objective.labels, bad) if not ok]
                raise Diverged(last_finite_step + offset + 1, labels, last_finite, last_finite_step, rows)
            last_finite, last_finite_step = loop.output.clone(), loop.step
        if on_step is not None and on_step(loop):
            stopped = True
            break
    if device.type == "cuda":
        torch.cuda.synchronize()
    return LoopResult(loop.output.clone(), rows, loop.step, time.perf_counter() - loop_start, setup_seconds, stopped)


def first_non_finite(rows: list[torch.Tensor], image: torch.Tensor) -> tuple[int, list[bool]] | None:
    """(index among `rows`, per-term finiteness) of the first row with a non-finite value, or
    (last index, all True) when only the image went non-finite; None when all is finite."""
    if not rows:
        return None
    table = torch.stack(rows)
    finite = torch.isfinite(table)
    if bool(finite.all()) and bool(torch.isfinite(image).all()):
        return None
    rows_ok = finite.all(dim=1).tolist()
    if all(rows_ok):
        return len(rows) - 1, [True] * (table.shape[1] - 1)
    index = rows_ok.index(False)
    return index, finite[index, 1:].tolist()


def record_cuda_graph(forward_backward: Callable[[], torch.Tensor], images: list[torch.Tensor]) -> Callable[[], torch.Tensor]:
    """Record one forward and backward pass as a CUDA graph; return a closure that replays it.

    The replay writes what `forward_backward` returned and each image's `.grad` into the
    same memory every time, and the optimizer updates the images in place, so the recorded
    pass always reads the current images. A graph holds no references to what it reads:
    the replay keeps `forward_backward` (and so every tensor its closure holds, such as
    targets made for it) alive, and points each `.grad` back at the memory the graph writes,
    in case something set it to None between steps. Warm-up passes on a side stream come
    first: cuDNN's autotuning and lazy initialisation may not happen during the recording.
    """
    side = torch.cuda.Stream()
    side.wait_stream(torch.cuda.current_stream())
    with torch.cuda.stream(side):
        for _ in range(3):
            for image in images:
                image.grad = None
            forward_backward()
    torch.cuda.current_stream().wait_stream(side)
    for image in images:
        image.grad = None
    graph = torch.cuda.CUDAGraph()
    try:
        with torch.cuda.graph(graph):
            written = forward_backward()
    except RuntimeError as exc:
        first_line = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise UserError(Problem(f"the step could not be recorded as a CUDA graph ({first_line}) - a loss term "
                                "probably waits for the GPU (.item(), torch.linalg.eigh and the like); "
                                "set run.cuda_graph = false", field="run.cuda_graph")) from None

    grads = [image.grad for image in images]

    def replay() -> torch.Tensor:
        for image, grad in zip(images, grads):
            image.grad = grad
        graph.replay()
        return written

    replay.keeps_alive = forward_backward  # what the graph reads (see above)
    return replay
