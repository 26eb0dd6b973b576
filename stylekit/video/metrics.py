"""How temporally consistent a stylized clip is, and how well each frame keeps its content
and style: the figures `stylekit video-metrics` prints and benchmarks/video.py compares.

Warping error (Lai et al., "Learning Blind Video Temporal Consistency", ECCV 2018): for
frames t and t - k of the output, bring frame t - k into frame t by the optical flow of the
*input* clip (the stylization's own flow would grade it by what it optimized), keep the
pixels where that flow is certain (the forward-backward check of `stylekit.video.warp`),
and average the squared RGB distance over them:

    E(t, k) = sum_x M(x) |O_t(x) - warp(O_{t-k})(x)|^2 / sum_x M(x),  RGB in [0, 1]

summed over the three channels, then averaged over t. k = 1 measures flicker, k = 10 drift
that frame-to-frame consistency hides. The input clip's own error under the same flow is the
floor a stylization is judged against (lighting changes and flow errors are in it too).

Per-frame figures, computed with a backbone's features (VGG-19 by default, as the loss):
content = |F(x) - F(c)|^2 / |F(c)|^2 at relu4_2; style = the mean over relu1_1..relu5_1 of
|G(x) - G(s)|_F / |G(s)|_F, G the Gram matrix normalized by the pixel count. Both lower is
better; the same definitions as the image judge the quality benchmark uses.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Callable, Sequence

import torch
import torch.nn.functional as F

from PIL import Image

from stylekit.builtins.vgg19 import VGG19
from stylekit.contract.flow import FlowProvider, FramePair
from stylekit.files.images import style_size, to_tensor
from stylekit.video.warp import certainty, warp

#: The offsets the warping error is reported at: flicker (1) and drift (10).
OFFSETS = (1, 10)
CONTENT_LAYER = "relu4_2"
STYLE_LAYERS = ("relu1_1", "relu2_1", "relu3_1", "relu4_1", "relu5_1")

#: flows(t, k) -> (backward, forward): the input clip's flow from frame t to t - k and back.
Flows = Callable[[int, int], tuple[torch.Tensor, torch.Tensor]]


def provider_flows(frames: Sequence[torch.Tensor], provider: FlowProvider) -> Flows:
    """`Flows` for `frames` from `provider`, each pair computed once: grading an output and
    its input asks for the same flows."""
    computed: dict[tuple[int, int], tuple[torch.Tensor, torch.Tensor]] = {}

    def flows(t: int, k: int) -> tuple[torch.Tensor, torch.Tensor]:
        if (t, k) not in computed:
            computed[(t, k)] = (provider.flow(frames[t], frames[t - k], FramePair(t, t - k)),
                                provider.flow(frames[t - k], frames[t], FramePair(t - k, t)))
        return computed[(t, k)]
    return flows


@dataclass
class WarpingError:
    """The warping error at one offset: per frame t >= offset, and their mean."""

    offset: int
    per_frame: list[float] = field(default_factory=list)

    @property
    def mean(self) -> float:
        return sum(self.per_frame) / len(self.per_frame) if self.per_frame else float("nan")


def pair_error(later: torch.Tensor, earlier: torch.Tensor, backward: torch.Tensor, forward: torch.Tensor) -> float:
    """E for one pair: `earlier` warped into `later` by `backward` (later -> earlier), over
    the pixels `certainty(backward, forward)` keeps; NaN when it keeps none."""
    mask = certainty(backward, forward)
    warped, _ = warp(earlier.float(), backward)
    squared = (later.float() - warped).pow(2).sum(1, keepdim=True)
    kept = mask.sum()
    return float((squared * mask).sum() / kept) if kept > 0 else float("nan")


def warping_errors(frames: Sequence[torch.Tensor], flows: Flows, offsets: Sequence[int] = OFFSETS) -> list[WarpingError]:
    """The warping error of `frames` ((1, 3, H, W) in [0, 1], in order) at each offset that
    the clip is long enough for; `flows` gives the input clip's flows."""
    results = []
    for k in offsets:
        if k >= len(frames):
            continue
        error = WarpingError(k)
        for t in range(k, len(frames)):
            backward, forward = flows(t, k)
            value = pair_error(frames[t], frames[t - k], backward, forward)
            if value == value:  # a pair with no certain pixel (a scene cut) says nothing
                error.per_frame.append(value)
        results.append(error)
    return results


def gram_matrix(features: torch.Tensor) -> torch.Tensor:
    channels = features.shape[1]
    flat = features.float().reshape(channels, -1)
    return flat @ flat.T / flat.shape[1]


def content_distance(features: dict[str, torch.Tensor], content: dict[str, torch.Tensor]) -> float:
    """|F(x) - F(c)|^2 / |F(c)|^2 at relu4_2."""
    mine, theirs = features[CONTENT_LAYER].float(), content[CONTENT_LAYER].float()
    if mine.shape != theirs.shape:
        theirs = F.interpolate(theirs, size=mine.shape[-2:], mode="bilinear", align_corners=False)
    return float((mine - theirs).pow(2).sum() / theirs.pow(2).sum().clamp_min(1e-12))


def style_distance(features: dict[str, torch.Tensor], style: dict[str, torch.Tensor]) -> float:
    """The mean over STYLE_LAYERS of |G(x) - G(s)|_F / |G(s)|_F."""
    distances = []
    for name in STYLE_LAYERS:
        target = gram_matrix(style[name])
        distances.append(float(torch.linalg.matrix_norm(gram_matrix(features[name]) - target)
                               / torch.linalg.matrix_norm(target).clamp_min(1e-12)))
    return sum(distances) / len(distances)


def frame_figures(outputs: Sequence[torch.Tensor], inputs: Sequence[torch.Tensor], style: Image.Image,
                  backbone=None) -> dict[str, list[float]]:
    """Each output frame's content distance to its input frame and style distance to the
    style image (resized to the frames' pixel count), with `backbone` (default: VGG-19 with
    the original Caffe weights, the loss's own backbone)."""
    backbone = backbone or VGG19(VGG19.Params(), "caffe").eval()
    layers = frozenset((CONTENT_LAYER, *STYLE_LAYERS))
    height, width = outputs[0].shape[-2:]
    style_tensor = to_tensor(style, style_size(style, (height, width), 1.0, "area"))
    with torch.no_grad():
        style_features = backbone.features(style_tensor, layers)
        content, styled = [], []
        for output, source in zip(outputs, inputs):
            mine = backbone.features(output, layers)
            content.append(content_distance(mine, backbone.features(source, frozenset((CONTENT_LAYER,)))))
            styled.append(style_distance(mine, style_features))
    return {"content": content, "style": styled}
