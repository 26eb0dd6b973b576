"""Memory and time: telling a run that cannot fit (or cannot finish) from a bug.

`failure_message` turns the exceptions torch raises when memory runs out (on the CPU a
plain RuntimeError from `DefaultCPUAllocator`, on a GPU `torch.OutOfMemoryError`) or when
an image is too small for a backbone's pooling into one message with what to change;
anything else is a bug and keeps its traceback. `pre_run_warnings` warns before a run whose
estimated memory exceeds what the machine has, or whose estimated time is far too long.
"""

from __future__ import annotations

import os

import torch

from stylekit.files.images import output_size, style_size

#: Texts of the errors torch and the allocators raise when memory runs out.
OUT_OF_MEMORY = ("DefaultCPUAllocator: can't allocate memory", "DefaultCPUAllocator: not enough memory",
                 "out of memory", "Cannot allocate memory")
#: Texts of the errors pooling and strided layers raise for an input smaller than they need.
TOO_SMALL = ("Output size is too small", "Kernel size can't be greater than actual input size",
             "smaller than kernel size", "Padding size should be less than")
_OTHER_WAYS = ("set run.checkpoint = true, use run.precision = \"bf16\", a smaller L-BFGS history, or fewer or "
               "shallower layers; `stylekit run RECIPE --dry-run` estimates each stage's peak memory")
ADVICE = "lower output.width (or the last stage's width), " + _OTHER_WAYS
#: Where images.style_scale makes the style image larger than the output: its features
#: then take more memory than the output's, and a smaller output helps little.
STYLE_ADVICE = "lower images.style_scale, " + _OTHER_WAYS
#: Warn before a run expected to take longer than this on the CPU.
LONG_RUN_SECONDS = 24 * 3600


def failure_message(exc: BaseException, device: torch.device, hw: tuple[int, int], plan=None) -> str | None:
    """What to say about `exc`, raised during a run on `device` at size hw, or None if it
    is not about memory or image size. With the `plan`, running out of memory names the
    field that made the largest image: the output's size, or images.style_scale."""
    h, w = hw
    text = str(exc)
    if isinstance(exc, (torch.OutOfMemoryError, MemoryError)) or (
            isinstance(exc, RuntimeError) and any(part in text for part in OUT_OF_MEMORY)):
        style = _scaled_style(plan) if plan is not None else None
        if style is not None:
            (sh, sw), scale = style
            return (f"ran out of memory on {device} at {w}x{h}, with the style image resized to {sw}x{sh} by "
                    f"images.style_scale = {scale:g} - {STYLE_ADVICE}")
        return f"ran out of memory on {device} at {w}x{h} - {ADVICE}"
    if isinstance(exc, RuntimeError) and any(part in text for part in TOO_SMALL):
        first = text.strip().splitlines()[0] if text.strip() else type(exc).__name__
        return (f"the image is too small for the backbone at {w}x{h} ({first}) - make the output larger "
                f"(output.width) or read shallower layers")
    return None


def _scaled_style(plan) -> tuple[tuple[int, int], float] | None:
    """((height, width) of the largest style image, the scale) where images.style_scale
    makes a style image larger than the largest output of the run; else None."""
    spec = plan.recipe.images
    if spec.style_scale <= 1 or plan.images is None:
        return None
    outputs = [output_size(plan.images.content, stage.width, stage.height) for stage in plan.stages]
    styles = [style_size(style, hw, spec.style_scale, spec.style_fit) for hw in outputs for style in plan.images.styles]
    largest = max(styles, key=lambda hw: hw[0] * hw[1], default=None)
    if largest is None or largest[0] * largest[1] <= max(h * w for h, w in outputs):
        return None
    return largest, spec.style_scale


def is_resource_failure(exc: BaseException) -> bool:
    """Whether `exc` is about memory or image size (the recipe's sizes), not a bug."""
    return failure_message(exc, torch.device("cpu"), (0, 0)) is not None


