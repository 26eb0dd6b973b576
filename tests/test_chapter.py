"""The chapter's experiment through recipes/d2l.toml, and an end-to-end run of
recipes/gatys.toml, both with the real Caffe VGG-19 at small sizes."""

from pathlib import Path

import torch

from planning import history, plan_for, run_stage
from stylekit.run.build import stage_images
from stylekit.plugins.registry import load_registry
from stylekit.recipe.load import load_recipe

RECIPES = Path(__file__).parent.parent / "recipes"
STYLE_LAYERS = ["conv1_1", "conv2_1", "conv3_1", "conv4_1", "conv5_1"]


def chapter_gram(x):
    c = x.shape[1]
    x = x.reshape(c, -1)
    return x @ x.T / (c * x.shape[1])


def test_d2l_recipe_step_one_loss_equals_the_chapter_formula():
    registry = load_registry(env={"STYLEKIT_PLUGINS": "none"})
    plan = plan_for(RECIPES / "d2l.toml", registry, **{"output.height": 60, "output.width": 90, "run.steps": 1})
    images = stage_images(plan, plan.stages[0])
    # Start away from the content image so that the content term is not zero.
    torch.manual_seed(1)
    start = (images.content + 0.1 * torch.randn_like(images.content)).clamp(0, 1)
    import dataclasses

    result, objective, _ = run_stage(plan, images=dataclasses.replace(images, start=start))

    net = objective.backbone  # the same (truncated, fp32) network the engine used
    layers = frozenset(STYLE_LAYERS + ["conv4_4"])
    with torch.no_grad():
        content = net.features(images.content, layers)
        style = net.features(images.styles[0], layers)
        synth = net.features(start, layers)
    content_l = torch.mean((synth["conv4_4"] - content["conv4_4"]) ** 2)
    styles_l = [torch.mean((chapter_gram(synth[n]) - chapter_gram(style[n])) ** 2) * 1e3 for n in STYLE_LAYERS]
    # The chapter's TV is of the ImageNet-normalized image, about x / 0.226 in [0, 1] units.
    x = start / 0.226
    tv_l = 10 * 0.5 * ((x[:, :, 1:, :] - x[:, :, :-1, :]).abs().mean() + (x[:, :, :, 1:] - x[:, :, :, :-1]).abs().mean())
    expected = sum(10 * styles_l + [content_l] + [tv_l])  # the chapter's own sum, list repetition and all

    first = history(result, objective)[0]
    assert abs(first["content"] - content_l.item()) <= 1e-4 * content_l.item()
    assert abs(first["gram"] - 10 * sum(styles_l).item()) <= 1e-4 * first["gram"]
    assert abs(first["tv"] - tv_l.item()) <= 1e-3 * tv_l.item()
    assert abs(first["total"] - expected.item()) <= 1e-3 * expected.item()
    assert content_l > 0 and first["gram"] > first["content"]


def relative_style_distance(net, image, style_image):
    """judge.py's measure: mean over relu1_1..relu5_1 of ||G(x) - G(s)|| / ||G(s)||."""
    layers = ["relu1_1", "relu2_1", "relu3_1", "relu4_1", "relu5_1"]
    with torch.no_grad():
        fx, fs = net.features(image, frozenset(layers)), net.features(style_image, frozenset(layers))
    g = lambda f: (lambda m: m @ m.T / m.shape[1])(f.reshape(f.shape[1], -1).float())
    return sum(((g(fx[n]) - g(fs[n])).norm() / g(fs[n]).norm()).item() for n in layers) / len(layers)


def relative_content_distance(net, image, content_image):
    """judge.py's content measure: ||F(x) - F(c)||^2 / ||F(c)||^2 at relu4_2."""
    with torch.no_grad():
        fx, fc = (net.features(x, frozenset(["relu4_2"]))["relu4_2"] for x in (image, content_image))
    return ((fx - fc).pow(2).sum() / fc.pow(2).sum()).item()


def test_the_default_recipe_runs_as_shipped_and_keeps_the_photo(tmp_path):
    # recipes/gatys.toml as shipped (both stages, its weights), at a tenth of its size and steps.
    registry = load_registry(env={"STYLEKIT_PLUGINS": "none"})
    out = tmp_path / "g.png"
    small = {("stage", 0, "width"): 48, ("stage", 0, "steps"): 20, ("stage", 1, "width"): 96, ("stage", 1, "steps"): 8,
             ("output", "path"): str(out)}
    plan = load_recipe(RECIPES / "gatys.toml", registry, small)
    assert [s.width for s in plan.stages] == [48, 96]
    from stylekit.run.session import run_one

    result = run_one(plan)
    from stylekit.run.build import stage_images
    from stylekit.builtins.vgg19 import VGG19

    images = stage_images(plan, plan.stages[-1])
    judge = VGG19(VGG19.Params(), "caffe")
    image = result.tensor
    style_before = relative_style_distance(judge, images.content, images.styles[0])
    style_after = relative_style_distance(judge, image, images.styles[0])
    # The style terms are what the run minimizes hardest: the style distance must fall well.
    assert style_after < 0.75 * style_before, (style_before, style_after)
    # The photo is kept: the result's features are far closer to the photo's than the painting's are
    # (an unrelated picture sits at a relative distance of about 1 or more).
    painting = torch.nn.functional.interpolate(images.styles[0], size=image.shape[-2:], mode="bilinear")
    assert relative_content_distance(judge, image, images.content) < 0.5 * relative_content_distance(
        judge, painting, images.content)
