"""The chapter's loss terms: content (feature MSE), Gram-matrix style, total variation.

All compute in float32, whatever precision the backbone ran in.
"""

from __future__ import annotations

from typing import Literal

import torch

from ..components import LossTerm, Params, Targets
from ..hookspecs import hookimpl


def gram(features: torch.Tensor, normalization: str = "chw") -> torch.Tensor:
    r"""Gram matrix $G = X X^\top / n$ of (1, c, h, w) features, X the c x hw matrix.

    `n` is c*h*w (the chapter's) or h*w (Gatys et al.; the style distance of judge.py).
    """
    _, c, h, w = features.shape
    x = features.reshape(c, h * w).float()
    return (x @ x.T) / (c * h * w if normalization == "chw" else h * w)


class ContentLoss(LossTerm):
    r"""Mean squared difference of features: $\frac{1}{chw}\sum (F - F_c)^2$ per layer."""

    name = "content"
    default_layers = ("conv4_4",)

    def prepare(self, targets: Targets) -> None:
        self.targets = {name: targets.content[name].float() for name in self.layers}

    def forward(self, features, image):
        return self.weighted_sum(lambda name: torch.mean((features[name].float() - self.targets[name]) ** 2))


class GramLoss(LossTerm):
    r"""Mean squared difference of Gram matrices, summed over layers with per-layer weights.

    With several style images the target is their blend: $\sum_i w_i G(S_i)$.
    `relative = true` divides each layer's term by the mean square of its target Gram, so
    every layer counts the same whatever the magnitude of its features.
    """

    name = "gram"
    default_layers = ("conv1_1", "conv2_1", "conv3_1", "conv4_1", "conv5_1")

    class Params(Params):
        normalization: Literal["chw", "hw"] = "chw"
        relative: bool = False

    def prepare(self, targets: Targets) -> None:
        norm = self.params.normalization
        self.targets = {}
        self.scales = {}
        for name in self.layers:
            target = sum(w * gram(style[name], norm) for w, style in zip(targets.style_weights, targets.styles))
            self.targets[name] = target
            self.scales[name] = 1 / target.pow(2).mean().clamp_min(1e-12) if self.params.relative else 1.0

    def forward(self, features, image):
        norm = self.params.normalization
        return self.weighted_sum(
            lambda name: torch.mean((gram(features[name], norm) - self.targets[name]) ** 2) * self.scales[name])


class TotalVariation(LossTerm):
    r"""Total variation $\frac12(\mathrm{mean}|x_{i,j}-x_{i+1,j}| + \mathrm{mean}|x_{i,j}-x_{i,j+1}|)$ of the RGB [0, 1] image."""

    name = "tv"
    reads_features = False

    def forward(self, features, image):
        image = image.float()
        vertical = (image[:, :, 1:, :] - image[:, :, :-1, :]).abs().mean()
        horizontal = (image[:, :, :, 1:] - image[:, :, :, :-1]).abs().mean()
        return 0.5 * (vertical + horizontal)


@hookimpl
def register_losses(register):
    for cls in (ContentLoss, GramLoss, TotalVariation):
        register(cls)
