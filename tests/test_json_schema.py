"""`stylekit schema`: the JSON Schema editors read. The shipped recipes point at the
committed copy, which must match what the code generates, and pass it; mistakes fail it."""

import json
import tomllib
from pathlib import Path

import pytest

jsonschema = pytest.importorskip("jsonschema")

from stylekit.tools.json_schema import render  # noqa: E402
from stylekit.plugins.registry import load_registry  # noqa: E402
from stylekit.testing import run_cli  # noqa: E402

RECIPES = Path(__file__).resolve().parent.parent / "recipes"
COMMITTED = RECIPES / "recipe.schema.json"


@pytest.fixture(scope="module")
def validator():
    schema = json.loads(COMMITTED.read_text(encoding="utf-8"))
    jsonschema.Draft7Validator.check_schema(schema)
    return jsonschema.Draft7Validator(schema)


def errors(validator, recipe: dict) -> list[str]:
    return ["/".join(map(str, e.absolute_path)) + ": " + e.message for e in validator.iter_errors(recipe)]


def gatys() -> dict:
    return tomllib.loads((RECIPES / "gatys.toml").read_text(encoding="utf-8"))


def test_committed_schema_is_up_to_date():
    # The plugins in plugins/ are installed by ./test (and the README's set-up), so they count.
    expected = render(load_registry(env={}))
    assert COMMITTED.read_text(encoding="utf-8") == expected, \
        "recipes/recipe.schema.json is stale - run: stylekit schema -o recipes/recipe.schema.json"


def test_schema_command_prints_it():
    status, out, _ = run_cli("schema", registry=load_registry(env={}))
    assert status == 0 and json.loads(out) == json.loads(COMMITTED.read_text(encoding="utf-8"))


@pytest.mark.parametrize("path", sorted(RECIPES.glob("*.toml")), ids=lambda p: p.name)
def test_shipped_recipe_points_at_the_schema_and_passes_it(validator, path):
    text = path.read_text(encoding="utf-8")
    assert text.splitlines()[0] == "#:schema ./recipe.schema.json"  # taplo / Even Better TOML read this
    assert errors(validator, tomllib.loads(text)) == []


def test_misspelled_fields_fail(validator):
    recipe = gatys()
    recipe["output"]["widht"] = 512
    assert errors(validator, recipe) == ["output: Additional properties are not allowed ('widht' was unexpected)"]
    recipe = gatys()
    recipe["loss"][1]["params"]["normalisation"] = recipe["loss"][1]["params"].pop("normalization")
    assert [e.split(":")[0] for e in errors(validator, recipe)] == ["loss/1/params"]
    recipe = gatys()
    recipe["optimizer"]["name"] = "lbgfs"
    assert [e.split(":")[0] for e in errors(validator, recipe)] == ["optimizer/name"]


def test_wrong_types_fail(validator):
    recipe = gatys()
    recipe["run"]["steps"] = "many"
    assert errors(validator, recipe) == ["run/steps: 'many' is not of type 'integer'"]
    recipe = gatys()
    recipe["optimizer"]["params"]["history"] = "fifty"  # an L-BFGS param, checked because name = "lbfgs"
    assert [e.split(":")[0] for e in errors(validator, recipe)] == ["optimizer/params/history"]
    recipe = gatys()
    recipe["loss"][1]["params"]["normalization"] = "whc"
    assert [e.split(":")[0] for e in errors(validator, recipe)] == ["loss/1/params/normalization"]
