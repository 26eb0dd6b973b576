"""A style loss by the 2-Wasserstein distance between Gaussians fitted to features."""

from __future__ import annotations

import torch
from pydantic import Field

from stylekit import hookimpl
from stylekit.contract import LossTerm, Params, Targets


def mean_and_covariance(features: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Mean (c,) and covariance (c, c) over the positions of (1, c, h, w) features, in float32."""
    x = features.float().flatten(2)[0]  # (c, hw)
    mean = x.mean(dim=1)
    centred = x - mean[:, None]
    return mean, centred @ centred.T / x.shape[1]


def psd_sqrt(matrix: torch.Tensor) -> torch.Tensor:
    """Square root of a symmetric positive semi-definite matrix."""
    values, vectors = torch.linalg.eigh(matrix)
    return vectors @ torch.diag(values.clamp_min(0).sqrt()) @ vectors.T


def wasserstein2(mean, cov, target_mean, target_cov_sqrt, target_cov_trace) -> torch.Tensor:
    r"""Squared 2-Wasserstein distance between $N(\mu, C)$ and the target Gaussian."""
    cross = target_cov_sqrt @ cov @ target_cov_sqrt
    # tr(sqrt(A)) is the sum of the square roots of A's eigenvalues; eigvalsh stays differentiable.
    cross_trace = torch.linalg.eigvalsh(cross).clamp_min(1e-12).sqrt().sum()
    return (mean - target_mean).pow(2).sum() + cov.trace() + target_cov_trace - 2 * cross_trace


class WassersteinStyle(LossTerm):
    r"""$W_2^2$ between Gaussians fitted to the features of the image and of the style.

    $|\mu_x-\mu_s|^2 + \mathrm{tr}\,C_x + \mathrm{tr}\,C_s - 2\,\mathrm{tr}(C_s^{1/2} C_x C_s^{1/2})^{1/2}$ per layer.
    """

    name = "wasserstein"
    summary = "2-Wasserstein distance between Gaussians (mean, covariance) of image and style features."
    default_layers = ("relu1_1", "relu2_1", "relu3_1", "relu4_1", "relu5_1")
    target_images = frozenset({"style"})

    class Params(Params):
        eps: float = Field(1e-5, ge=0, description="added to covariance diagonals for stability")

    def prepare(self, targets: Targets) -> None:
        self.targets = {}
        for name in self.layers:
            fitted = [mean_and_covariance(style[name]) for style in targets.styles]
            mean = sum(w * m for w, (m, _) in zip(targets.style_weights, fitted))
            cov = sum(w * c for w, (_, c) in zip(targets.style_weights, fitted))
            cov = cov + self.params.eps * torch.eye(cov.shape[0], device=cov.device)
            self.targets[name] = (mean, psd_sqrt(cov), cov.trace())

    def forward(self, features, image):
        def layer_loss(name: str) -> torch.Tensor:
            mean, cov = mean_and_covariance(features[name])
            cov = cov + self.params.eps * torch.eye(cov.shape[0], device=cov.device)
            return wasserstein2(mean, cov, *self.targets[name])

        return self.weighted_sum(layer_loss)


@hookimpl
def register_losses(register):
    register(WassersteinStyle)
