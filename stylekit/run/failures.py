"""Telling a run that cannot fit from a bug: `failure_message` turns the exceptions torch
raises when memory runs out (on the CPU a plain RuntimeError from `DefaultCPUAllocator`, on
a GPU `torch.OutOfMemoryError`) or when an image is too small for a backbone's pooling into
one message with what to change; anything else is a bug and keeps its traceback.
"""

from __future__ import annotations

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
