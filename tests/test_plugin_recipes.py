"""The plugin packages in plugins/, installed as the README says, run their recipes end to end
on the CPU with the real Caffe VGG-19, at a small size."""

import json
from pathlib import Path

import pytest

from stylekit.testing import run_cli
from stylekit.plugins.registry import load_registry

RECIPES = Path(__file__).parent.parent / "recipes"


@pytest.mark.parametrize("recipe, loss", [("mrf.toml", "mrf"), ("wasserstein.toml", "wasserstein")])
def test_plugin_recipe_runs_and_lowers_its_style_loss(recipe, loss, tmp_path):
    out = tmp_path / "out.png"
    status, _, err = run_cli("run", str(RECIPES / recipe), "--steps", "15", "--set", "output.width=80",
                             "--output", str(out), registry=load_registry())
    assert status == 0, err
    record = json.loads(out.with_suffix(".json").read_text())
    assert record["recipe"]["requires"] == [f"stylekit-{loss}"]
    values = [row[loss] for row in record["losses"]]
    assert values[-1] < 0.7 * values[0]
