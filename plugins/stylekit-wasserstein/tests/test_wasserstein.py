"""The Wasserstein style loss against closed forms, and in a recipe with the tiny backbone."""

import torch

from stylekit.contract import Targets
from stylekit.testing import TINY_RECIPE_HEAD, run_for_losses, write_recipe
from stylekit_wasserstein import WassersteinStyle, mean_and_covariance, psd_sqrt


def prepared(style: torch.Tensor) -> WassersteinStyle:
    term = WassersteinStyle(WassersteinStyle.Params(eps=0), {"l": 1.0})
    term.prepare(Targets(content_image=None, content={}, styles=[{"l": style}], style_weights=[1.0]))
    return term


def test_mean_and_covariance_by_hand():
    x = torch.tensor([[1.0, 3.0], [2.0, 2.0]]).view(1, 2, 1, 2)  # channel 0: 1, 3; channel 1: 2, 2
    mean, cov = mean_and_covariance(x)
    assert mean.tolist() == [2.0, 2.0]
    assert cov.tolist() == [[1.0, 0.0], [0.0, 0.0]]


def test_psd_sqrt_squares_back():
    a = torch.randn(5, 5)
    m = a @ a.T
    root = psd_sqrt(m)
    assert torch.allclose(root @ root, m, atol=1e-4)


def test_distance_between_commuting_gaussians_has_the_closed_form():
    # Channels independent: W2^2 = |mu_x - mu_s|^2 + sum (sigma_x - sigma_s)^2
    style = torch.tensor([[0.0, 2.0], [1.0, 1.0]]).view(1, 2, 1, 2)  # means (1, 1), stds (1, 0)
    synth = torch.tensor([[3.0, 7.0], [4.0, 4.0]]).view(1, 2, 1, 2)  # means (5, 4), stds (2, 0)
    expected = (5 - 1) ** 2 + (4 - 1) ** 2 + (2 - 1) ** 2
    assert abs(prepared(style)({"l": synth}, None).item() - expected) < 1e-3


def test_distance_to_itself_is_zero_and_gradient_flows():
    style = torch.randn(1, 3, 4, 4)
    term = prepared(style)
    assert abs(term({"l": style}, None).item()) < 1e-3
    synth = torch.randn(1, 3, 4, 4, requires_grad=True)
    term({"l": synth}, None).backward()
    assert torch.isfinite(synth.grad).all() and synth.grad.abs().sum() > 0


def test_wasserstein_in_a_recipe_lowers_its_loss(tmp_path):
    body = '[[loss]]\nname = "wasserstein"\nweight = 100\nlayers = ["r1", "r2"]\n'
    recipe = write_recipe(tmp_path, body, head='requires = ["stylekit-wasserstein"]\n' + TINY_RECIPE_HEAD)
    losses = [row["wasserstein"] for row in run_for_losses(recipe, "--steps", "20")]
    assert losses[-1] < 0.5 * losses[0]
