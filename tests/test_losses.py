"""Each built-in loss term against a computation by hand."""

import pytest
import torch

from stylekit.builtins.losses import ContentLoss, GramLoss, TotalVariation, gram
from stylekit.contract.components import Targets


def test_gram_matches_hand_computation():
    x = torch.arange(12, dtype=torch.float32).reshape(1, 2, 2, 3)
    rows = [[0, 1, 2, 3, 4, 5], [6, 7, 8, 9, 10, 11]]
    expected = torch.tensor([[sum(a * b for a, b in zip(r, s)) for s in rows] for r in rows], dtype=torch.float32)
    assert torch.allclose(gram(x, "chw"), expected / 12)
    assert torch.allclose(gram(x, "hw"), expected / 6)


@pytest.mark.parametrize("layout", [torch.contiguous_format, torch.channels_last])
@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16])
def test_gram_gradient_matches_autograd_and_saves_only_the_features(layout, dtype):
    torch.manual_seed(0)
    x = torch.randn(1, 8, 5, 7).to(dtype).contiguous(memory_format=layout).requires_grad_(True)
    reference = x.detach().float().reshape(8, 35).requires_grad_(True)
    weights = torch.randn(8, 8)
    saved = []
    with torch.autograd.graph.saved_tensors_hooks(lambda t: saved.append(t) or t, lambda t: t):
        found = gram(x, "hw")
    assert found.dtype == torch.float32
    assert torch.allclose(found, reference @ reference.T / 35, atol=1e-5)
    (found * weights).sum().backward()
    (reference @ reference.T / 35 * weights).sum().backward()
    assert x.grad.dtype == dtype
    assert torch.allclose(x.grad.float().reshape(8, 35), reference.grad, rtol=1e-2 if dtype == torch.bfloat16 else 1e-5, atol=1e-3)
    # Nothing but the features themselves is kept for the backward pass: no copies.
    assert saved and all(t.untyped_storage().data_ptr() == x.untyped_storage().data_ptr() for t in saved)


def test_content_loss_is_mean_squared_difference_weighted_by_layer():
    target = {"a": torch.zeros(1, 2, 2, 2), "b": torch.ones(1, 1, 2, 2)}
    term = ContentLoss(ContentLoss.Params(), {"a": 1.0, "b": 3.0})
    term.prepare(Targets(content_image=torch.zeros(1, 3, 2, 2), content=target))
    features = {"a": torch.full((1, 2, 2, 2), 2.0), "b": torch.zeros(1, 1, 2, 2)}
    # layer a: mean((2-0)^2) = 4; layer b: mean((0-1)^2) = 1, weighted 3
    assert term(features, None).item() == 4.0 + 3.0


def test_gram_loss_blends_styles_and_takes_mean_squared_difference():
    s1 = torch.ones(1, 1, 2, 2)
    s2 = torch.full((1, 1, 2, 2), 3.0)
    term = GramLoss(GramLoss.Params(normalization="chw"), {"l": 2.0})
    term.prepare(Targets(content_image=None, content={}, styles=[{"l": s1}, {"l": s2}], style_weights=[0.75, 0.25]))
    # Gram(s1) = 4*1/4 = 1; Gram(s2) = 4*9/4 = 9; blend 0.75*1 + 0.25*9 = 3
    x = torch.full((1, 1, 2, 2), 2.0)  # Gram = 4
    assert term({"l": x}, None).item() == 2.0 * (4 - 3) ** 2


def test_relative_gram_loss_divides_by_target_gram_mean_square():
    s = torch.full((1, 1, 2, 2), 2.0)  # Gram (hw) = 4*4/4 = 4
    term = GramLoss(GramLoss.Params(normalization="hw", relative=True), {"l": 1.0})
    term.prepare(Targets(content_image=None, content={}, styles=[{"l": s}], style_weights=[1.0]))
    x = torch.ones(1, 1, 2, 2)  # Gram = 1
    assert abs(term({"l": x}, None).item() - (1 - 4) ** 2 / 16) < 1e-6


def test_total_variation_matches_hand_computation():
    image = torch.tensor([[0.0, 1.0, 3.0], [2.0, 2.0, 2.0]]).view(1, 1, 2, 3)
    vertical = (2 + 1 + 1) / 3  # |row1 - row0| per column
    horizontal = (1 + 2 + 0 + 0) / 4  # |x[j+1]-x[j]| per row
    assert abs(TotalVariation(TotalVariation.Params(), {})({}, image).item() - 0.5 * (vertical + horizontal)) < 1e-6


def test_losses_compute_in_float32_from_bf16_features():
    s = torch.randn(1, 4, 5, 5)
    term = GramLoss(GramLoss.Params(), {"l": 1.0})
    term.prepare(Targets(content_image=None, content={}, styles=[{"l": s.bfloat16()}], style_weights=[1.0]))
    value = term({"l": s.bfloat16() * 1.5}, None)
    assert value.dtype == torch.float32


def _prepared(cls, params, layers, seed):
    """A term prepared with random content and style targets of its own (seeded)."""
    g = torch.Generator().manual_seed(seed)
    content = {name: torch.randn(1, 4, 6, 5, generator=g) for name in layers}
    styles = [{name: torch.randn(1, 4, 7, 3, generator=g) for name in layers} for _ in range(2)]
    term = cls(cls.Params(**params), layers)
    term.prepare(Targets(content_image=torch.rand(1, 3, 12, 10, generator=g), content=content, styles=styles,
                         style_weights=[0.3, 0.7]))
    return term


