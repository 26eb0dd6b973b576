"""The `temporal` loss term: its value and gradient worked out by hand on tiny tensors, the
precedence of nearer frames, zero certainty, inert without earlier frames, its `together`,
and how the stage loop hands it the earlier outputs (resized for a smaller stage)."""

import torch

from stylekit.builtins.temporal import ANCHOR_WEIGHT, TemporalLoss, hold_weights, precedence
from stylekit.contract.components import PreviousOutput, Targets
from stylekit.run.build import previous_at


def term_with(*previous: PreviousOutput) -> TemporalLoss:
    term = TemporalLoss(TemporalLoss.Params(), {})
    term.prepare(Targets(content_image=torch.zeros(1, 3, 1, 2), content={}, previous=list(previous)))
    return term


def value_and_gradient(term: TemporalLoss, image: torch.Tensor) -> tuple[float, torch.Tensor]:
    image = image.clone().requires_grad_(True)
    value = term({}, image)
    value.backward()
    return value.item(), image.grad


def test_value_and_gradient_by_hand_with_nearer_frames_first():
    # Two pixels (1 x 2), three channels. Frame t-1 saw pixel 0 only; t-2 saw both. Pixel 0
    # is held to t-1 (nearer, certain), pixel 1 to t-2: weights w1 = (1, 0), w2 = (0, 1).
    x = torch.tensor([[[[0.5, 0.2]], [[0.1, 0.9]], [[0.4, 0.4]]]])
    p1 = torch.tensor([[[[0.3, 0.0]], [[0.1, 0.0]], [[0.6, 0.0]]]])
    p2 = torch.tensor([[[[0.9, 0.6]], [[0.9, 0.5]], [[0.9, 0.0]]]])
    c1, c2 = torch.tensor([[[[1.0, 0.0]]]]), torch.ones(1, 1, 1, 2)
    term = term_with(PreviousOutput(p2, c2, 2), PreviousOutput(p1, c1, 1))  # given out of order on purpose
    value, grad = value_and_gradient(term, x)
    # (0.2^2 + 0^2 + 0.2^2) at pixel 0 against p1, (0.4^2 + 0.4^2 + 0.4^2) at pixel 1 against
    # p2, over 3 channels x 2 pixels.
    assert abs(value - (0.08 + 0.48) / 6) < 1e-7
    expected = torch.tensor([[[[0.2, -0.4]], [[0.0, 0.4]], [[-0.2, 0.4]]]]) * 2 / 6
    assert torch.allclose(grad, expected, atol=1e-7)


def test_partial_certainty_shares_the_pixel_out_by_precedence():
    # c1 = 0.25, c2 = 0.5: w1 = 0.25, w2 = 0.5 * (1 - 0.25) = 0.375; w3 (c3 = 1) = 1 * 0.75 * 0.5.
    certainties = [torch.full((1, 1, 1, 1), c) for c in (0.25, 0.5, 1.0)]
    weights = precedence(certainties).flatten().tolist()
    assert weights == [0.25, 0.375, 0.375]
    x = torch.zeros(1, 3, 1, 1)
    term = term_with(*(PreviousOutput(torch.full((1, 3, 1, 1), v), c, k)
                       for k, (v, c) in enumerate(zip((1.0, 2.0, 3.0), certainties), start=1)))
    value, grad = value_and_gradient(term, x)
    assert abs(value - (0.25 * 1 + 0.375 * 4 + 0.375 * 9)) < 1e-6  # per channel, 3 channels over 3 values
    assert torch.allclose(grad, torch.full((1, 3, 1, 1), -2 * (0.25 * 1 + 0.375 * 2 + 0.375 * 3) / 3))


def test_the_anchor_adds_its_weight_where_it_is_certain():
    # One pixel: the frame before (value 1, certain) and the anchor (value 3, certainty c_a),
    # which counts ANCHOR_WEIGHT * c_a beside the frame before's 1.
    x = torch.zeros(1, 3, 1, 1)
    near = PreviousOutput(torch.full((1, 3, 1, 1), 1.0), torch.ones(1, 1, 1, 1), 1)
    for certain in (1.0, 0.5, 0.0):
        anchor = PreviousOutput(torch.full((1, 3, 1, 1), 3.0), torch.full((1, 1, 1, 1), certain), 7, anchor=True)
        order, weights = hold_weights([anchor, near])  # given anchor first on purpose
        b = ANCHOR_WEIGHT * certain
        assert [p.offset for p in order] == [1, 7] and weights.flatten().tolist() == [1.0, b]
        value, grad = value_and_gradient(term_with(anchor, near), x)
        assert abs(value - (1 + b * 9)) < 1e-5
        assert torch.allclose(grad, torch.full((1, 3, 1, 1), -2 * (1 + b * 3) / 3))


