"""Golden bad recipes: each gives exactly the expected messages, exit status 2, no traceback,
and touches no output file."""

import shutil
from pathlib import Path

import pytest

from stylekit.testing import run_cli, write_images

BAD = Path(__file__).parent / "bad_recipes"


@pytest.mark.parametrize("name", sorted(p.stem for p in BAD.glob("*.toml")))
def test_bad_recipe_gives_expected_messages(name, tmp_path, monkeypatch):
    write_images(tmp_path)
    (tmp_path / "not_an_image.png").write_text("this is text, not a PNG")
    shutil.copy(BAD / f"{name}.toml", tmp_path)
    monkeypatch.chdir(tmp_path)
    status, out, err = run_cli("run", f"{name}.toml")
    expected = [f"error: {line}" for line in (BAD / f"{name}.expected").read_text().splitlines()]
    assert err.splitlines() == expected
    assert status == 2
    assert "Traceback" not in err
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted(["content.png", "style.png", "not_an_image.png", f"{name}.toml"])


def test_missing_recipe_file(tmp_path):
    status, _, err = run_cli("validate", str(tmp_path / "nope.toml"))
    assert status == 2
    assert err.strip() == f"error: {tmp_path / 'nope.toml'}: recipe file not found - check the path"


def test_bad_set_override_names_the_option(stylekit_recipe):
    status, _, err = run_cli("validate", str(stylekit_recipe), "--set", "optimizer.params.lr")
    assert status == 2
    assert "--set optimizer.params.lr: write KEY=VALUE" in err


def test_override_value_is_validated_like_the_file(stylekit_recipe):
    status, _, err = run_cli("validate", str(stylekit_recipe), "--set", "run.steps=-1")
    assert status == 2
    assert "run.steps: Input should be greater than or equal to 1 (got -1)" in err


def test_unknown_command_line_option_exits_2(stylekit_recipe):
    status, _, err = run_cli("run", str(stylekit_recipe), "--stpes", "3")
    assert status == 2
    assert "unknown option --stpes - did you mean --steps?" in err


def test_existing_output_survives_a_failed_run(stylekit_recipe):
    output = stylekit_recipe.parent / "out" / "result.png"
    output.parent.mkdir()
    output.write_bytes(b"precious")
    status, _, _ = run_cli("run", str(stylekit_recipe), "--set", "loss[0].layers=['c9']")
    assert status == 2
    assert output.read_bytes() == b"precious"


def test_weights_that_cannot_be_had_name_the_field(stylekit_recipe, monkeypatch):
    from torchvision.models import VGG19_Weights

    def offline(*args, **kwargs):
        raise OSError("no network")

    monkeypatch.setattr(VGG19_Weights.IMAGENET1K_V1.__class__, "get_state_dict", offline)
    status, _, err = run_cli("run", str(stylekit_recipe), "--set", "backbone.name=vgg19", "--set", "backbone.weights=torchvision",
                             "--set", "loss[0].layers=['relu4_2']", "--set", "loss[1].layers=['relu1_1']")
    assert status == 2
    # the weights came from the command line, so the message names the flag, not the recipe
    assert "error: --set backbone.weights=torchvision: backbone.weights: could not get torchvision's VGG-19 IMAGENET1K_V1 weights" in err
    assert "use weights = \"caffe\"" in err
    assert not (stylekit_recipe.parent / "out").exists()


def test_a_quoted_number_in_the_recipe_is_one_message_each(tmp_path):
    from stylekit.testing import TINY_LOSSES, TINY_RECIPE_HEAD, write_recipe

    head = TINY_RECIPE_HEAD.replace("steps = 5", 'steps = "10"').replace('precision = "fp32"', 'clamp = "yes"')
    body = TINY_LOSSES.replace("weight = 0.1", 'weight = "1e-3"') + \
        '[optimizer]\nname = "adam"\nparams = {lr = "0.5", betas = ["0.5", 0.999]}\n'  # inside a list too
    write_recipe(tmp_path, body, head)
    status, _, err = run_cli("validate", str(tmp_path / "recipe.toml"))
    assert status == 2
    recipe = tmp_path / "recipe.toml"
    assert err.splitlines() == [
        f'error: {recipe}:31: loss[2].weight: expected a number, not the text "1e-3" - remove the quotes',
        f'error: {recipe}:14: run.steps: expected an integer, not the text "10" - remove the quotes',
        f'error: {recipe}:16: run.clamp: expected true or false, not the text "yes" - write true or false, without quotes',
        f'error: {recipe}:34: optimizer.params.lr: expected a number, not the text "0.5" - remove the quotes '
        f"(optimizer 'adam' of package 'stylekit')",
        f'error: {recipe}:34: optimizer.params.betas[0]: expected a number, not the text "0.5" - remove the quotes '
        f"(optimizer 'adam' of package 'stylekit')",
    ]


