"""The chapter's loss terms: content (feature MSE), Gram-matrix style, total variation.

All compute in float32 (float64 where the features are float64), whatever precision the
backbone ran in.
"""

from __future__ import annotations

from typing import Literal

import torch
import torch.nn.functional as F
from pydantic import Field

from stylekit.contract.components import LossTerm, Params, Targets
from stylekit.contract.hookspecs import hookimpl


def wide(x: torch.Tensor) -> torch.Tensor:
    """`x` in float32, or float64 if it is: bf16 and fp16 features are widened for the sums,
    float64 ones (the tests' invariance checks, where rounding must not hide a difference)
    kept."""
    return x if x.dtype == torch.float64 else x.float()


class _Gram(torch.autograd.Function):
    r"""$X^\top X$ in float32 for (n, m, c) matrices X of any precision, saving only X itself.

    Autograd's own matmul would save a float32 copy of bf16 features and form the gradient
    of each operand separately, each the size of X; the gradient of $X^\top X$ is one
    product, $X (G + G^\top)$, and X is already alive as the layer's output.
    """

    @staticmethod
    def forward(ctx, x: torch.Tensor) -> torch.Tensor:
        ctx.save_for_backward(x)
        wider = wide(x)
        return wider.mT @ wider

    @staticmethod
    def backward(ctx, grad: torch.Tensor) -> torch.Tensor:
        (x,) = ctx.saved_tensors
        return (wide(x) @ (grad + grad.mT)).to(x.dtype)


def feature_matrices(features: torch.Tensor) -> torch.Tensor:
    """(n, c, h, w) features as n (hw, c) matrices: a view, in either memory layout."""
    n, c, h, w = features.shape
    if features.is_contiguous(memory_format=torch.channels_last):
        return features.permute(0, 2, 3, 1).reshape(n, h * w, c)
    return features.reshape(n, c, h * w).mT


def grams(features: torch.Tensor, normalization: str = "chw") -> torch.Tensor:
    r"""The (n, c, c) Gram matrices $G = X X^\top / m$ of (n, c, h, w) features, X each image's
    c x hw matrix, in float32: one batched product for all n images.

    `m` is c*h*w (the chapter's) or h*w (Gatys et al.; the style distance of judge.py).
    """
    _, c, h, w = features.shape
    return _Gram.apply(feature_matrices(features)) / (c * h * w if normalization == "chw" else h * w)


def gram(features: torch.Tensor, normalization: str = "chw") -> torch.Tensor:
    """The (c, c) Gram matrix of one image's (1, c, h, w) features (see `grams`)."""
    return grams(features, normalization)[0]


def masked_gram(features: torch.Tensor, mask: torch.Tensor, normalization: str = "chw") -> torch.Tensor:
    """Gram matrix of the features inside a region: weighted by the (1, 1, H, W) mask resized
    to the features' size, and normalized by the region's area instead of h*w."""
    _, c, h, w = features.shape
    region = F.interpolate(mask.to(features.device, torch.float32), size=(h, w), mode="bilinear", align_corners=False)
    weighted = wide(features) * region
    area = region.sum().clamp_min(1.0)
    return _Gram.apply(feature_matrices(weighted))[0] / (c * area if normalization == "chw" else area)


class ContentLoss(LossTerm):
    r"""Squared difference of features, per layer: its mean $\frac{1}{chw}\sum (F - F_c)^2$
    (the chapter's), or its sum $\sum (F - F_c)^2$ (Gatys et al. write $\frac12\sum$; put the
    half into the weight)."""

    name = "content"
    summary = "Mean squared difference of features from the content image's (the chapter's content loss)."
    default_layers = ("conv4_4",)
    target_images = frozenset({"content"})

    class Params(Params):
        reduction: Literal["mean", "sum"] = Field(
            "mean", description="mean over channels and pixels (the chapter's), or sum (Gatys et al.'s, "
                                "which grows with the image's size)")

    def prepare(self, targets: Targets) -> None:
        self.targets = {name: wide(targets.content[name]) for name in self.layers}

    def forward(self, features, image):
        reduce = torch.mean if self.params.reduction == "mean" else torch.sum
        return self.weighted_sum(lambda name: reduce((wide(features[name]) - self.targets[name]) ** 2))

    @classmethod
    def together(cls, terms):
        if not cls.configured_alike(terms):
            return None
        first = terms[0]
        # Every image's targets stacked, for one subtraction for all; each term keeps a view
        # of its own, so that they are not held twice (they are the size of the features).
        targets = {name: torch.cat([t.targets[name] for t in terms]) for name in first.layers}
        for k, term in enumerate(terms):
            term.targets = {name: targets[name][k:k + 1] for name in first.layers}
        reduce = torch.mean if first.params.reduction == "mean" else torch.sum

        def values(features, images):
            return first.weighted_sum(lambda name: reduce((wide(features[name]) - targets[name]) ** 2, dim=(1, 2, 3)))
        return values


