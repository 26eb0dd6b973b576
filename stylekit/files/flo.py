"""Middlebury `.flo` optical-flow files (the format DeepFlow, FlowNet and RAFT's tools
write): the float 202021.25 as a tag, then width and height as 32-bit ints, then
height x width pairs (u, v) of little-endian float32, row by row."""

from __future__ import annotations

import struct
from pathlib import Path

import numpy
import torch

from stylekit.errors import Problem, UserError

TAG = 202021.25
#: No frame stylekit writes is larger (recipe.schema.MAX_SIDE): a header past it is not a flow file.
MAX_SIDE = 16384


def read_flo(path: Path) -> torch.Tensor:
    """The flow in `path` as a (1, 2, H, W) float32 tensor (u: right, v: down, in pixels)."""
    try:
        data = Path(path).read_bytes()
    except OSError as exc:
        raise UserError(Problem(f"cannot read the flow file: {exc.strerror or exc}", file=str(path))) from None
    if len(data) < 12 or struct.unpack("<f", data[:4])[0] != TAG:
        raise UserError(Problem("not a Middlebury .flo file (its first 4 bytes are not the tag 202021.25)",
                                file=str(path)))
    width, height = struct.unpack("<ii", data[4:12])
    if not (0 < width <= MAX_SIDE and 0 < height <= MAX_SIDE):
        raise UserError(Problem(f"a .flo header of {width}x{height} pixels is not a flow file's", file=str(path)))
    expected = 12 + width * height * 8
    if len(data) != expected:
        raise UserError(Problem(f"the .flo file says {width}x{height} but holds {len(data)} bytes, not {expected} - "
                                "it is truncated or not a flow file", file=str(path)))
    values = numpy.frombuffer(data, dtype="<f4", offset=12).reshape(height, width, 2)
    return torch.from_numpy(values.astype(numpy.float32)).permute(2, 0, 1).unsqueeze(0).contiguous()


def write_flo(path: Path, flow: torch.Tensor) -> None:
    """Write a (1, 2, H, W) or (2, H, W) flow to `path` as a .flo file."""
    flow = flow.detach().float().cpu().reshape(2, *flow.shape[-2:])
    height, width = flow.shape[-2:]
    body = flow.permute(1, 2, 0).contiguous().numpy().astype("<f4").tobytes()
    Path(path).write_bytes(struct.pack("<f", TAG) + struct.pack("<ii", width, height) + body)
