"""`strength` (and `--strength`): one number that moves along the style/structure trade by
scaling exactly the loss terms that read the style image."""

import torch

import stylekit
from stylekit.testing import run_cli, tiny_registry


def weights(plan):
    return {loss.label: loss.weight for loss in plan.losses}


def test_strength_scales_the_style_terms_and_nothing_else(stylekit_recipe):
    base = weights(stylekit.load(stylekit_recipe, registry=tiny_registry()))
    doubled = weights(stylekit.load(stylekit_recipe, {"strength": 2}, registry=tiny_registry()))
    assert doubled == {**base, "gram": 2 * base["gram"]}  # content and tv keep theirs


def test_more_strength_moves_the_result_towards_the_style(stylekit_recipe):
    # With the style term weighted more, the optimum trades content for style: the
    # unweighted Gram distance falls and the content distance rises (the weighted sums'
    # definition of a trade-off: each run minimizes its own weighted sum).
    def distances(strength):
        plan = stylekit.load(stylekit_recipe, {"strength": strength, "run.steps": 10, "output.width": 32}, registry=tiny_registry())
        last = stylekit.stylize(plan).history[-1]
        gram_weight = weights(plan)["gram"]
        content_weight = weights(plan)["content"]
        return last["content"] / content_weight, last["gram"] / gram_weight

    weak_content, weak_style = distances(0.25)
    strong_content, strong_style = distances(4)
    assert strong_style < weak_style and strong_content > weak_content


def test_the_flag_sets_it_and_bad_values_name_the_flag(stylekit_recipe):
    status, out, err = run_cli("validate", str(stylekit_recipe), "--strength", "0.5")
    assert status == 0, err
    status, _, err = run_cli("validate", str(stylekit_recipe), "--strength", "-1")
    assert status == 2 and "--strength -1: strength: Input should be greater than 0" in err
    assert "Traceback" not in err
    status, _, err = run_cli("validate", str(stylekit_recipe), "--strength", "lots")
    assert status == 2 and "--strength" in err and "Traceback" not in err
