"""What a job will need, before running it: one model of memory, at two depths.

`estimate` (`stylekit run --dry-run`, batch's --batch-size auto) is close. Rather than model each backbone, loss and optimizer by hand, the estimate runs the job
itself, one step of the real engine, at two small sizes on the CPU, and watches every tensor
the step creates: the targets, the activations autograd keeps, the gradients, the copies
recomputed by activation checkpointing and each temporary. The largest number of bytes
alive at once is extrapolated linearly in the pixel count (a fixed part, such as Gram
matrices, plus a per-pixel part) to the job's size. The backbone's weights and the
optimizer's state, which a single step does not build up, are counted apart.

`pre_run_warnings` (before every run) is quick: the backbone runs forward once on the meta
device, where nothing is allocated, and the same counter adds up the bytes it creates; it
warns only where a run surely cannot fit, or cannot finish in a day.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch.multiprocessing.reductions import StorageWeakRef
from torch.utils._python_dispatch import TorchDispatchMode
from torch.utils._pytree import tree_leaves
from torch.utils.flop_counter import FlopCounterMode

from stylekit.run.build import build_backbone, build_objective, build_optimizer, build_scheduler, stage_images
from stylekit.run.engine import LoopOptions
from stylekit.run.loop import optimize
from stylekit.files.images import output_size
from stylekit.files import sizes
from stylekit.files.sizes import human
from stylekit.recipe.plan import Plan, Stage
from stylekit.run.failures import ADVICE

PROBE_LONG_SIDES = (128, 256)
#: Warn before a run expected to take longer than this on the CPU.
LONG_RUN_SECONDS = 24 * 3600


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


class TensorBytes(TorchDispatchMode):
    """Counts the tensors that operations make while the mode is active: `created`, the
    bytes of every new result (in-place ops make none), and `peak`, the most bytes of
    storages alive at once (real tensors only: meta ones have no storage to follow).
    Storages that existed before (the weights) are not counted. Sees the backward pass and
    checkpoint recomputation too: autograd runs them under the same mode."""

    def __init__(self):
        super().__init__()
        self.live: dict[int, tuple[StorageWeakRef, int]] = {}
        self.peak = 0
        self.created = 0

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        out = func(*args, **(kwargs or {}))
        if not func.overloadpacket.__name__.endswith("_"):  # in-place ops (relu_) make no new tensor
            self.created += sum(t.numel() * t.element_size() for t in tree_leaves(out) if isinstance(t, torch.Tensor))
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
    with TensorBytes() as watch:
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
    probe_sizes = [(max(16, round(h * s / max(h, w))), max(16, round(w * s / max(h, w)))) for s in PROBE_LONG_SIDES]
    probes = [_probe(small, backbone, Stage(b, a, 1)) for a, b in probe_sizes]
    areas = [a * b for a, b in probe_sizes]

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


def pre_run_warnings(plan) -> list[str]:
    """Warnings for a run whose memory exceeds what its device has free, or whose time on
    the CPU exceeds LONG_RUN_SECONDS. Cheap (tens of milliseconds): the backbone is built
    on the meta device (no weights are loaded, no memory taken) and run forward once there,
    counting the bytes of every tensor it makes and its floating-point operations. Autograd
    keeps about those bytes per pixel for the backward pass, and a step is about two forward
    passes (the backbone is frozen: its backward pass computes no weight gradients), so both
    are lower bounds that warn only where a run is surely too large. (`stylekit run
    --dry-run` runs real steps and is far closer, but takes seconds to minutes.)"""
    stage_sizes = [output_size(plan.images.content, stage.width, stage.height) for stage in plan.stages]
    probe = _meta_probe(plan.backbone.cls, plan.backbone.params, plan.layers)
    if probe is None:
        return []
    bytes_per_pixel, flops_per_pixel, weight_count = probe
    warnings = []
    h, w = max(stage_sizes, key=lambda hw: hw[0] * hw[1])
    element = torch.tensor([], dtype=plan.dtype).element_size()
    state_copies = plan.optimizer.cls(plan.optimizer.params).state_copies()
    images = 3 * 4 * h * w * (3 + state_copies)  # the image, its gradient, the optimizer's state
    # With activation checkpointing the activations are recomputed, not kept: count none.
    activations = 0 if plan.recipe.run.checkpoint else bytes_per_pixel * h * w * element / 4
    needed = weight_count * element + images + activations
    free = sizes.available_memory(plan.device)
    if free is not None and needed > free:
        warnings.append(f"{w}x{h} needs at least {human(int(needed))} on {plan.device} but {human(free)} is free "
                        f"- it will probably run out of memory; {ADVICE}")
    flops = 2 * flops_per_pixel * sum(sh * sw * stage.steps for (sh, sw), stage in zip(stage_sizes, plan.stages))
    seconds = flops / (CPU_FLOPS_PER_THREAD * torch.get_num_threads())
    if plan.device.type == "cpu" and seconds > LONG_RUN_SECONDS:
        warnings.append(f"this run needs about {flops / 1e15:.1f} PFLOP, {seconds / 3600:.0f} hours or more on "
                        f"this CPU - lower run.steps or output.width, or run it on a GPU")
    return warnings


#: An optimistic fp32 rate of one AVX2 core (2 FMA units x 8 lanes x 2 at 3 GHz): the time
#: estimate is then a lower bound.
CPU_FLOPS_PER_THREAD = 96e9
PROBE_SIDE = 64


def _meta_probe(backbone_cls, params, layers) -> tuple[float, float, int] | None:
    """(bytes, floating-point operations) per pixel of one fp32 forward pass, and the number
    of weights, of the backbone built on the meta device; None where it cannot be built or
    run there (no "random" weights, a custom kernel)."""
    if "random" not in backbone_cls.weight_choices:
        return None
    try:
        with torch.device("meta"):
            backbone = backbone_cls(params, "random")
        side = max(PROBE_SIDE, backbone_cls.min_input_side_for(params, layers))
        flops, watch = FlopCounterMode(display=False), TensorBytes()
        with torch.no_grad(), flops, watch:
            backbone.features(torch.empty(1, 3, side, side, device="meta"), layers)
    except Exception:  # an estimate is not worth failing a run for
        return None
    weights = sum(p.numel() for p in backbone.parameters())
    return watch.created / (side * side), flops.get_total_flops() / (side * side), weights
