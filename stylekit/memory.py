"""Peak-memory estimate of a job, before running it (`stylekit run --dry-run`).

Memory in this loop is (a) the backbone's weights, (b) what the loss terms keep as targets,
(c) the activations autograd saves for the backward pass, (d) the gradient buffers alive
during the backward pass, and (e) the image with its gradient and optimizer state. Rather
than model each backbone and loss by hand, the estimate runs one real step at two small
sizes on the CPU, counts (b), (c), (d) and (e) exactly there, and extrapolates each
linearly in the pixel count (fixed part, such as Gram matrices, plus a per-pixel part).
"""

from __future__ import annotations

import copy
from dataclasses import dataclass

import torch
import torch.nn.functional as F

from .engine import Job, network_input, prepare_backbone, prepare_targets

PROBE_LONG_SIDES = (128, 256)


@dataclass
class Estimate:
    weights: int
    targets: int
    activations: int
    backward: int
    image_state: int

    @property
    def total(self) -> int:
        return self.weights + self.targets + self.activations + self.backward + self.image_state

    def lines(self) -> list[str]:
        parts = [("backbone weights", self.weights), ("loss targets", self.targets),
                 ("saved activations", self.activations), ("backward buffers", self.backward),
                 ("image and optimizer state", self.image_state)]
        return [f"  {name:<28}{human(value):>10}" for name, value in parts] + [f"  {'estimated peak':<28}{human(self.total):>10}"]


def human(n: int) -> str:
    for unit, size in (("GB", 1 << 30), ("MB", 1 << 20), ("KB", 1 << 10)):
        if n >= size:
            return f"{n / size:.2f} {unit}"
    return f"{n} B"


def _tensor_bytes(obj, seen: set[int]) -> int:
    """Bytes of distinct tensor storages reachable from obj through dicts, lists and attributes."""
    if isinstance(obj, torch.Tensor):
        key = obj.untyped_storage().data_ptr()
        if key in seen:
            return 0
        seen.add(key)
        return obj.untyped_storage().nbytes()
    if isinstance(obj, dict):
        return sum(_tensor_bytes(v, seen) for v in obj.values())
    if isinstance(obj, (list, tuple)):
        return sum(_tensor_bytes(v, seen) for v in obj)
    return 0


def _probe(job: Job, hw: tuple[int, int]) -> tuple[int, int, int, int]:
    """(targets, saved activations, largest saved tensor, image state) in bytes at size hw."""
    backbone, layers = job.backbone, job.layers
    terms = [copy.deepcopy(wt.term) for wt in job.terms]
    content = prepare_targets(job, terms, lambda x: F.interpolate(x, size=hw, mode="bilinear", align_corners=False))
    weights = {p.untyped_storage().data_ptr() for p in backbone.parameters()}
    seen: set[int] = set(weights)
    held = sum(_tensor_bytes(vars(term), seen) for term in terms)

    saved: dict[int, int] = {}

    def pack(t: torch.Tensor):
        key = t.untyped_storage().data_ptr()
        if key not in weights:
            saved[key] = t.untyped_storage().nbytes()
        return t

    image = content.clone().requires_grad_(True)

    def closure():
        with torch.autograd.graph.saved_tensors_hooks(pack, lambda t: t):
            features = backbone.features(network_input(image, job.dtype), layers)
            total = sum(term(features, image) * wt.weight for term, wt in zip(terms, job.terms))
        total.backward()

    closure()
    # The image, its gradient, its cast for the network, the optimizer's state and the average.
    copies = 2 + job.optimizer.state_copies() + (1 if job.ema_decay else 0)
    state = round(image.numel() * (4 * copies + torch.finfo(job.dtype).bits // 8))
    return held, sum(saved.values()), max(saved.values(), default=0), state


def estimate(job: Job) -> Estimate:
    """Estimated peak memory of `job` at its size; prepares (truncates, casts) its backbone."""
    h, w = job.content.shape[-2:]
    prepare_backbone(job.backbone, job.layers, torch.device("cpu"), job.dtype)
    job.backbone.checkpointing = job.checkpoint
    sizes = [(max(16, round(h * s / max(h, w))), max(16, round(w * s / max(h, w)))) for s in PROBE_LONG_SIDES]
    probes = [_probe(job, hw) for hw in sizes]
    areas = [a * b for a, b in sizes]

    def extrapolate(i: int) -> int:
        (a1, q1), (a2, q2) = (areas[0], probes[0][i]), (areas[1], probes[1][i])
        per_pixel = (q2 - q1) / (a2 - a1)
        return max(0, round(q1 + per_pixel * (h * w - a1)))

    weights = sum(p.numel() * p.element_size() for p in job.backbone.parameters())
    # The backward pass holds the gradient of the layer it is in and of its input: about
    # two of the largest activations at once.
    return Estimate(weights=weights, targets=extrapolate(0), activations=extrapolate(1),
                    backward=2 * extrapolate(2), image_state=extrapolate(3))
