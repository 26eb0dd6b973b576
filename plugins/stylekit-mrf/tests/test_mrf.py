"""The MRF loss by hand on tiny features, and in a recipe with stylekit's tiny backbone."""

import torch

from stylekit.contract import Targets
from stylekit.testing import TINY_RECIPE_HEAD, run_for_losses, write_recipe
from stylekit_mrf import MRFLoss, nearest, patches


def test_patches_are_flattened_windows():
    x = torch.arange(16.0).view(1, 1, 4, 4)
    found = patches(x, 2, 2)
    assert found.tolist() == [[0, 1, 4, 5], [2, 3, 6, 7], [8, 9, 12, 13], [10, 11, 14, 15]]


def test_nearest_uses_normalized_cross_correlation_not_distance():
    candidates = torch.tensor([[1.0, 0.0], [10.0, 10.0]])
    # [0.2, 0.2] is closer to [1, 0] in distance but points the way of [10, 10]
    assert nearest(torch.tensor([[0.2, 0.2], [3.0, 0.1]]), torch.nn.functional.normalize(candidates, dim=1)).tolist() == [1, 0]


def test_loss_is_mean_squared_difference_to_matched_patches():
    style = torch.tensor([[1.0, 0.0], [0.0, 1.0]]).view(1, 1, 2, 2)  # 1x1 patches: values 1, 0, 0, 1
    term = MRFLoss(MRFLoss.Params(patch_size=1), {"l": 1.0})
    term.prepare(Targets(content_image=None, content={}, styles=[{"l": style}], style_weights=[1.0]))
    synth = torch.tensor([[2.0, 3.0], [0.5, 4.0]]).view(1, 1, 2, 2)
    # 1-d patches all correlate equally (sign only) with the positive candidates -> first match, value 1
    expected = ((2 - 1) ** 2 + (3 - 1) ** 2 + (0.5 - 1) ** 2 + (4 - 1) ** 2) / 4
    assert abs(term({"l": synth}, None).item() - expected) < 1e-6


def test_gradient_flows_to_the_synthesized_features_only():
    style = torch.randn(1, 4, 6, 6)
    term = MRFLoss(MRFLoss.Params(), {"l": 1.0})
    term.prepare(Targets(content_image=None, content={}, styles=[{"l": style}], style_weights=[1.0]))
    synth = torch.randn(1, 4, 6, 6, requires_grad=True)
    term({"l": synth}, None).backward()
    assert synth.grad is not None and synth.grad.abs().sum() > 0


def test_mrf_in_a_recipe_lowers_its_loss(tmp_path):
    body = '[[loss]]\nname = "mrf"\nweight = 1e4\nlayers = ["r1", "r2"]\n[loss.params]\nstyle_stride = 2\n'
    recipe = write_recipe(tmp_path, body, head='requires = ["stylekit-mrf"]\n' + TINY_RECIPE_HEAD)
    losses = [row["mrf"] for row in run_for_losses(recipe, "--steps", "20")]
    assert losses[-1] < 0.7 * losses[0]