def test_a_quoted_backbone_param_does_not_hide_the_other_problems(tmp_path):
    # All at once: the layer checks that need the backbone still run.
    from stylekit.testing import write_images

    write_images(tmp_path)
    recipe = tmp_path / "quoted.toml"
    recipe.write_text('[images]\ncontent = "content.png"\nstyle = "style.png"\n[output]\npath = "out.png"\n'
                      '[backbone]\nname = "vgg19"\nparams = {feature_scale = "1.0"}\n'
                      '[[loss]]\nname = "content"\nlayers = ["relu9_9"]\n')
    status, _, err = run_cli("validate", str(recipe))
    assert status == 2 and len(err.splitlines()) == 2, err
    assert 'feature_scale: expected a number, not the text "1.0"' in err and "unknown layer 'relu9_9'" in err


def test_overrides_keep_their_own_types(stylekit_recipe):
    import stylekit
    from stylekit.testing import tiny_registry

    # The file's values are TOML's; an override's are the caller's, read as before.
    text = stylekit_recipe.read_text().replace("steps = 5", 'steps = "5"') + '[optimizer]\nname = "adam"\nparams = {lr = 1}\n'
    stylekit_recipe.write_text(text)
    assert run_cli("validate", str(stylekit_recipe), "--set", "run.steps=3", "--set", "run.clamp=True")[0] == 0
    plan = stylekit.load(stylekit_recipe, {"run.steps": "7"}, registry=tiny_registry())
    assert (plan.recipe.run.steps, plan.optimizer.params.lr) == (7, 1.0)


@pytest.mark.parametrize("written, wrong, line, message", [
    ('layers = ["c3"]', 'layers = "c3"', 22,
     'loss[0].layers: layers is a list, even of one layer - write layers = ["c3"]'),  # one message, not two
    ('style = "style.png"', "style = 5", 3,  # a single path is allowed too, so the message says both forms
     'images.style: give one image path or a list of them, e.g. style = "style.jpg" or style = ["a.jpg", "b.jpg"] (got 5)'),
])
def test_a_value_of_the_wrong_shape_says_what_to_write(stylekit_recipe, written, wrong, line, message):
    stylekit_recipe.write_text(stylekit_recipe.read_text().replace(written, wrong, 1))
    status, _, err = run_cli("validate", str(stylekit_recipe))
    assert status == 2
    assert err.splitlines() == [f"error: {stylekit_recipe}:{line}: {message}"]


@pytest.mark.parametrize("args, says", [
    (["--set", "loss[0].weight=1e39"],
     "--set loss[0].weight=1e39: loss[0].weight: 1e+39 is more than fp32, the run's precision, can hold (3.403e+38): "
     "the weighted term and its gradient would be infinite - lower it (only the weights' ratios matter: divide them "
     "all by the same number)"),
    (["--set", "loss[1].weight=1e36", "--strength", "1000"],  # the style term's weight, times the strength
     "loss[1].weight: 1e+36 x strength 1000 = 1e+39 is more than fp32, the run's precision, can hold (3.403e+38): "
     "the weighted term and its gradient would be infinite - lower it or the strength"),
])
def test_a_weight_the_precision_cannot_hold_is_refused_at_load(stylekit_recipe, args, says):
    """Before, the run set up and then diverged at its first step (exit 3)."""
    for command in ("validate", "run"):
        status, _, err = run_cli(command, str(stylekit_recipe), *args)
        assert status == 2 and says in err and "Traceback" not in err, (command, err)
    assert not (stylekit_recipe.parent / "out").exists()


def test_the_fp16_limit_is_fp16_s_largest_number(stylekit_recipe):
    """fp16 runs only on CUDA, so its limit is checked on a plan loaded in fp32."""
    import torch

    import stylekit
    from stylekit.recipe.input_checks import weight_problems
    from stylekit.testing import tiny_registry

    for weight, refused in ((65504, False), (65505, True), (1e6, True)):
        plan = stylekit.load(stylekit_recipe, {"loss[0].weight": weight, "loss[1].weight": 1}, registry=tiny_registry())
        problems = weight_problems(plan.recipe, plan.losses, torch.float16, plan.at)
        assert [p.field for p in problems] == (["loss[0].weight"] if refused else []), weight
        assert not refused or 'fp16, the run\'s precision, can hold (6.55e+04)' in problems[0].message
        assert not refused or 'or set run.precision = "bf16"' in problems[0].message


@pytest.mark.parametrize("override, said", [
    # Two bounds: pydantic names the one broken; the user is told both, so as not to meet the other next.
    ("stage=[{width=32,steps=9,min_gain=1.5}]",
     "stage[0].min_gain: Input should be less than 1 (got 1.5) - write a number at least 0 and less than 1"),
    ("run.steps=0", "run.steps: Input should be greater than or equal to 1 (got 0) - write a whole number at least 1 "
                    "and at most 100000"),
    ('optimizer={name="sgd",params={momentum=1}}',
     "optimizer.params.momentum: Input should be less than 1 (got 1) - write a number at least 0 and less than 1"),
    ('optimizer={name="adam",params={betas=[1,0.9]}}', "optimizer.params.betas[0]: Input should be less than 1 (got 1)"),
    ("loss[0].weight=-1", "loss[0].weight: Input should be greater than or equal to 0 (got -1)"),  # one bound: nothing to add
])
def test_a_number_out_of_range_is_told_the_whole_range(stylekit_recipe, override, said):
    status, _, err = run_cli("validate", str(stylekit_recipe), "--set", override)
    assert status == 2 and "Traceback" not in err
    assert said in err.splitlines()[0] and said + " - write" not in err, err
