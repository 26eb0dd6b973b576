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


# ---------------------------------------------------------------- the schema beside recipes elsewhere


def schema_cli(*args):
    return run_cli("schema", *map(str, args), registry=load_registry(env={}))


def test_taplo_writes_the_schema_and_a_taplo_toml_beside_a_users_recipes(tmp_path):
    """A recipe copied out of recipes/ keeps `#:schema ./recipe.schema.json`, which found
    nothing there: `--taplo DIR` writes the schema under that name, and a .taplo.toml for
    recipes without the line."""
    mine = tmp_path / "mine"
    mine.mkdir()
    copied = mine / "gatys.toml"
    copied.write_text((RECIPES / "gatys.toml").read_text(encoding="utf-8"), encoding="utf-8")
    status, out, err = schema_cli("--taplo", mine)
    assert status == 0 and out == ""
    assert err.splitlines() == [f"wrote {mine / 'recipe.schema.json'}", f"wrote {mine / '.taplo.toml'}"]
    directive = copied.read_text(encoding="utf-8").splitlines()[0].removeprefix("#:schema ")
    assert (mine / directive).read_text(encoding="utf-8") == COMMITTED.read_text(encoding="utf-8")
    config = tomllib.loads((mine / ".taplo.toml").read_text(encoding="utf-8"))
    [rule] = config["rule"]
    assert "include" not in config  # the folder's other TOML files keep taplo's defaults
    # taplo reads both paths relative to the .taplo.toml: every recipe there, not the file itself.
    assert rule["include"] == ["*.toml"] and ".taplo.toml" in rule["exclude"]
    assert (mine / rule["schema"]["path"]).samefile(mine / directive)
    assert schema_cli("--taplo", mine)[0] == 0  # its own files it writes again


def test_taplo_replaces_nothing_stylekit_did_not_write(tmp_path):
    mine = tmp_path / "mine"
    mine.mkdir()
    (mine / ".taplo.toml").write_text("[formatting]\nalign_entries = true\n")
    status, _, err = schema_cli("--taplo", mine)
    assert status == 2 and "Traceback" not in err
    assert err == (f"error: --taplo {mine}: {mine / '.taplo.toml'} is a file that stylekit did not write, which this "
                   "would replace - move it away, or give another folder\n")
    assert sorted(p.name for p in mine.iterdir()) == [".taplo.toml"]  # not the schema either: both or neither
    assert (mine / ".taplo.toml").read_text() == "[formatting]\nalign_entries = true\n"
    (mine / ".taplo.toml").unlink()
    (mine / "recipe.schema.json").write_text('{"title": "my own schema"}')
    status, _, err = schema_cli("--taplo", mine)
    assert status == 2 and f"{mine / 'recipe.schema.json'} is a file that stylekit did not write" in err
    assert schema_cli("--taplo", tmp_path / "nowhere") == (
        2, "", f"error: --taplo {tmp_path / 'nowhere'}: {tmp_path / 'nowhere'} does not exist - give the folder "
               "your recipes are in\n")
    status, _, err = schema_cli("-o", mine / "recipe.schema.json")  # -o spares the user's files too
    assert status == 2 and "is a file that stylekit did not write" in err
    assert (mine / "recipe.schema.json").read_text() == '{"title": "my own schema"}'


def test_the_repository_associates_its_recipes_with_the_schema():
    """The .taplo.toml at the root: editors opened on the repository check every recipe in
    recipes/, also one without the `#:schema` line, and no other TOML file."""
    root = RECIPES.parent
    config = tomllib.loads((root / ".taplo.toml").read_text(encoding="utf-8"))
    assert "include" not in config
    [rule] = config["rule"]
    assert (root / rule["schema"]["path"]).samefile(COMMITTED)
    matched = {path for pattern in rule["include"] for path in root.glob(pattern)}
    assert matched == set(RECIPES.glob("*.toml")) and matched


def test_taplo_checks_a_copied_recipe_when_installed(tmp_path):
    """With taplo's own command line where it is installed (`pip install taplo`)."""
    import shutil
    import subprocess

    taplo = shutil.which("taplo")
    if taplo is None:
        pytest.skip("taplo is not installed")
    mine = tmp_path / "mine"
    mine.mkdir()
    text = (RECIPES / "gatys.toml").read_text(encoding="utf-8").replace('name = "lbfgs"', 'name = "lbgfs"')
    (mine / "copied.toml").write_text(text, encoding="utf-8")
    (mine / "bare.toml").write_text(text.split("\n", 1)[1], encoding="utf-8")  # no #:schema line
    assert schema_cli("--taplo", mine)[0] == 0
    found = subprocess.run([taplo, "check"], cwd=mine, capture_output=True, text=True)
    assert found.returncode != 0
    for name in ("copied.toml", "bare.toml"):
        assert f'invalid file error=schema validation failed path="{mine / name}"' in found.stderr
    (mine / "copied.toml").write_text(text.replace("lbgfs", "lbfgs"), encoding="utf-8")
    (mine / "bare.toml").unlink()
    assert subprocess.run([taplo, "check"], cwd=mine, capture_output=True, text=True).returncode == 0