class GramLoss(LossTerm):
    r"""Mean squared difference of Gram matrices, summed over layers with per-layer weights.

    With several style images the target is their blend: $\sum_i w_i G(S_i)$. With style
    masks (spatial control, Gatys et al. 2017) each style i is matched instead in its own
    region: the Gram of the features weighted by mask i, normalized by the mask's area.
    `relative = true` divides each layer's term by the mean square of its target Gram, so
    every layer counts the same whatever the magnitude of its features.
    """

    name = "gram"
    summary = "Mean squared difference of Gram matrices from the style image's (optionally per region)."
    default_layers = ("conv1_1", "conv2_1", "conv3_1", "conv4_1", "conv5_1")
    target_images = frozenset({"style"})

    class Params(Params):
        normalization: Literal["chw", "hw"] = Field(
            "chw", description="divide each Gram by channels x height x width (chw, the chapter's) or by height x width (hw)")
        relative: bool = Field(False, description="divide each layer's term by the mean square of its target Gram, "
                                                  "so that every layer counts the same")

    def prepare(self, targets: Targets) -> None:
        norm = self.params.normalization
        self.masks = targets.style_masks
        # One target per region with masks; else a single blended target.
        self.targets: dict[str, list[torch.Tensor]] = {}
        self.scales: dict[str, list[float]] = {}
        for name in self.layers:
            grams = [gram(style[name], norm) for style in targets.styles]
            found = grams if self.masks else [sum(w * g for w, g in zip(targets.style_weights, grams))]
            self.targets[name] = found
            self.scales[name] = [1 / t.pow(2).mean().clamp_min(1e-12) if self.params.relative else 1.0 for t in found]

    def forward(self, features, image):
        norm = self.params.normalization

        def layer_loss(name: str) -> torch.Tensor:
            feature = features[name]
            if not self.masks:
                return torch.mean((gram(feature, norm) - self.targets[name][0]) ** 2) * self.scales[name][0]
            total = 0.0
            for mask, target, scale in zip(self.masks, self.targets[name], self.scales[name]):
                total = total + torch.mean((masked_gram(feature, mask, norm) - target) ** 2) * scale
            return total

        return self.weighted_sum(layer_loss)

    @classmethod
    def together(cls, terms):
        if not cls.configured_alike(terms) or any(t.masks for t in terms):
            return None
        first, norm = terms[0], terms[0].params.normalization
        targets = {name: torch.stack([t.targets[name][0] for t in terms]) for name in first.layers}
        scales = {name: torch.stack([torch.as_tensor(t.scales[name][0], dtype=t.targets[name][0].dtype) for t in terms])
                  .to(targets[name].device) for name in first.layers}

        def values(features, images):
            return first.weighted_sum(
                lambda name: ((grams(features[name], norm) - targets[name]) ** 2).mean(dim=(1, 2)) * scales[name])
        return values


class TotalVariation(LossTerm):
    r"""Total variation $\frac12(\mathrm{mean}|x_{i,j}-x_{i+1,j}| + \mathrm{mean}|x_{i,j}-x_{i,j+1}|)$ of the RGB [0, 1] image."""

    name = "tv"
    summary = "Total variation of the image: mean absolute difference of neighbouring pixels, halved."
    reads_features = False

    def forward(self, features, image):
        return self._per_image(image)[0]

    @staticmethod
    def _per_image(images: torch.Tensor) -> torch.Tensor:
        images = wide(images)
        vertical = (images[:, :, 1:, :] - images[:, :, :-1, :]).abs().mean(dim=(1, 2, 3))
        horizontal = (images[:, :, :, 1:] - images[:, :, :, :-1]).abs().mean(dim=(1, 2, 3))
        return 0.5 * (vertical + horizontal)

    @classmethod
    def together(cls, terms):
        return lambda features, images: cls._per_image(images)


@hookimpl
def register_losses(register):
    for cls in (ContentLoss, GramLoss, TotalVariation):
        register(cls)
