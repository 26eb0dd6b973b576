"""Plugins registered the way a third party registers them: a distribution with an entry
point in the `stylekit` group. Its components are used from recipes with no change to stylekit."""

import json

import pytest

from stylekit.errors import UserError
from stylekit.plugins.registry import load_registry
from stylekit.testing import TINY_LOSSES as TINY_LOSSES_FOR_PLUGINS, TINY_RECIPE_HEAD, run_cli, tiny_registry, write_recipe

BRIGHTNESS_PLUGIN = """
import torch
from pydantic import Field
from stylekit import hookimpl
from stylekit.contract.components import LossTerm, Params

class Brightness(LossTerm):
    '''Squared distance of the image's mean brightness from a target.'''
    name = "brightness"
    reads_features = False

    class Params(Params):
        target: float = Field(0.5, ge=0, le=1)

    def forward(self, features, image):
        return (image.mean() - self.params.target) ** 2

@hookimpl
def register_losses(register):
    register(Brightness)
"""

BRIGHTNESS_HEAD = 'requires = ["stylekit-brightness"]\n' + TINY_RECIPE_HEAD
BRIGHTNESS_RECIPE = """
[[loss]]
name = "brightness"
weight = 10
[loss.params]
target = 0.9

[optimizer]
name = "adam"
[optimizer.params]
lr = 0.05
"""


def registry_error() -> str:
    with pytest.raises(UserError) as caught:
        load_registry()
    return str(caught.value)


def test_builtins_load_through_the_entry_point_group():
    registry = load_registry(env={"STYLEKIT_PLUGINS": "none"})
    assert {p.package for p in registry.plugins} == {"stylekit"}
    assert {"vgg19"} <= set(registry.names("backbone"))
    assert {"content", "gram", "tv"} <= set(registry.names("loss"))
    assert {"adam", "lbfgs", "sgd"} <= set(registry.names("optimizer"))
    assert {"none", "step", "exponential", "cosine"} <= set(registry.names("scheduler"))


def test_third_party_loss_is_used_by_a_recipe(install_dist, tmp_path):
    install_dist("stylekit-brightness", BRIGHTNESS_PLUGIN)
    recipe = write_recipe(tmp_path, BRIGHTNESS_RECIPE, head=BRIGHTNESS_HEAD)
    status, _, err = run_cli("run", str(recipe), "--steps", "30")
    assert status == 0, err
    record = json.loads((tmp_path / "out" / "result.json").read_text())
    losses = [row["brightness"] for row in record["losses"]]
    assert losses[-1] < 0.25 * losses[0]
    assert record["versions"]["plugins"]["stylekit-brightness"] == "1.0"


def test_plugins_env_var_leaves_a_package_out_and_recipe_says_so(install_dist, tmp_path, monkeypatch):
    install_dist("stylekit-brightness", BRIGHTNESS_PLUGIN)
    recipe = write_recipe(tmp_path, BRIGHTNESS_RECIPE, head=BRIGHTNESS_HEAD)
    monkeypatch.setenv("STYLEKIT_PLUGINS", "none")
    status, _, err = run_cli("validate", str(recipe), registry=tiny_registry())
    assert status == 2
    assert "requires[0]: plugin package 'stylekit-brightness' is installed but STYLEKIT_PLUGINS leaves it out" in err
    monkeypatch.setenv("STYLEKIT_PLUGINS", "stylekit-brightness")
    assert run_cli("validate", str(recipe), registry=tiny_registry())[0] == 0


def test_plugin_that_fails_to_import_is_named(install_dist):
    install_dist("stylekit-broken", "import not_a_module_anywhere\n")
    (broken,) = load_registry().broken  # reported, not fatal: see test_plugin_contract.py
    message = broken.describe()
    assert "plugin 'broken' of package 'stylekit-broken' failed to import (ModuleNotFoundError" in message
    assert "STYLEKIT_PLUGINS" in message


def test_duplicate_component_names_name_both_packages(install_dist):
    install_dist("stylekit-brightness", BRIGHTNESS_PLUGIN)
    install_dist("stylekit-brightness2", BRIGHTNESS_PLUGIN)
    message = registry_error()
    assert "loss 'brightness' is registered twice: by plugin 'brightness2' of package 'stylekit-brightness2' and by plugin 'brightness' of package 'stylekit-brightness'" in message


def test_hook_with_wrong_signature_is_named(install_dist):
    install_dist("stylekit-badsig", BRIGHTNESS_PLUGIN.replace("def register_losses(register)", "def register_losses(register, extra)"))
    (broken,) = load_registry().broken
    assert "plugin 'badsig' of package 'stylekit-badsig' has a bad hook" in broken.describe()
    assert "extra" in broken.error


