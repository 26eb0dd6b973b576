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


def test_layers_are_those_of_the_recipes_backbone(validator):
    """`relu9_1` passed the schema: a loss's layers are now among the backbone's own
    (issue 22), whether the recipe lists them or weights them in a table, and whether it
    names vgg19 or leaves the default backbone implied."""
    recipe = gatys()
    recipe["loss"][0]["layers"] = ["relu9_1"]
    assert [e.split(":")[0] for e in errors(validator, recipe)] == ["loss/0/layers"]
    recipe = gatys()
    recipe["loss"][1]["layers"]["relu9_1"] = 1
    assert [e.split(":")[0] for e in errors(validator, recipe)] == ["loss/1/layers"]
    recipe = gatys()
    del recipe["backbone"]  # the default backbone, vgg19
    recipe["loss"][0]["layers"] = ["relu9_1"]
    assert [e.split(":")[0] for e in errors(validator, recipe)] == ["loss/0/layers"]
    recipe["loss"][0]["layers"] = ["relu4_2"]
    assert errors(validator, recipe) == []


def test_layers_of_a_backbone_whose_params_may_name_them_are_left_to_the_loader():
    """A backbone with an int param (a depth, say) may offer other layers than its defaults'
    once a recipe sets it: the schema checks its layers only where its params are left out."""
    from pydantic import Field

    from stylekit.contract import Backbone, hookimpl
    from stylekit.contract import Params as BaseParams
    from stylekit.plugins.registry import PluginInfo
    from stylekit.testing import tiny_registry
    from stylekit.tools.json_schema import recipe_schema

    class Deep(Backbone):
        """Its layers are block1..blockN."""
        name = "deep"

        class Params(BaseParams):
            depth: int = Field(2, description="blocks")

        @classmethod
        def layer_names_for(cls, params):
            return tuple(f"block{i + 1}" for i in range(params.depth))

        def __init__(self, params, weights):
            super().__init__(params, weights)

        def features(self, image, layers):
            return {}

    class Plugin:
        @hookimpl
        def register_backbones(self, register):
            register(Deep)

    schema = recipe_schema(tiny_registry([(Plugin(), PluginInfo("deep", "stylekit-deep", "1.0"))]))
    check = jsonschema.Draft7Validator(schema)
    recipe = {**gatys(), "backbone": {"name": "deep"}, "loss": [{"name": "gram", "layers": ["block3"]}]}
    assert [e.split(":")[0] for e in errors(check, recipe)] == ["loss/0/layers"]
    recipe["backbone"]["params"] = {"depth": 3}
    assert errors(check, recipe) == []
    assert schema["definitions"]["LayersOf_deep"]["enum"] == ["block1", "block2"]
