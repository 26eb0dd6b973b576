"""Choosing the device and the compute precision."""

from __future__ import annotations

import torch

from stylekit.errors import UserError

DTYPES = {"fp32": torch.float32, "bf16": torch.bfloat16, "fp16": torch.float16}


def resolve_device(name: str) -> torch.device:
    """`auto`: CUDA, then Apple MPS, then the CPU. A named device must be present."""
    if name == "auto":
        if torch.cuda.is_available():
            return torch.device("cuda")
        mps = getattr(torch.backends, "mps", None)
        if mps is not None and mps.is_available():
            return torch.device("mps")
        return torch.device("cpu")
    device = torch.device(name)
    if device.type == "cuda" and not torch.cuda.is_available():
        raise UserError("'cuda' was asked for but no CUDA GPU is available - use device = \"auto\" or \"cpu\"")
    if device.type == "cuda" and device.index is not None and device.index >= torch.cuda.device_count():
        count = torch.cuda.device_count()
        raise UserError(f"'{name}' was asked for but this machine has {count} CUDA GPU{'s' if count > 1 else ''} "
                        f"(cuda:0{f' to cuda:{count - 1}' if count > 1 else ''}) - use one of them, or \"cuda\"")
    if device.type == "mps" and not (getattr(torch.backends, "mps", None) and torch.backends.mps.is_available()):
        raise UserError("'mps' was asked for but Apple MPS is not available - use device = \"auto\" or \"cpu\"")
    return device


def cpu_has_fast_bf16() -> bool:
    """AMX or AVX-512-BF16 units, where bf16 convolutions run several times faster than fp32."""
    try:
        with open("/proc/cpuinfo", encoding="utf-8") as handle:
            flags = handle.read()
    except OSError:
        return False
    return "amx_bf16" in flags or "avx512_bf16" in flags


def resolve_precision(name: str, device: torch.device) -> torch.dtype:
    if name == "auto":
        if device.type == "cuda":
            return torch.bfloat16 if torch.cuda.is_bf16_supported() and torch.cuda.get_device_capability(device)[0] >= 8 else torch.float32
        if device.type == "cpu":
            return torch.bfloat16 if cpu_has_fast_bf16() else torch.float32
        return torch.float32
    if name == "fp16" and device.type != "cuda":
        raise UserError(f"fp16 runs only on CUDA, not on {device.type} - use \"bf16\" or \"fp32\"")
    return DTYPES[name]


def dtype_name(dtype: torch.dtype) -> str:
    return {v: k for k, v in DTYPES.items()}[dtype]