@pytest.mark.parametrize("cls, params, dtype", [
    (ContentLoss, {}, torch.float32), (ContentLoss, {"reduction": "sum"}, torch.float32), (GramLoss, {}, torch.float32),
    (GramLoss, {"normalization": "hw", "relative": True}, torch.float32), (TotalVariation, {}, torch.float32),
    (GramLoss, {}, torch.bfloat16), (ContentLoss, {}, torch.bfloat16)])
@pytest.mark.parametrize("layout", [torch.contiguous_format, torch.channels_last])
def test_terms_evaluated_together_give_each_image_its_own_value_and_gradient(cls, params, dtype, layout):
    """`LossTerm.together` over three images, each with its own targets: the value and the
    gradient each image would get from its own term alone (fp32 sums may round apart; with
    bf16 features, as a run in bf16 gives them, the gradient is rounded to bf16 after)."""
    layers = {} if cls is TotalVariation else {"a": 1.0, "b": 0.25}
    terms = [_prepared(cls, params, layers, seed) for seed in range(3)]
    together = cls.together(terms)
    assert together is not None, "the built-in terms evaluate a group in one go"
    torch.manual_seed(5)
    features = {name: torch.randn(3, 4, 6, 5).to(dtype).contiguous(memory_format=layout).requires_grad_(True)
                for name in layers}
    images = torch.rand(3, 3, 12, 10).requires_grad_(True)
    values = together(features, images)
    assert values.shape == (3,)
    (values * torch.tensor([1.0, 2.0, 3.0])).sum().backward()
    for k, term in enumerate(terms):
        mine = {name: f.detach()[k:k + 1].clone().requires_grad_(True) for name, f in features.items()}
        image = images.detach()[k:k + 1].clone().requires_grad_(True)
        alone = term(mine, image)
        assert torch.allclose(values[k], alone, rtol=1e-5), (k, values[k], alone)
        ((k + 1) * alone).backward()
        for name in layers:  # bf16: a gradient within 1e-4 of the other may round one bf16 step apart
            assert torch.allclose(features[name].grad[k:k + 1].float(), mine[name].grad.float(),
                                  rtol=1e-4 if dtype == torch.float32 else 2 ** -7, atol=1e-7)
        if cls is TotalVariation:
            assert torch.allclose(images.grad[k:k + 1], image.grad, rtol=1e-5, atol=1e-7)


def test_terms_configured_differently_or_with_masks_are_left_to_evaluate_alone():
    layers = {"a": 1.0}
    assert GramLoss.together([_prepared(GramLoss, {}, layers, 0), _prepared(GramLoss, {"relative": True}, layers, 1)]) is None
    assert ContentLoss.together([_prepared(ContentLoss, {}, layers, 0), _prepared(ContentLoss, {}, {"a": 2.0}, 1)]) is None
    masked = _prepared(GramLoss, {}, layers, 0)
    masked.masks = [torch.ones(1, 1, 6, 5), torch.zeros(1, 1, 6, 5)]
    assert GramLoss.together([masked, _prepared(GramLoss, {}, layers, 1)]) is None


def test_a_group_evaluates_terms_without_together_slice_by_slice_beside_those_with_it():
    """stylekit.run.together.group_values: a third-party term that offers no `together` is
    called on each image's slice; the weighted table matches each image's terms alone."""
    from stylekit.contract.components import LossTerm
    from stylekit.run.engine import Objective, WeightedTerm
    from stylekit.run.together import group_values

    class Energy(LossTerm):  # a plugin's term: no `together`, so slice by slice
        name = "energy"

        def forward(self, features, image):
            assert features["a"].shape[0] == 1 and image.shape[0] == 1
            return features["a"].pow(2).mean() + image.mean()

    layers = {"a": 1.0, "b": 0.25}
    objectives = [Objective(None, (WeightedTerm("gram", _prepared(GramLoss, {}, layers, seed), 10.0),
                                   WeightedTerm("energy", Energy(Energy.Params(), {"a": 1.0}), 0.5)))
                  for seed in range(3)]
    features = {name: torch.randn(3, 4, 6, 5) for name in layers}
    images = torch.rand(3, 3, 12, 10)
    table = group_values(objectives, torch.device("cpu"))(features, images)
    assert table.shape == (3, 2)
    for k, objective in enumerate(objectives):
        mine = {name: f[k:k + 1] for name, f in features.items()}
        alone = torch.stack([wt.term(mine, images[k:k + 1]) * wt.weight for wt in objective.terms])
        assert torch.allclose(table[k], alone, rtol=1e-5)


def test_a_subclass_that_changes_forward_is_not_evaluated_by_its_parent_s_together():
    """A plugin's variant of a built-in term inherits `together`, which knows only the
    parent's computation: the group calls the variant's own `forward`, slice by slice."""
    from stylekit.run.engine import Objective, WeightedTerm
    from stylekit.run.together import group_values

    class Brighter(TotalVariation):
        def forward(self, features, image):
            return image.mean()

    objectives = [Objective(None, (WeightedTerm("tv", Brighter(Brighter.Params(), {}), 2.0),)) for _ in range(2)]
    images = torch.rand(2, 3, 5, 4)
    table = group_values(objectives, torch.device("cpu"))({}, images)
    assert torch.allclose(table[:, 0], 2 * images.mean(dim=(1, 2, 3)))
