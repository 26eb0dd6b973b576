"""Keeping the content image's colours (Gatys et al. 2017, "Controlling Perceptual Factors").

- `match_colour_histogram`: before the run, give the style image the content image's colour
  distribution by an affine map of RGB that matches mean and covariance.
- luminance-only transfer: run on luminance (content and style, the style's luminance
  matched to the content's in mean and spread), then put the content's chrominance back
  (`combine_luminance`), in YIQ.
"""

from __future__ import annotations

import torch

RGB_TO_YIQ = torch.tensor([[0.299, 0.587, 0.114], [0.596, -0.274, -0.322], [0.211, -0.523, 0.312]])


def _matrix_power(cov: torch.Tensor, power: float) -> torch.Tensor:
    values, vectors = torch.linalg.eigh(cov)
    return vectors @ torch.diag(values.clamp_min(1e-8).pow(power)) @ vectors.T


def _pixels(image: torch.Tensor) -> torch.Tensor:
    return image.float().reshape(3, -1)


def match_colour_histogram(style: torch.Tensor, content: torch.Tensor) -> torch.Tensor:
    """The style image with its RGB mean and covariance mapped onto the content image's."""
    s, c = _pixels(style), _pixels(content)
    mu_s, mu_c = s.mean(1, keepdim=True), c.mean(1, keepdim=True)
    cov_s, cov_c = torch.cov(s), torch.cov(c)
    transform = _matrix_power(cov_c, 0.5) @ _matrix_power(cov_s, -0.5)
    return (transform @ (s - mu_s) + mu_c).reshape(style.shape).clamp(0, 1)


def yiq(image: torch.Tensor) -> torch.Tensor:
    return torch.einsum("ij,bjhw->bihw", RGB_TO_YIQ.to(image), image)


def rgb(yiq_image: torch.Tensor) -> torch.Tensor:
    return torch.einsum("ij,bjhw->bihw", torch.linalg.inv(RGB_TO_YIQ).to(yiq_image), yiq_image)


def luminance_image(image: torch.Tensor, like: torch.Tensor | None = None) -> torch.Tensor:
    """The luminance as a grey RGB image; with `like`, its mean and spread matched to like's."""
    y = yiq(image)[:, :1]
    if like is not None:
        target = yiq(like)[:, :1]
        y = (y - y.mean()) / y.std().clamp_min(1e-6) * target.std() + target.mean()
    return y.expand(-1, 3, -1, -1).clamp(0, 1).contiguous()


def combine_luminance(result: torch.Tensor, content: torch.Tensor) -> torch.Tensor:
    """The result's luminance with the content image's chrominance."""
    out = yiq(content).clone()
    out[:, :1] = yiq(result)[:, :1]
    return rgb(out).clamp(0, 1)
