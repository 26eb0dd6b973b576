"""`check_flow`: a flow provider's contract, run as `stylekit video` runs it, on two frames made
in process: a smooth random texture and the same moved by a known whole number of pixels."""

from __future__ import annotations

from pathlib import Path

import torch
import torch.nn.functional as F
from pydantic import BaseModel

from stylekit.component_checks.common import _generator, _Who
from stylekit.contract.flow import FlowProvider, FramePair
from stylekit.video.flows import flow_breach

#: The frames' size (height, width): not square, so that swapped axes show.
FRAME_SIZE = (48, 64)
#: How far the texture moves from the first frame to the second: 2 pixels right, 1 down.
#: Both axes move, by different amounts, so a provider that swaps u and v or gets either
#: sign wrong is told apart from a right one.
SHIFT = (2, 1)
#: Pixels left out along each edge when the flow is graded: at the edges part of the
#: texture enters or leaves the frame (SHIFT's width), and patch- or pyramid-based methods
#: see less context there (DIS's patches are 8 pixels).
MARGIN = 8
#: Largest median end-point error allowed inside the margin, in pixels. A pure translation
#: of a textured image is the easiest case there is: any working method recovers it to a
#: small fraction of a pixel (OpenCV's DIS to about 0.01). Half a pixel is where an error
#: stops being sub-pixel refinement and picks the wrong pixel; the mistakes this is for are
#: far beyond it: no motion at all is off by |SHIFT| = 2.24, u and v swapped by 1.41, a
#: sign wrong by 2 or more. The median, because a method may miss in a few places.
TOLERANCE = 0.5
#: Side of the random texture's cells before bicubic upsampling: features a few pixels
#: across, larger than the shift (so matching is unambiguous), smaller than DIS's patches.
CELL = 4


def shifted_frames(seed: int = 0) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
    """(source, target, forward, backward): two (1, 3, H, W) frames of FRAME_SIZE, target
    showing at (x + u, y + v) what source shows at (x, y), (u, v) = SHIFT, and the true
    flows between them, each (1, 2, H, W): SHIFT from source to target, -SHIFT back. For a
    provider that reads files (`reads_files`): write these flows where its params say."""
    height, width = FRAME_SIZE
    u, v = SHIFT
    coarse = torch.rand(1, 3, (height + v) // CELL + 2, (width + u) // CELL + 2, generator=_generator(seed))
    canvas = F.interpolate(coarse, scale_factor=CELL, mode="bicubic", align_corners=False).clamp(0, 1)
    source = canvas[..., v:v + height, u:u + width].contiguous()
    target = canvas[..., :height, :width].contiguous()
    forward = torch.tensor([float(u), float(v)]).view(1, 2, 1, 1).expand(1, 2, height, width).contiguous()
    return source, target, forward, -forward


def check_flow(cls: type[FlowProvider], params: BaseModel | dict | None = None, frames_dir: Path | None = None,
               tolerance: float | None = TOLERANCE) -> None:
    """Check the flow provider `cls` with `params` (default: its Params' defaults) on the
    frames of `shifted_frames`, both ways, as `stylekit video` asks: `flow` returns a
    (1, 2, H, W) float tensor of finite values, leaves the frames as they were, and, inside
    a margin, its median error is at most `tolerance` pixels (None: not graded, for a model
    whose weights are not trained). `frames_dir`: the folder `FramePair.frames_dir` names
    (a provider that reads files finds them there)."""
    who = _Who(cls, "flow", FlowProvider)
    params = who.params(params)
    provider = who.call(f"{cls.__name__}(params)", cls, params)
    provider.device = torch.device("cpu")  # as stylekit sets it before the first call
    source, target, forward, backward = shifted_frames()
    for pair, frames, truth in ((FramePair(0, 1, frames_dir), (source, target), forward),
                                (FramePair(1, 0, frames_dir), (target, source), backward)):
        given = [frame.clone() for frame in frames]
        called = f"flow(source, target, {pair})"
        flow = who.call(called, provider.flow, *given, pair)
        wrong = flow_breach(flow, FRAME_SIZE)
        if wrong:
            raise who.fail(f"{called} returns a (1, 2, H, W) float tensor of finite values, H and W the frames'",
                           f"it returned {wrong}")
        if not all(torch.equal(a, b) for a, b in zip(given, frames)):
            raise who.fail(f"{called} leaves the frames as they are (stylekit uses them again)",
                           "it changed them - work on a copy")
        if tolerance is not None:
            error = (flow.detach().float().cpu() - truth).pow(2).sum(1).sqrt()[0, MARGIN:-MARGIN, MARGIN:-MARGIN]
            median = error.median().item()
            if not median <= tolerance:
                found = flow.detach().float().cpu()[0, :, MARGIN:-MARGIN, MARGIN:-MARGIN].flatten(1).median(1).values
                raise who.fail(
                    f"{called} finds where a texture moved: ({truth[0, 0, 0, 0]:g}, {truth[0, 1, 0, 0]:g}) pixels "
                    f"(right, down) everywhere, within a median error of {tolerance:g}",
                    f"its median error is {median:.3g} (its median flow ({found[0]:.3g}, {found[1]:.3g})) - channel "
                    "0 is the motion to the right, channel 1 down, from source to target")
