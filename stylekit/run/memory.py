"""Peak-memory estimate of a job, before running it (`stylekit run --dry-run`).

Rather than model each backbone, loss and optimizer by hand, the estimate runs the job
itself, one step of the real engine, at two small sizes on the CPU, and watches every tensor
the step creates: the targets, the activations autograd keeps, the gradients, the copies
recomputed by activation checkpointing and each temporary. The largest number of bytes
alive at once is extrapolated linearly in the pixel count (a fixed part, such as Gram
matrices, plus a per-pixel part) to the job's size. The backbone's weights and the
optimizer's state, which a single step does not build up, are counted apart.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch.multiprocessing.reductions import StorageWeakRef
from torch.utils._python_dispatch import TorchDispatchMode
from torch.utils._pytree import tree_leaves

from stylekit.run.build import build_backbone, build_objective, build_optimizer, build_scheduler, stage_images
from stylekit.run.engine import LoopOptions
from stylekit.run.loop import optimize
from stylekit.files.images import output_size
from stylekit.recipe.plan import Plan, Stage

PROBE_LONG_SIDES = (128, 256)


@dataclass
class Estimate:
    weights: int
    targets: int
    activations: int
    optimizer_state: int

    @property
    def total(self) -> int:
        return self.weights + self.targets + self.activations + self.optimizer_state

    def lines(self) -> list[str]:
        parts = [("backbone weights", self.weights), ("loss targets", self.targets),
                 ("step (activations, gradients)", self.activations), ("optimizer state", self.optimizer_state)]
        return [f"  {name:<31}{human(value):>10}" for name, value in parts] + [f"  {'estimated peak':<31}{human(self.total):>10}"]


def human(n: int) -> str:
    for unit, size in (("GB", 1 << 30), ("MB", 1 << 20), ("KB", 1 << 10)):
        if n >= size:
            return f"{n / size:.2f} {unit}"
    return f"{n} B"


class LiveBytes(TorchDispatchMode):
    """Follows every tensor storage that operations create while the mode is active, and
    records the most bytes alive at once. Storages that existed before (the weights) are
    not counted. Sees the backward pass and checkpoint recomputation too: autograd runs
    them under the same mode."""

    def __init__(self):
        super().__init__()
        self.live: dict[int, tuple[StorageWeakRef, int]] = {}
        self.peak = 0

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        out = func(*args, **(kwargs or {}))
        # Forget freed storages first: their addresses may come back for new ones.
        self.live = {key: entry for key, entry in self.live.items() if not entry[0].expired()}
        for tensor in tree_leaves(out):
            if isinstance(tensor, torch.Tensor) and tensor.device.type != "meta":
                storage = tensor.untyped_storage()
                if storage.data_ptr() not in self.live:
                    self.live[storage.data_ptr()] = (StorageWeakRef(storage), storage.nbytes())
        self.peak = max(self.peak, sum(size for _, size in self.live.values()))
        return out


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


def _probe(plan: Plan, backbone, stage: Stage) -> tuple[int, int]:
    """(bytes the loss terms keep as targets, most bytes alive at once) for one real step
    of `plan` at `stage`'s size on the CPU."""
    with LiveBytes() as watch:
        images = stage_images(plan, stage)
        objective = build_objective(plan, backbone, images)
        optimize(objective, images.start, build_optimizer(plan), build_scheduler(plan), LoopOptions(steps=1),
                 torch.device("cpu"))
    weights = {p.untyped_storage().data_ptr() for p in backbone.parameters()}
    held = sum(_tensor_bytes(vars(wt.term), set(weights)) for wt in objective.terms)
    return held, watch.peak


def estimate(plan: Plan, stage: Stage) -> Estimate:
    """Estimated peak memory of `stage` of `plan` at its size."""
    h, w = output_size(plan.images.content, stage.width, stage.height)
    small = plan.replace(device=torch.device("cpu"))
    backbone = build_backbone(small)
    sizes = [(max(16, round(h * s / max(h, w))), max(16, round(w * s / max(h, w)))) for s in PROBE_LONG_SIDES]
    probes = [_probe(small, backbone, Stage(b, a, 1)) for a, b in sizes]
    areas = [a * b for a, b in sizes]

    def extrapolate(i: int) -> int:
        (a1, q1), (a2, q2) = (areas[0], probes[0][i]), (areas[1], probes[1][i])
        per_pixel = (q2 - q1) / (a2 - a1)
        return max(0, round(q1 + per_pixel * (h * w - a1)))

    weights = sum(p.numel() * p.element_size() for p in backbone.parameters())
    targets, peak = extrapolate(0), extrapolate(1)
    # Built up over the steps, so absent from a one-step probe: the optimizer's own state
    # (Adam's moments, L-BFGS's history) and the moving average of the iterates.
    copies = build_optimizer(plan).state_copies() + (1 if plan.recipe.run.ema_decay else 0)
    state = round(3 * h * w * 4 * copies)
    return Estimate(weights=weights, targets=targets, activations=max(0, peak - targets), optimizer_state=state)