def test_misspelt_hook_name_is_named(install_dist):
    install_dist("stylekit-typo", BRIGHTNESS_PLUGIN.replace("def register_losses(", "def register_loss("))
    message = registry_error()
    assert "implements unknown hook 'register_loss' - did you mean 'register_losses'?" in message


def test_plugins_command_lists_packages_components_and_params(install_dist):
    install_dist("stylekit-brightness", BRIGHTNESS_PLUGIN)
    status, out, _ = run_cli("plugins", "--json")
    assert status == 0
    table = json.loads(out)
    entry = next(p for p in table if p["package"] == "stylekit-brightness")
    assert entry["version"] == "1.0"
    (component,) = entry["components"]
    assert component["kind"] == "loss" and component["name"] == "brightness"
    assert component["params"] == [{"name": "target", "type": "float", "constraints": ">= 0, <= 1", "default": 0.5,
                                    "required": False, "description": ""}]
    status, text, _ = run_cli("plugins")
    assert "stylekit-brightness 1.0" in text and "target: float >= 0, <= 1 (default 0.5)" in text


OPTIM_PLUGIN = """
import torch
from stylekit import hookimpl
from stylekit.contract.components import Optimizer, Params, Scheduler

class SignSGD(Optimizer):
    '''Steps by the sign of the gradient.'''
    name = "signsgd"

    class Params(Params):
        lr: float = 0.01

    def build(self, variables):
        lr = self.params.lr

        class Sign(torch.optim.SGD):
            @torch.no_grad()
            def step(self, closure=None):
                for group in self.param_groups:
                    for p in group["params"]:
                        p.add_(p.grad.sign(), alpha=-group["lr"])

        return Sign(variables, lr=lr)

class Halve(Scheduler):
    '''Halves the learning rate once, halfway through.'''
    name = "halve"

    def build(self, optimizer, total_steps):
        return torch.optim.lr_scheduler.MultiStepLR(optimizer, [total_steps // 2], 0.5)

@hookimpl
def register_optimizers(register):
    register(SignSGD)

@hookimpl
def register_schedulers(register):
    register(Halve)
"""


def test_third_party_optimizer_and_scheduler(install_dist, tmp_path):
    install_dist("stylekit-signsgd", OPTIM_PLUGIN)
    body = TINY_LOSSES_FOR_PLUGINS + '[optimizer]\nname = "signsgd"\n[optimizer.params]\nlr = 0.01\n[scheduler]\nname = "halve"\n'
    recipe = write_recipe(tmp_path, body)
    status, _, err = run_cli("run", str(recipe), "--steps", "10")
    assert status == 0, err
    losses = [row["total"] for row in json.loads((tmp_path / "out" / "result.json").read_text())["losses"]]
    assert losses[-1] < losses[0]


def test_params_rejected_by_a_plugin_component_name_package_and_component(install_dist, tmp_path):
    install_dist("stylekit-brightness", BRIGHTNESS_PLUGIN)
    recipe = write_recipe(tmp_path, BRIGHTNESS_RECIPE.replace("target = 0.9", "target = 2"), head=BRIGHTNESS_HEAD)
    status, _, err = run_cli("validate", str(recipe))
    assert status == 2
    assert "loss[0].params.target: Input should be less than or equal to 1 (got 2) - write a number at least 0 and at most 1 (loss 'brightness' of package 'stylekit-brightness')" in err


def test_plugins_command_lists_each_backbones_layers():
    """The layer names a recipe may give (`relu4_2`, ...) were listed nowhere but the code
    (issue 22): `stylekit plugins` lists them per backbone, from `layer_names_for` with the
    default params (no weights loaded)."""
    from stylekit.testing import tiny_registry

    status, out, _ = run_cli("plugins", "--json", registry=tiny_registry())
    assert status == 0
    backbones = {c["name"]: c for p in json.loads(out) for c in p["components"] if c["kind"] == "backbone"}
    assert backbones["vgg19"]["layers"][:3] == ["conv1_1", "relu1_1", "conv1_2"] and "relu4_2" in backbones["vgg19"]["layers"]
    assert len(backbones["vgg19"]["layers"]) == 37  # 16 convolutions, each with its ReLU, and 5 poolings
    status, text, _ = run_cli("plugins", registry=tiny_registry())
    lines = text.splitlines()
    start = next(i for i, line in enumerate(lines) if "layers (default params): conv1_1, relu1_1," in line)
    assert "relu4_2," in " ".join(lines[start:start + 6]) and all(len(line) <= 100 for line in lines[start:start + 6])