def available_memory(device: torch.device) -> int | None:
    """Bytes free for a run on `device`: free GPU memory, or the RAM Linux says is available."""
    if device.type == "cuda":
        return torch.cuda.mem_get_info(device)[0]
    try:
        with open("/proc/meminfo", encoding="ascii") as handle:
            for line in handle:
                if line.startswith("MemAvailable:"):
                    return int(line.split()[1]) * 1024
    except OSError:
        pass
    try:
        return os.sysconf("SC_AVPHYS_PAGES") * os.sysconf("SC_PAGE_SIZE")
    except (ValueError, OSError, AttributeError):
        return None


def pre_run_warnings(plan) -> list[str]:
    """Warnings for a run whose memory exceeds what its device has free, or whose time on
    the CPU exceeds LONG_RUN_SECONDS. Cheap (tens of milliseconds): the backbone is built
    on the meta device (no weights are loaded, no memory taken) and run forward once there,
    counting the bytes of every tensor it makes and its floating-point operations. Autograd
    keeps about those bytes per pixel for the backward pass, and a step is about two forward
    passes (the backbone is frozen: its backward pass computes no weight gradients), so both
    are lower bounds that warn only where a run is surely too large. (`stylekit run
    --dry-run` runs real steps and is far closer, but takes seconds to minutes.)"""
    sizes = [output_size(plan.images.content, stage.width, stage.height) for stage in plan.stages]
    probe = _meta_probe(plan.backbone.cls, plan.backbone.params, plan.layers)
    if probe is None:
        return []
    bytes_per_pixel, flops_per_pixel, weight_count = probe
    warnings = []
    h, w = max(sizes, key=lambda hw: hw[0] * hw[1])
    element = torch.tensor([], dtype=plan.dtype).element_size()
    state_copies = plan.optimizer.cls(plan.optimizer.params).state_copies()
    images = 3 * 4 * h * w * (3 + state_copies)  # the image, its gradient, the optimizer's state
    # With activation checkpointing the activations are recomputed, not kept: count none.
    activations = 0 if plan.recipe.run.checkpoint else bytes_per_pixel * h * w * element / 4
    needed = weight_count * element + images + activations
    free = available_memory(plan.device)
    if free is not None and needed > free:
        from stylekit.run.memory import human

        warnings.append(f"{w}x{h} needs at least {human(int(needed))} on {plan.device} but {human(free)} is free "
                        f"- it will probably run out of memory; {ADVICE}")
    flops = 2 * flops_per_pixel * sum(sh * sw * stage.steps for (sh, sw), stage in zip(sizes, plan.stages))
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
    from torch.utils._python_dispatch import TorchDispatchMode
    from torch.utils._pytree import tree_leaves
    from torch.utils.flop_counter import FlopCounterMode

    class CreatedBytes(TorchDispatchMode):
        total = 0

        def __torch_dispatch__(self, func, types, args=(), kwargs=None):
            out = func(*args, **(kwargs or {}))
            if not func.overloadpacket.__name__.endswith("_"):  # in-place ops (relu_) make no new tensor
                CreatedBytes.total += sum(t.numel() * 4 for t in tree_leaves(out) if isinstance(t, torch.Tensor))
            return out

    if "random" not in backbone_cls.weight_choices:
        return None
    try:
        with torch.device("meta"):
            backbone = backbone_cls(params, "random")
        side = max(PROBE_SIDE, backbone_cls.min_input_side_for(params, layers))
        counter = FlopCounterMode(display=False)
        with torch.no_grad(), counter, CreatedBytes():
            backbone.features(torch.empty(1, 3, side, side, device="meta"), layers)
    except Exception:  # an estimate is not worth failing a run for
        return None
    weights = sum(p.numel() for p in backbone.parameters())
    return CreatedBytes.total / (side * side), counter.get_total_flops() / (side * side), weights
