"""Telling a run that cannot fit from a bug: `failure_message` turns the exceptions torch
raises when memory runs out (on the CPU a plain RuntimeError from `DefaultCPUAllocator`, on
a GPU `torch.OutOfMemoryError`) or when an image is too small for a backbone's pooling into
one message with what to change; anything else is a bug and keeps its traceback.
"""

from __future__ import annotations

import torch

#: Texts of the errors torch and the allocators raise when memory runs out.
OUT_OF_MEMORY = ("DefaultCPUAllocator: can't allocate memory", "DefaultCPUAllocator: not enough memory",
                 "out of memory", "Cannot allocate memory")
#: Texts of the errors pooling and strided layers raise for an input smaller than they need.
TOO_SMALL = ("Output size is too small", "Kernel size can't be greater than actual input size",
             "smaller than kernel size", "Padding size should be less than")
ADVICE = ("lower output.width (or the last stage's width), set run.checkpoint = true, use "
          "run.precision = \"bf16\", a smaller L-BFGS history, or fewer or shallower layers; "
          "`stylekit run RECIPE --dry-run` estimates each stage's peak memory")


def failure_message(exc: BaseException, device: torch.device, hw: tuple[int, int]) -> str | None:
    """What to say about `exc`, raised during a run on `device` at size hw, or None if it
    is not about memory or image size."""
    h, w = hw
    text = str(exc)
    if isinstance(exc, (torch.OutOfMemoryError, MemoryError)) or (
            isinstance(exc, RuntimeError) and any(part in text for part in OUT_OF_MEMORY)):
        return f"ran out of memory on {device} at {w}x{h} - {ADVICE}"
    if isinstance(exc, RuntimeError) and any(part in text for part in TOO_SMALL):
        first = text.strip().splitlines()[0] if text.strip() else type(exc).__name__
        return (f"the image is too small for the backbone at {w}x{h} ({first}) - make the output larger "
                f"(output.width) or read shallower layers")
    return None


def is_resource_failure(exc: BaseException) -> bool:
    """Whether `exc` is about memory or image size (the recipe's sizes), not a bug."""
    return failure_message(exc, torch.device("cpu"), (0, 0)) is not None
