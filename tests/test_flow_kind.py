"""The flow kind treated as the other four: a third party's provider is registered through its
hook, listed by `stylekit plugins`, chosen by a recipe's `[flow]` (checked in every recipe)
and built by `build_flow`; a duplicate name or a class that breaks the contract is named."""

import json

import pytest
import torch

from stylekit.builtins.flow import DIS
from stylekit.errors import PluginError, UserError
from stylekit.plugins.registry import PluginInfo
from stylekit.recipe.load import load_recipe
from stylekit.run.build import build_flow
from stylekit.testing import TINY_LOSSES, run_cli, write_recipe

from test_flow import flow_registry

STILL = """
import torch
from pydantic import Field
from stylekit import hookimpl
from stylekit.contract import FlowProvider, Params
from stylekit.errors import UserError

class Still(FlowProvider):
    '''No motion anywhere.'''
    name = "still"

    class Params(Params):
        scale: float = Field(1.0, gt=0, description="what the motion is multiplied by")
        refuse: bool = Field(False, description="refuse to be built, as a provider without its model would")
        crash: bool = Field(False, description="fail to be built, as a provider with a bug would")

    def __init__(self, params):
        super().__init__(params)
        if params.refuse:
            raise UserError("no model for 'still' - install one")
        if params.crash:
            raise KeyError("model")

    def flow(self, source, target, pair):
        return torch.zeros(1, 2, *source.shape[-2:])

@hookimpl
def register_flow_providers(register):
    register(Still)
"""


def test_a_third_party_provider_is_registered_listed_chosen_and_built(install_dist, tmp_path):
    install_dist("stylekit-still", STILL)
    registry = flow_registry()
    assert registry.components["flow"]["still"].plugin.package == "stylekit-still"
    status, out, err = run_cli("plugins", registry=registry)
    assert status == 0, err
    assert "stylekit-still 1.0 (plugin 'still')\n  flow      still          No motion anywhere.\n" in out
    assert "scale: float > 0 (default 1.0) - what the motion is multiplied by" in out
    status, out, _ = run_cli("plugins", "--json", registry=registry)
    (still,) = next(p for p in json.loads(out) if p["package"] == "stylekit-still")["components"]
    assert (still["kind"], still["name"]) == ("flow", "still")
    recipe = write_recipe(tmp_path, TINY_LOSSES + '\n[flow]\nname = "still"\n[flow.params]\nscale = 2.0\n')
    plan = load_recipe(recipe, registry)
    assert plan.flow.cls.name == "still" and plan.flow.params.scale == 2.0 and plan.flow.package == "stylekit-still"
    provider = build_flow(plan)
    assert provider.device == plan.device and provider.params.scale == 2.0


def test_a_provider_that_refuses_or_fails_to_build_is_named_at_the_recipes_flow(install_dist, tmp_path):
    install_dist("stylekit-still", STILL)
    registry = flow_registry()
    recipe = write_recipe(tmp_path, TINY_LOSSES + '\n[flow]\nname = "still"\n[flow.params]\nrefuse = true\n')
    line = recipe.read_text().splitlines().index("[flow]") + 1
    with pytest.raises(UserError) as caught:
        build_flow(load_recipe(recipe, registry))  # validated at load, built only for a video
    assert str(caught.value) == (f"{recipe}:{line}: flow: no model for 'still' - install one (flow 'still' of package "
                                 "'stylekit-still')")
    recipe = write_recipe(tmp_path, TINY_LOSSES + '\n[flow]\nname = "still"\n[flow.params]\ncrash = true\n')
    with pytest.raises(PluginError) as caught:
        build_flow(load_recipe(recipe, registry))
    assert str(caught.value).startswith(f"{recipe}:{line}: flow: flow 'still' of package 'stylekit-still' failed to build "
                                        "(KeyError: 'model') - a bug in stylekit-still")
    assert (caught.value.package, caught.value.kind, caught.value.component) == ("stylekit-still", "flow", "still")


def test_a_name_registered_twice_names_both_plugins(install_dist):
    install_dist("stylekit-twice", STILL.replace('name = "still"', 'name = "dis"'))
    with pytest.raises(UserError, match="flow 'dis' is registered twice: by plugin '(flow|twice)' of package "
                                        "'stylekit(-twice)?' and by plugin '(flow|twice)' of package 'stylekit(-twice)?'"):
        flow_registry()


LACKING = STILL.replace("    def flow(self, source, target, pair):\n        return torch.zeros(1, 2, *source.shape[-2:])\n", "")
TWO_ARGUMENTS = STILL.replace("def flow(self, source, target, pair):", "def flow(self, source, target):")