def test_zero_certainty_holds_nothing():
    x = torch.rand(1, 3, 4, 5)
    term = term_with(PreviousOutput(torch.rand(1, 3, 4, 5), torch.zeros(1, 1, 4, 5), 1))
    value, grad = value_and_gradient(term, x)
    assert value == 0 and not grad.any()


def test_the_weight_does_not_depend_on_the_size():
    # The same difference everywhere gives the same value at any size: a mean, not a sum.
    small, large = (term_with(PreviousOutput(torch.zeros(1, 3, h, w), torch.ones(1, 1, h, w), 1)) for h, w in ((2, 3), (20, 30)))
    assert abs(small({}, torch.full((1, 3, 2, 3), 0.5)).item() - large({}, torch.full((1, 3, 20, 30), 0.5)).item()) < 1e-7


def test_inert_without_earlier_frames():
    # A still image, or a shot's first frame: 0, not an error, in float32.
    term = term_with()
    value = term({}, torch.rand(1, 3, 4, 4, requires_grad=True))
    assert value.item() == 0 and value.dtype == torch.float32 and value.dim() == 0


def test_computed_in_float32_from_bf16_targets():
    previous = PreviousOutput(torch.full((1, 3, 2, 2), 0.3).bfloat16(), torch.ones(1, 1, 2, 2).bfloat16(), 1)
    value = term_with(previous)({}, torch.full((1, 3, 2, 2), 0.5))
    assert value.dtype == torch.float32
    assert abs(value.item() - (0.5 - torch.tensor(0.3).bfloat16().float().item()) ** 2) < 1e-7


def test_together_gives_each_image_its_own_value_also_with_fewer_or_no_earlier_frames():
    h, w = 3, 4
    terms = [term_with(), term_with(PreviousOutput(torch.rand(1, 3, h, w), torch.rand(1, 1, h, w), 1)),
             term_with(PreviousOutput(torch.rand(1, 3, h, w), torch.rand(1, 1, h, w), 1),
                       PreviousOutput(torch.rand(1, 3, h, w), torch.rand(1, 1, h, w), 2))]
    images = torch.rand(3, 3, h, w)
    values = TemporalLoss.together(terms)({}, images)
    alone = torch.stack([term({}, images[k:k + 1]) for k, term in enumerate(terms)])
    assert torch.allclose(values, alone, atol=1e-7)


def test_a_smaller_stage_gets_the_certainty_conservatively():
    # 4x4 -> 2x2: a stage pixel is certain only where all four pixels it covers are.
    certain = torch.ones(1, 1, 4, 4)
    certain[..., 0, 0] = 0
    previous = previous_at(PreviousOutput(torch.rand(1, 3, 4, 4), certain, 2), (2, 2))
    assert previous.certainty.flatten().tolist() == [0.0, 1.0, 1.0, 1.0]
    assert previous.image.shape == (1, 3, 2, 2) and previous.offset == 2
    # At the same size, handed over as it is.
    same = PreviousOutput(torch.rand(1, 3, 4, 4), certain, 1)
    assert previous_at(same, (4, 4)) is same


def test_a_still_image_with_the_term_runs_and_the_term_stays_zero(tmp_path):
    import stylekit  # the API: a still image's run, as a notebook makes it
    from stylekit.testing import TINY_LOSSES, TINY_RECIPE_HEAD, pattern, tiny_registry

    recipe = TINY_RECIPE_HEAD.replace('content = "content.png"\nstyle = "style.png"\n', "") + TINY_LOSSES + \
        '[[loss]]\nname = "temporal"\nweight = 1e5\n'
    result = stylekit.stylize(recipe, content=pattern(24, 32, "content"), style=pattern(24, 32, "style"),
                              registry=tiny_registry(), steps=3)
    assert result.status == "finished" and [row["temporal"] for row in result.history] == [0.0, 0.0, 0.0]
