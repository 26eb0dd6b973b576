"""Warping by optical flow, and how far a flow can be trusted.

Flows are (1, 2, H, W) in pixels, as a `FlowProvider` returns them: channel 0 how far a
pixel moves to the right, channel 1 how far down. To bring frame t-1's output into frame
t, stylekit uses the backward flow b (from t to t-1): frame t's pixel x shows what t-1 shows
at x + b(x), so the warped image at x is the earlier image sampled there.

`certainty` is the forward-backward consistency check with motion boundaries of Ruder et
al. (2016, section 3.2): where the two flows disagree the pixel was occluded (or the flow is
wrong); where the flow changes sharply it is a motion boundary; outside the frame nothing is
known. Written from the paper's description.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

#: The consistency test's constants (the paper's): a pixel is occluded where
#: |b + f~|^2 > OCCLUSION_RELATIVE (|b|^2 + |f~|^2) + OCCLUSION_ABSOLUTE, f~ being the
#: forward flow sampled where b points; pixels move by fractions of a pixel between frames,
#: hence an absolute slack of half a pixel squared.
OCCLUSION_RELATIVE = 0.01
OCCLUSION_ABSOLUTE = 0.5
#: A motion boundary: |grad u|^2 + |grad v|^2 > BOUNDARY_RELATIVE |b|^2 + BOUNDARY_ABSOLUTE.
BOUNDARY_RELATIVE = 0.01
BOUNDARY_ABSOLUTE = 0.002


def sample_grid(flow: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """The grid for `grid_sample` that reads, at each pixel x, the point x + flow(x), and a
    (1, 1, H, W) float mask of the pixels whose point lies inside the frame."""
    _, _, height, width = flow.shape
    ys, xs = torch.meshgrid(torch.arange(height, dtype=flow.dtype, device=flow.device),
                            torch.arange(width, dtype=flow.dtype, device=flow.device), indexing="ij")
    x = xs + flow[:, 0]
    y = ys + flow[:, 1]
    inside = ((x >= 0) & (x <= width - 1) & (y >= 0) & (y <= height - 1)).unsqueeze(1).to(flow.dtype)
    # align_corners=True: -1 and 1 are the centres of the first and last pixels.
    grid = torch.stack([2 * x / max(width - 1, 1) - 1, 2 * y / max(height - 1, 1) - 1], dim=-1)
    return grid, inside


def warp(image: torch.Tensor, flow: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """`image` (1, C, H, W) sampled at x + flow(x) for every pixel x (bilinear), and the mask
    of the pixels whose source lies inside the frame (elsewhere the edge is repeated)."""
    grid, inside = sample_grid(flow.to(image.dtype))
    warped = F.grid_sample(image, grid, mode="bilinear", padding_mode="border", align_corners=True)
    return warped, inside


def certainty(backward: torch.Tensor, forward: torch.Tensor) -> torch.Tensor:
    """Where the warp by `backward` (from frame t to the earlier frame) can be trusted: a
    (1, 1, H, W) mask in {0, 1} over frame t, 0 where `forward` (from the earlier frame to t)
    does not lead back (disocclusion), on motion boundaries, and outside the frame."""
    forward_there, inside = warp(forward, backward)
    round_trip = (backward + forward_there).pow(2).sum(1, keepdim=True)
    magnitude = backward.pow(2).sum(1, keepdim=True) + forward_there.pow(2).sum(1, keepdim=True)
    occluded = round_trip > OCCLUSION_RELATIVE * magnitude + OCCLUSION_ABSOLUTE
    boundary = flow_gradient(backward) > BOUNDARY_RELATIVE * backward.pow(2).sum(1, keepdim=True) + BOUNDARY_ABSOLUTE
    return (~occluded & ~boundary).to(backward.dtype) * inside


#: Where a pixel moves by less than STILL_BELOW pixels it is still; by more than STILL_ABOVE,
#: moving; between, partly (linearly).
STILL_BELOW, STILL_ABOVE = 0.5, 1.0


def stillness(flow: torch.Tensor) -> torch.Tensor:
    """A (1, 1, H, W) mask in [0, 1]: 1 where `flow` moves a pixel by at most STILL_BELOW
    pixels, 0 beyond STILL_ABOVE, linear between."""
    moved = flow.pow(2).sum(1, keepdim=True).sqrt()
    return ((STILL_ABOVE - moved) / (STILL_ABOVE - STILL_BELOW)).clamp(0, 1)


def flow_gradient(flow: torch.Tensor) -> torch.Tensor:
    """|grad u|^2 + |grad v|^2 per pixel, by central differences (one-sided at the edges)."""
    dx = torch.zeros_like(flow)
    dy = torch.zeros_like(flow)
    if flow.shape[-1] > 1:
        padded = F.pad(flow, (1, 1, 0, 0), mode="replicate")
        dx = (padded[..., 2:] - padded[..., :-2]) / 2
    if flow.shape[-2] > 1:
        padded = F.pad(flow, (0, 0, 1, 1), mode="replicate")
        dy = (padded[..., 2:, :] - padded[..., :-2, :]) / 2
    return (dx.pow(2) + dy.pow(2)).sum(1, keepdim=True)
