"""The optimization loop. It receives built components and images and never loads plugins,
so it runs the same with VGG-19 on a GPU as with a tiny random backbone in a test.

One step: one forward pass of the backbone over the synthesized image feeds every loss
term, the weighted sum is back-propagated to the pixels, and the optimizer updates them.
Targets (content features, style Grams, ...) are computed once, before the loop.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import Callable

import torch

from .components import Backbone, LossTerm, Optimizer, Scheduler, Targets
from .errors import Problem, UserError


@dataclass
class WeightedTerm:
    label: str  # unique within a run: the loss name, with '#2' etc. for repeats
    term: LossTerm
    weight: float


@dataclass
class Job:
    backbone: Backbone
    terms: list[WeightedTerm]
    optimizer: Optimizer
    scheduler: Scheduler
    content: torch.Tensor  # (1, 3, H, W) RGB in [0, 1]
    styles: list[torch.Tensor]
    style_weights: list[float]
    steps: int
    device: torch.device = field(default_factory=lambda: torch.device("cpu"))
    dtype: torch.dtype = torch.float32
    clamp: bool = True
    checkpoint: bool = False
    compile: bool = False
    cuda_graph: bool = False  # honoured on CUDA only
    #: One (1, 1, H, W) mask per style image: where each style applies (None: everywhere).
    style_masks: list[torch.Tensor] | None = None
    init: torch.Tensor | None = None  # the starting image; the content image when None
    #: Output the exponential moving average of the iterates with this decay (0: off).
    ema_decay: float = 0.0
    #: Applied by the runner to the final image (e.g. putting the content's colours back).
    postprocess: Callable[[torch.Tensor], torch.Tensor] | None = None
    #: Called after every step with (step, image); read `Progress.latest()` for the losses.
    on_step: Callable[[int, torch.Tensor], None] | None = None

    @property
    def layers(self) -> frozenset[str]:
        """Every layer some loss term reads: what the backbone must produce."""
        return frozenset(name for wt in self.terms for name in wt.term.layers)


@dataclass
class Result:
    image: torch.Tensor
    #: Per step: {'total': ..., label: weighted value, ...}.
    history: list[dict[str, float]]
    seconds: float
    setup_seconds: float


class Progress:
    """Per-step loss values kept on the device; read back to the host only on demand,
    so a step never waits for the device just to log."""

    def __init__(self, labels: list[str]):
        self.labels = ["total", *labels]
        self.rows: list[torch.Tensor] = []

    def add(self, row: torch.Tensor) -> None:
        self.rows.append(row)

    def latest(self) -> dict[str, float]:
        return dict(zip(self.labels, self.rows[-1].tolist())) if self.rows else {}

    def history(self) -> list[dict[str, float]]:
        if not self.rows:
            return []
        table = torch.stack(self.rows).cpu().tolist()
        return [dict(zip(self.labels, row)) for row in table]


def prepare_backbone(backbone: Backbone, layers: frozenset[str], device: torch.device, dtype: torch.dtype) -> Backbone:
    """Cut after the last used layer and cast once: weights never get re-cast in the loop."""
    backbone.truncate(layers)
    backbone.requires_grad_(False).eval()
    return backbone.to(device=device, dtype=dtype, memory_format=torch.channels_last)


def network_input(image: torch.Tensor, dtype: torch.dtype) -> torch.Tensor:
    """The image as the backbone runs it: in the compute precision, channels_last."""
    return image.to(dtype=dtype).contiguous(memory_format=torch.channels_last)


@torch.no_grad()
def prepare_targets(job: Job, device: torch.device) -> None:
    """Compute the content and style features once, on `device` and without gradients, and
    let each term keep what it compares against; the features are freed when they are done."""
    terms = [wt.term for wt in job.terms]
    content = job.content.to(device)
    styles = [s.to(device) for s in job.styles]

    def layers_read_from(image: str) -> frozenset[str]:
        return frozenset(name for t in terms if image in t.target_images for name in t.layers)

    def features(image: torch.Tensor, layers: frozenset[str]) -> dict[str, torch.Tensor]:
        return job.backbone.features(network_input(image, job.dtype), layers) if layers else {}

    targets = Targets(
        content_image=content,
        content=features(content, layers_read_from("content")),
        style_images=styles,
        styles=[features(s, layers_read_from("style")) for s in styles],
        style_weights=list(job.style_weights),
        style_masks=[m.to(device) for m in job.style_masks] if job.style_masks else None,
    )
    for term in terms:
        term.to(device)
        term.prepare(targets)


def run(job: Job, progress: Progress | None = None) -> Result:
    start = time.perf_counter()
    device, dtype = job.device, job.dtype
    layers = job.layers
    if device.type == "cuda":
        torch.backends.cudnn.benchmark = True  # same shapes every step: autotuning pays off
    backbone = prepare_backbone(job.backbone, layers, device, dtype)
    backbone.checkpointing = job.checkpoint
    prepare_targets(job, device)

    start_image = job.init if job.init is not None else job.content
    image = start_image.detach().clone().to(device=device, dtype=torch.float32).requires_grad_(True)
    optimizer = job.optimizer.build([image])
    scheduler = job.scheduler.build(optimizer, job.steps)
    progress = progress or Progress([wt.label for wt in job.terms])
    last_row: list[torch.Tensor] = []
    average = image.detach().clone() if job.ema_decay else None

    def objective(network_image: torch.Tensor, pixels: torch.Tensor) -> torch.Tensor:
        """The weighted loss terms, stacked. Its own function so that the features dict is
        released before the backward pass, and so that torch.compile sees the whole step."""
        features = backbone.features(network_image, layers)
        return torch.stack([wt.term(features, pixels) * wt.weight for wt in job.terms])

    # Compiled only for the loop: the targets above ran once, eagerly.
    evaluate = torch.compile(objective, dynamic=False) if job.compile else objective

    def forward_backward() -> torch.Tensor:
        values = evaluate(network_input(image, dtype), image)
        total = values.sum()
        total.backward()
        # The gradient arrives channels_last from the network; optimizers like L-BFGS
        # flatten it with view(), which needs the image's own (contiguous) layout.
        if not image.grad.is_contiguous():
            image.grad = image.grad.contiguous()
        last_row[:] = [torch.cat([total.detach().view(1), values.detach()])]
        return total

    def eager_closure() -> torch.Tensor:
        optimizer.zero_grad(set_to_none=True)
        return forward_backward()

    graphed = job.cuda_graph and device.type == "cuda"
    closure = record_cuda_graph(forward_backward, image) if graphed else eager_closure

    if device.type == "cuda":
        torch.cuda.synchronize()
    setup_seconds = time.perf_counter() - start
    loop_start = time.perf_counter()
    for step in range(1, job.steps + 1):
        if job.optimizer.needs_closure:
            optimizer.step(closure)
        else:
            closure()
            optimizer.step()
        if scheduler is not None:
            scheduler.step()
        if job.clamp:
            with torch.no_grad():
                image.clamp_(0, 1)
        if average is not None:
            average.lerp_(image.detach(), 1 - job.ema_decay)
        # A replayed graph rewrites the same tensor every step: keep a copy (on the device).
        progress.add(last_row[0].clone() if graphed else last_row[0])
        if job.on_step is not None:
            job.on_step(step, image if average is None else average)
    if device.type == "cuda":
        torch.cuda.synchronize()
    seconds = time.perf_counter() - loop_start
    final = image.detach() if average is None else average
    return Result(final, progress.history(), seconds, setup_seconds)


def record_cuda_graph(forward_backward: Callable[[], torch.Tensor], image: torch.Tensor) -> Callable[[], torch.Tensor]:
    """Record one forward and backward pass as a CUDA graph; return a closure that replays it.

    The replay writes the loss, the per-term values and `image.grad` into the same memory
    every time, and the optimizer updates `image` in place, so the recorded pass always
    reads the current image. Warm-up passes on a side stream come first: cuDNN's autotuning
    and lazy initialisation may not happen during the recording.
    """
    side = torch.cuda.Stream()
    side.wait_stream(torch.cuda.current_stream())
    with torch.cuda.stream(side):
        for _ in range(3):
            image.grad = None
            forward_backward()
    torch.cuda.current_stream().wait_stream(side)
    image.grad = None
    graph = torch.cuda.CUDAGraph()
    try:
        with torch.cuda.graph(graph):
            total = forward_backward()
    except RuntimeError as exc:
        first_line = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise UserError(Problem(f"the step could not be recorded as a CUDA graph ({first_line}) - a loss term "
                                "probably waits for the GPU (.item(), torch.linalg.eigh and the like); "
                                "set run.cuda_graph = false", field="run.cuda_graph")) from None

    def replay() -> torch.Tensor:
        graph.replay()
        return total

    return replay
