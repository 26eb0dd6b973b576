"""The command line's own handling: several recipes to validate, short flags, --set keys."""

import shutil

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