@pytest.mark.parametrize("package, source, breach", [
    ("stylekit-lacking-flow", LACKING, "flow class Still lacks flow(source, target, pair) - define it"),
    ("stylekit-two-arguments", TWO_ARGUMENTS, "flow class Still: stylekit calls flow(source, target, pair), which "
                                              "Still.flow(self, source, target) does not accept - take those arguments"),
], ids=["lacking", "two-arguments"])
def test_a_provider_that_breaks_the_contract_is_left_out_and_named(install_dist, package, source, breach):
    install_dist(package, source)  # a module name of its own: an imported one stays in sys.modules
    registry = flow_registry()
    assert "still" not in registry.components["flow"]
    (broken,) = registry.broken
    assert broken.error == f"breaks the contract: {breach}"


# ---------------------------------------------------------------- the built-ins in the listing and the recipe


def test_the_builtin_providers_are_listed_with_their_params():
    status, out, err = run_cli("plugins", registry=flow_registry())
    assert status == 0, err
    for line in ["  flow      dis            OpenCV's DIS optical flow on 8-bit grey frames",
                 "preset: 'ultrafast' | 'fast' | 'medium' (default 'medium')",
                 "  flow      file           Precomputed flow from Middlebury .flo files",
                 "forward: str (default 'flow/forward_{source}_{target}.flo')",
                 "  flow      raft           torchvision's RAFT with weights from a file you give",
                 "weights: str (required)", "iterations: int >= 1, <= 64 (default 12)"]:
        assert line in out


def test_every_recipe_has_a_checked_flow_dis_by_default(tmp_path):
    plan = load_recipe(write_recipe(tmp_path), flow_registry())
    assert plan.flow.cls is DIS and plan.flow.params.preset == "medium" and plan.flow.package == "stylekit"


@pytest.mark.parametrize("sets, said", [
    (["flow.name=diss"], "flow.name: unknown flow 'diss' - did you mean 'dis'?"),
    (["flow.params.preset=slow"], "flow.params.preset: Input should be 'ultrafast', 'fast' or 'medium' (got 'slow') "
                                  "(flow 'dis' of package 'stylekit')"),
    (["flow.name=raft"], "flow.params.weights: required field is missing - add it (flow 'raft' of package 'stylekit')"),
    (["flow.name=file", "flow.params.forward=f_{source}.flo"], 'flow.params.forward: "f_{source}.flo" lacks {target} - '
                                                               "every pair of frames needs a file of its own, e.g. "
                                                               "flow/forward_{source}_{target}.flo (flow 'file'"),
    (["flow.name=raft", "flow.params.weights=raft.pth"], 'flow.params.weights: "raft.pth" is not a file ('),
])
def test_a_bad_flow_table_is_one_message_at_its_field(tmp_path, sets, said):
    args = [part for key in sets for part in ("--set", key)]
    status, _, err = run_cli("validate", str(write_recipe(tmp_path)), *args, registry=flow_registry())
    assert status == 2 and said in err and len(err.strip().splitlines()) == 1, err


def test_raft_weights_are_read_from_the_recipes_folder(tmp_path):
    folder = tmp_path / "recipes"
    folder.mkdir()
    (folder / "raft.pt").write_bytes(b"")
    body = TINY_LOSSES + '\n[flow]\nname = "raft"\n[flow.params]\nweights = "raft.pt"\nmodel = "raft_small"\n'
    plan = load_recipe(write_recipe(folder, body), flow_registry())
    assert plan.flow.params.weights == str(folder / "raft.pt")
    with pytest.raises(UserError) as caught:  # an empty file: built (for a video), it cannot be read
        build_flow(plan)
    assert f"flow.params.weights: cannot read {folder / 'raft.pt'} as a torch state dict" in str(caught.value)


def test_a_checkpoint_made_before_recipes_had_a_flow_table_still_resumes(tmp_path):
    import stylekit

    plan = stylekit.load(write_recipe(tmp_path), registry=flow_registry())
    checkpoint = tmp_path / "c.pt"
    stylekit.stylize(plan, callback=lambda info: info.step == 2 and info.stop(), checkpoint=checkpoint)
    state = torch.load(checkpoint, weights_only=True)
    state["recipe"].pop("flow", None)  # as a checkpoint of an earlier stylekit holds it
    torch.save(state, checkpoint)
    assert stylekit.stylize(plan, checkpoint=checkpoint, resume=True).status == "finished"
    # A [flow] of its own is part of the recipe a checkpoint continues (a video's frames use it).
    other = stylekit.load(write_recipe(tmp_path), {"flow.params.preset": "fast"}, registry=flow_registry())
    with pytest.raises(UserError, match=r"different recipe \(changed: flow\)"):
        stylekit.stylize(other, checkpoint=checkpoint, resume=True)
