"""The command line's own handling: several recipes to validate, short flags, --set keys."""

import shutil
from pathlib import Path

from stylekit.testing import run_cli


def test_validate_reports_each_of_several_recipes_and_fails_if_any_did(stylekit_recipe, tmp_path):
    bad = tmp_path / "bad.toml"
    bad.write_text(stylekit_recipe.read_text().replace("steps = 5", "steps = 0"))
    status, out, err = run_cli("validate", str(stylekit_recipe), str(bad))
    assert status == 2
    assert f"{stylekit_recipe}: ok" in out
    assert "bad.toml" in err and "steps" in err


def test_validate_expands_glob_patterns_and_names_one_that_matches_nothing(stylekit_recipe, tmp_path):
    shutil.copy(stylekit_recipe, tmp_path / "second.toml")
    status, out, err = run_cli("validate", str(tmp_path / "*.toml"))
    assert status == 0, err
    assert out.count(": ok") == 2
    status, _, err = run_cli("validate", str(tmp_path / "none*.toml"))
    assert status == 2 and "none*.toml: no file matches" in err


def test_width_and_height_are_short_for_setting_the_output_size(stylekit_recipe):
    status, _, err = run_cli("validate", str(stylekit_recipe), "--width", "0")
    assert status == 2 and "--width 0: output.width" in err
    status, _, err = run_cli("run", str(stylekit_recipe), "--height", "0", "--dry-run")
    assert status == 2 and "--height 0: output.height" in err
    assert run_cli("validate", str(stylekit_recipe), "--width", "24", "--height", "16")[0] == 0


def test_an_unknown_option_is_answered_with_the_close_one_or_with_set(stylekit_recipe):
    status, _, err = run_cli("run", str(stylekit_recipe), "--widht", "256")
    assert status == 2 and "stylekit run: error: unknown option --widht - did you mean --width?" in err
    status, _, err = run_cli("batch", str(stylekit_recipe), "--out", "x", "--lr=2")
    assert status == 2 and "unknown option --lr - to change a recipe field, use --set KEY=VALUE" in err
    status, _, err = run_cli("run", str(stylekit_recipe), "other.toml")
    assert status == 2 and "unexpected argument other.toml" in err


def test_set_takes_a_list_index_as_a_key_part_and_a_loss_by_its_name(stylekit_recipe):
    status, _, err = run_cli("validate", str(stylekit_recipe), "--set", "loss.1.weight=-1")
    assert status == 2 and "--set loss.1.weight=-1: loss[1].weight" in err
    status, _, err = run_cli("validate", str(stylekit_recipe), "--set", "loss.gram.weight=-1")
    assert status == 2 and "--set loss.gram.weight=-1: loss[1].weight" in err  # gram is the second loss
    assert run_cli("validate", str(stylekit_recipe), "--set", "loss.gram.weight=2", "--set", "loss.0.weight=3")[0] == 0


def test_a_loss_name_that_two_losses_share_or_none_has_is_refused(stylekit_recipe):
    status, _, err = run_cli("validate", str(stylekit_recipe), "--set", "loss=[{name='content'}, {name='gram'}, {name='gram'}]",
                             "--set", "loss.gram.weight=2")
    assert status == 2 and "2 entries of loss are named 'gram' (loss[1] and loss[2]) - give the index instead" in err
    status, _, err = run_cli("validate", str(stylekit_recipe), "--set", "loss.grm.weight=2")
    assert status == 2 and "no entry of loss is named 'grm' - did you mean 'gram'?" in err


def test_every_set_problem_is_reported_at_once(stylekit_recipe):
    status, _, err = run_cli("validate", str(stylekit_recipe), "--set", "run..steps=1", "--set", "=1",
                             "--set", "run.steps=0", "--set", "loss[7].weight=1")
    assert status == 2
    for flag in ("--set run..steps=1", "--set =1", "--set run.steps=0", "--set loss[7].weight=1"):
        assert f"error: {flag}:" in err, flag


def test_run_without_a_recipe_uses_the_default_one(stylekit_recipe):
    images = stylekit_recipe.parent
    status, _, err = run_cli("run", "--content", str(images / "content.png"), "--style", str(images / "style.png"),
                             "--dry-run", "--set", "backbone.name=tiny")
    default = Path(__file__).resolve().parents[1] / "recipes" / "gatys.toml"
    assert f"using the default recipe {default}" in err
    # the tiny test backbone (fast, where vgg19 takes seconds to build) refuses the default's
    # backbone params, naming the line of the recipe that was read
    assert status == 2 and f"error: {default}:" in err


def test_run_without_a_recipe_where_the_default_is_missing_says_to_name_one(monkeypatch):
    from stylekit.commands import arguments

    monkeypatch.setattr(arguments, "DEFAULT_RECIPE", "recipes/no-such-recipe.toml")
    status, _, err = run_cli("run", "--content", "a.png")
    assert status == 2 and "no recipe given, and the default one (recipes/no-such-recipe.toml)" in err
    assert "name a recipe" in err


def test_validate_of_several_recipes_says_a_malformed_set_once(stylekit_recipe, tmp_path):
    shutil.copy(stylekit_recipe, tmp_path / "second.toml")
    status, out, err = run_cli("validate", str(stylekit_recipe), str(tmp_path / "second.toml"), "--set", "run..steps=1",
                               "--set", "run.steps=3")
    assert status == 2 and err.count("--set run..steps=1") == 1
    assert out.count(": ok") == 2  # each recipe is fine with the well-formed --set
