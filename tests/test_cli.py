"""The command line's own handling: several recipes to validate, short flags, --set keys."""

import os
import shutil
from pathlib import Path

import pytest

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


def test_validate_checks_a_recipe_named_twice_once_where_it_first_comes(stylekit_recipe, tmp_path, monkeypatch):
    shutil.copy(stylekit_recipe, tmp_path / "second.toml")
    monkeypatch.chdir(tmp_path)
    status, out, err = run_cli("validate", "second.toml", "*.toml", "./recipe.toml", str(tmp_path / "second.toml"))
    assert status == 0, err
    assert out.splitlines() == ["second.toml: ok", "recipe.toml: ok"]


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
    monkeypatch.setattr(arguments, "PACKAGED_RECIPE", "no-such-recipe.toml")
    status, _, err = run_cli("run", "--content", "a.png")
    assert status == 2 and "no recipe given, and the default one (recipes/no-such-recipe.toml)" in err
    assert "name a recipe" in err


ROOT = Path(__file__).resolve().parents[1]
PACKAGED = ROOT / "stylekit" / "commands" / "default_recipe.toml"


def test_the_package_carries_the_default_recipe_as_it_is():
    """A wheel has no recipes/ folder: the package carries a copy of the default recipe
    (package data in pyproject.toml), which must be the recipe itself."""
    assert PACKAGED.read_bytes() == (ROOT / "recipes" / "gatys.toml").read_bytes(), \
        "stylekit/commands/default_recipe.toml differs - copy recipes/gatys.toml over it (that is the one to edit)"
    import tomllib

    package_data = tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["setuptools"]["package-data"]
    assert PACKAGED.name in package_data["stylekit.commands"]


def test_run_without_a_recipe_or_a_checkout_uses_the_packaged_copy(stylekit_recipe, monkeypatch):
    """As from a wheel: no recipes/gatys.toml beside the package."""
    from stylekit.commands import arguments
    from stylekit.commands.cli import make_parser

    monkeypatch.setattr(arguments, "DEFAULT_RECIPE", "recipes/not-in-a-wheel.toml")
    images = stylekit_recipe.parent
    given = ("--content", str(images / "content.png"), "--style", str(images / "style.png"))
    status, _, err = run_cli("run", *given, "--dry-run", "--set", "backbone.name=tiny")
    assert f"using the default recipe {PACKAGED} (a copy of stylekit's recipes/not-in-a-wheel.toml, writing " \
           "out/gatys.png; name a recipe to use another)" in err
    assert status == 2 and f"error: {PACKAGED}:" in err  # read from the package (the tiny backbone refuses its params)
    # Its example images and output are the checkout's: it needs both images, and writes under
    # the current folder (not beside the package) unless told where.
    status, _, err = run_cli("run", *given[:2])
    assert status == 2 and "example images come only with a checkout of stylekit - give --style, or name a recipe" in err
    for extra, output in [((), "out/gatys.png"), (("-o", "mine.png"), "mine.png"), (("--set", "output.path='x.png'"), None)]:
        args = make_parser().parse_args(["run", *given, *extra])
        assert arguments.default_recipe(args)[0] == str(PACKAGED) and args.output == output


def test_validate_of_several_recipes_says_a_malformed_set_once(stylekit_recipe, tmp_path):
    shutil.copy(stylekit_recipe, tmp_path / "second.toml")
    status, out, err = run_cli("validate", str(stylekit_recipe), str(tmp_path / "second.toml"), "--set", "run..steps=1",
                               "--set", "run.steps=3")
    assert status == 2 and err.count("--set run..steps=1") == 1
    assert out.count(": ok") == 2  # each recipe is fine with the well-formed --set


@pytest.mark.slow  # builds and installs a wheel, then a real run with VGG-19: about 10 s
def test_a_wheel_runs_the_default_recipe(tmp_path):
    """Built as pip builds it and installed where no checkout is near: `stylekit run
    --content --style` runs the packaged default and writes out/gatys.png here."""
    import subprocess
    import sys

    source = tmp_path / "source"
    source.mkdir()
    for name in ("pyproject.toml", "README.md"):
        shutil.copy(ROOT / name, source)
    shutil.copytree(ROOT / "stylekit", source / "stylekit", ignore=shutil.ignore_patterns("__pycache__"))
    pip = [sys.executable, "-m", "pip", "-q"]
    subprocess.run([*pip, "wheel", "--no-deps", "--no-build-isolation", "-w", tmp_path / "dist", source], check=True)
    [wheel] = (tmp_path / "dist").glob("stylekit-*.whl")
    subprocess.run([*pip, "install", "--no-deps", "--target", tmp_path / "site", wheel], check=True)
    work = tmp_path / "work"
    work.mkdir()
    for name in ("chelsea.jpg", "swirls.jpg"):
        shutil.copy(ROOT / "examples" / name, work)
    env = {**os.environ, "PYTHONPATH": str(tmp_path / "site")}  # before the checkout's editable install
    done = subprocess.run([sys.executable, "-m", "stylekit", "run", "--content", "chelsea.jpg", "--style", "swirls.jpg",
                           "--width", "64", "--steps", "2"], cwd=work, env=env, capture_output=True, text=True)
    assert done.returncode == 0, done.stderr
    packaged = tmp_path / "site" / "stylekit" / "commands" / "default_recipe.toml"
    assert done.stderr.startswith(f"using the default recipe {packaged} (a copy of stylekit's recipes/gatys.toml")
    assert (work / "out" / "gatys.png").is_file() and (work / "out" / "gatys.json").is_file()
