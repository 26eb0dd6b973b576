"""The plugin contract enforced and its failures attributed: each failure case of a plugin
(issues 11 and 20) has a test that asserts its message."""

import json
import subprocess
import sys
import textwrap
from collections import OrderedDict

import pytest
import torch
from torch import nn

from stylekit.contract import Backbone, LossTerm, SequentialBackbone, hookimpl
from stylekit.plugins.registry import PluginInfo, load_registry
from stylekit.testing import TINY_LOSSES, TINY_RECIPE_HEAD, run_cli, tiny_registry, write_recipe

# ---------------------------------------------------------------- broken plugins

BROKEN = "import not_a_module_anywhere\n"


def test_broken_plugin_is_listed_with_its_error_not_fatal(install_dist):
    install_dist("stylekit-broken", BROKEN)
    registry = load_registry()
    assert [b.plugin.package for b in registry.broken] == ["stylekit-broken"]
    status, out, err = run_cli("plugins", registry=registry)
    assert status == 0, err
    assert ("stylekit-broken 1.0 (plugin 'broken'): BROKEN, failed to import (ModuleNotFoundError: "
            "No module named 'not_a_module_anywhere') - reinstall or fix stylekit-broken") in out
    assert "vgg19" in out  # the others are still listed
    status, out, _ = run_cli("plugins", "--json", registry=registry)
    entry = next(p for p in json.loads(out) if p["package"] == "stylekit-broken")
    assert entry["error"].startswith("failed to import (ModuleNotFoundError")


def test_recipe_that_does_not_need_a_broken_plugin_runs_with_one_warning(install_dist, tmp_path):
    install_dist("stylekit-broken", BROKEN)
    status, _, err = run_cli("run", str(write_recipe(tmp_path)), "--steps", "2", registry=tiny_registry())
    assert status == 0, err
    warnings = [line for line in err.splitlines() if line.startswith("warning:")]
    assert warnings == ["warning: plugin 'broken' of package 'stylekit-broken' failed to import (ModuleNotFoundError: "
                        "No module named 'not_a_module_anywhere') - reinstall or fix stylekit-broken, or leave it out "
                        "with STYLEKIT_PLUGINS=<the packages you want> (left out; this recipe does not need it)"]


def test_the_python_api_warns_once_about_a_broken_plugin_the_recipe_does_not_need(install_dist, tmp_path, monkeypatch):
    import warnings

    import pytest

    import stylekit
    from stylekit.plugins import registry as plugins

    monkeypatch.setattr(plugins, "_warned", set())  # once per process: this test's process state
    install_dist("stylekit-broken", BROKEN)
    recipe = write_recipe(tmp_path)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")  # so that "once" is stylekit's doing, not the warnings filter's
        stylekit.load(recipe, registry=tiny_registry())
        stylekit.load(recipe, registry=tiny_registry())
    assert [(w.category, str(w.message)) for w in caught] == [(plugins.BrokenPluginWarning, (
        "plugin 'broken' of package 'stylekit-broken' failed to import (ModuleNotFoundError: No module named "
        "'not_a_module_anywhere') - reinstall or fix stylekit-broken, or leave it out with STYLEKIT_PLUGINS=<the "
        "packages you want> (left out; this recipe does not need it)"))]
    assert caught[0].filename == __file__  # points at the caller's line, not at stylekit's
    # A recipe that names a component the broken plugin may provide fails, naming it.
    with pytest.raises(stylekit.UserError, match="unknown loss 'laplacian'.*package 'stylekit-broken' failed to import"):
        stylekit.load(write_recipe(tmp_path, '[[loss]]\nname = "laplacian"\n', name="needs.toml"), registry=tiny_registry())
    # `stylekit batch` (which loads through the API) tells it as the other commands do.
    status, _, err = run_cli("batch", str(recipe), "--content", str(recipe.parent / "content.png"), "-o",
                             str(tmp_path / "out"), "--dry-run", registry=tiny_registry())
    assert status == 0 and "warning: plugin 'broken' of package 'stylekit-broken' failed to import" in err


def test_missing_component_names_the_broken_plugin_that_may_provide_it(install_dist, tmp_path):
    install_dist("stylekit-broken", BROKEN)
    recipe = write_recipe(tmp_path, '[[loss]]\nname = "laplacian"\n')
    status, _, err = run_cli("validate", str(recipe), registry=tiny_registry())
    assert status == 2
    assert ("loss[0].name: unknown loss 'laplacian' - choose one of: content, gram, mrf, temporal, tv, wasserstein; plugin "
            "'broken' of package 'stylekit-broken' failed to import") in err
    assert "- it may be the one that provides it" in err


def test_requires_of_a_broken_package_says_it_is_broken(install_dist, tmp_path):
    install_dist("stylekit-broken", BROKEN)
    recipe = write_recipe(tmp_path, head='requires = ["stylekit-broken"]\n' + TINY_RECIPE_HEAD)
    status, _, err = run_cli("validate", str(recipe), registry=tiny_registry())
    assert status == 2
    assert "requires[0]: plugin package 'stylekit-broken' is installed but broken: plugin 'broken' of package 'stylekit-broken' failed to import" in err


def test_plugin_with_a_bad_hook_is_listed_as_broken(install_dist):
    install_dist("stylekit-badsig", "from stylekit import hookimpl\n\n@hookimpl\ndef register_losses(register, extra):\n    pass\n")
    registry = load_registry()
    (broken,) = registry.broken
    assert broken.describe().startswith("plugin 'badsig' of package 'stylekit-badsig' has a bad hook")
    assert "extra" in broken.error


# ---------------------------------------------------------------- abstract base classes


def test_the_base_classes_are_abstract_for_real():
    """Built by hand (in a plugin's own tests, say), a class without its required methods
    fails at once rather than at its first use in a run."""
    from stylekit.contract import Backbone, BatchedStepper, LossTerm, Optimizer, Scheduler

    class Half(LossTerm):
        name = "half"

    class Idle(Optimizer):
        name = "idle"

    for build in (lambda: Half(Half.Params(), {}), lambda: Idle(Idle.Params()), lambda: LossTerm(LossTerm.Params(), {}),
                  lambda: Backbone(), lambda: Scheduler(Scheduler.Params()), lambda: BatchedStepper()):
        with pytest.raises(TypeError, match="Can't instantiate abstract class"):
            build()


# ---------------------------------------------------------------- classes that break the contract

LACKING = """
from stylekit import hookimpl
from stylekit.contract import LossTerm

class BadLoss(LossTerm):
    '''Prepares, but has no forward.'''
    name = "bad"

    def prepare(self, targets):
        self.ready = True

@hookimpl
def register_losses(register):
    register(BadLoss)
"""

LACKING_ERROR = ("plugin 'lacking' of package 'stylekit-lacking' breaks the contract: loss class BadLoss lacks "
                 "forward(features, image) - define it")


def test_class_without_a_required_method_is_reported_at_load_and_a_good_plugin_still_works(install_dist, tmp_path):
    install_dist("stylekit-lacking", LACKING)
    install_dist("stylekit-sizes", DOCUMENTED)
    registry = load_registry()
    (broken,) = registry.broken  # the built-ins and the plugins of plugins/ keep the contract
    assert broken.describe() == LACKING_ERROR
    assert "bad" not in registry.components["loss"]
    assert registry.components["loss"]["sizes"].plugin.package == "stylekit-sizes"
    status, _, err = run_cli("run", str(write_recipe(tmp_path, '[[loss]]\nname = "sizes"\n')), "--steps", "2")
    assert status == 0, err
    assert [line for line in err.splitlines() if line.startswith("warning:")] == [
        f"warning: {LACKING_ERROR} (left out; this recipe does not need it)"]
    # A recipe that names the class's component is told why it cannot have it.
    status, _, err = run_cli("validate", str(write_recipe(tmp_path, '[[loss]]\nname = "bad"\n', name="bad.toml")))
    assert status == 2 and f"loss[0].name: loss 'bad' cannot be used: {LACKING_ERROR}" in err


def test_plugins_command_lists_the_plugin_that_breaks_the_contract(install_dist):
    install_dist("stylekit-lacking", LACKING)
    status, out, err = run_cli("plugins")
    assert status == 0, err
    assert ("stylekit-lacking 1.0 (plugin 'lacking'): BROKEN, breaks the contract: loss class BadLoss lacks "
            "forward(features, image) - define it") in out
    assert "gram" in out  # the others are still listed
    status, out, _ = run_cli("plugins", "--json")
    entry = next(p for p in json.loads(out) if p["package"] == "stylekit-lacking")
    assert entry["error"] == "breaks the contract: loss class BadLoss lacks forward(features, image) - define it"


def test_the_python_api_warns_about_a_plugin_that_breaks_the_contract(install_dist, tmp_path, monkeypatch):
    import warnings

    import stylekit
    from stylekit.plugins import registry as plugins

    monkeypatch.setattr(plugins, "_warned", set())
    install_dist("stylekit-lacking", LACKING)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        stylekit.load(write_recipe(tmp_path), registry=tiny_registry())
    assert [(w.category, str(w.message)) for w in caught] == [
        (plugins.BrokenPluginWarning, f"{LACKING_ERROR} (left out; this recipe does not need it)")]


INCOMPLETE = """
from stylekit import hookimpl
from stylekit.contract import Backbone, FlowProvider, Optimizer, Scheduler

class Hollow(Backbone):
    '''Neither built, nor layered, nor run.'''
    name = "hollow"

class Idle(Optimizer):
    '''Builds nothing.'''
    name = "idle"

class Flat(Scheduler):
    '''Schedules nothing.'''
    name = "flat"

@hookimpl
def register_backbones(register):
    register(Hollow)

@hookimpl
def register_optimizers(register):
    register(Idle)

@hookimpl
def register_schedulers(register):
    register(Flat)

class Frozen(FlowProvider):
    '''Sees no motion, nor computes any.'''
    name = "frozen"

@hookimpl
def register_flow_providers(register):
    register(Frozen)
"""


def test_every_kind_names_each_method_it_lacks(install_dist):
    install_dist("stylekit-incomplete", INCOMPLETE)
    (broken,) = load_registry().broken
    assert broken.describe() == (
        "plugin 'incomplete' of package 'stylekit-incomplete' breaks the contract: "
        "backbone class Hollow lacks __init__(params, weights), the classmethod layer_names_for(params) and "
        "features(image, layers) - define them; "
        "optimizer class Idle lacks build(variables) - define it; "
        "scheduler class Flat lacks build(optimizer, total_steps) - define it; "
        "flow class Frozen lacks flow(source, target, pair) - define it")


class Registers:
    """A plugin that registers `classes`, each through the hook of its kind."""

    def __init__(self, *classes):
        self.classes = classes

    def _register(self, base, register):
        for cls in self.classes:
            if issubclass(cls, base):
                register(cls)

    @hookimpl
    def register_backbones(self, register):
        self._register(Backbone, register)

    @hookimpl
    def register_losses(self, register):
        self._register(LossTerm, register)


def contract_breach(*classes) -> str | None:
    """What is wrong with `classes`, registered by a plugin 'x' of package 'stylekit-x'; None if nothing."""
    registry = tiny_registry([(Registers(*classes), PluginInfo("x", "stylekit-x", "1.0"))], env={"STYLEKIT_PLUGINS": "none"})
    if not registry.broken:
        return None
    (broken,) = registry.broken
    return broken.error.removeprefix("breaks the contract: ")


class Term(LossTerm):
    """A term that keeps the contract; the cases below each break it once."""

    name = "term"

    def forward(self, features, image):
        return image.mean()


class OneArgument(Term):
    def forward(self, image):
        return image.mean()


class Unprepared(Term):
    def prepare(self):
        pass


class NotAMethod(Term):
    forward = None


class Spaced(Term):
    name = "my term"


class TrailingComma(Term):
    name = "term",


class Nameless(LossTerm):
    def forward(self, features, image):
        return image.mean()


class OneLayer(Term):
    default_layers = ("c3")  # the comma that makes it a tuple forgotten


class Misspelt(Term):
    target_images = frozenset({"styles"})


class Loose(Term):
    class Params:
        power: float = 1.0


class Forgetful(SequentialBackbone):
    """`layer_names_for` without @classmethod, and an __init__ that takes no weights."""

    name = "forgetful"

    def layer_names_for(self, params):
        return ("c1",)

    def __init__(self, params):
        super().__init__(OrderedDict(c1=nn.Conv2d(3, 4, 3)))


@pytest.mark.parametrize("cls, breach", [
    (OneArgument, "loss class OneArgument: stylekit calls forward(features, image), which OneArgument.forward(self, image) "
                  "does not accept - take those arguments"),
    (Unprepared, "loss class Unprepared: stylekit calls prepare(targets), which Unprepared.prepare(self) does not "
                 "accept - take those arguments"),
    (NotAMethod, "loss class NotAMethod: forward is None, not a method - define forward(features, image)"),
    (Spaced, "loss class Spaced: name 'my term' is not a name a recipe can write - use a string of letters, digits, "
             "'_' and '-', starting with a letter"),
    (TrailingComma, "loss class TrailingComma: name ('term',) is not a name a recipe can write - use a string of "
                    "letters, digits, '_' and '-', starting with a letter"),
    (Nameless, "loss class Nameless has no name - set name = \"...\", what a recipe writes to choose it"),
    (OneLayer, "loss class OneLayer: default_layers is the string 'c3', not a tuple of layer names - write ('c3',)"),
    (Misspelt, "loss class Misspelt: target_images holds 'styles' - use 'content' and/or 'style'"),
    (Loose, "loss class Loose: Params is not a pydantic model - subclass stylekit.contract.Params"),
    (Forgetful, "backbone class Forgetful: stylekit builds it as Forgetful(params, weights), which "
                "Forgetful.__init__(self, params) does not accept - take those arguments; backbone class Forgetful: "
                "layer_names_for(params) must be a classmethod (stylekit calls it on the class, before building one) "
                "- decorate it with @classmethod"),
])
def test_what_registration_checks_without_running_anything(cls, breach):
    assert contract_breach(cls) == breach


class Lenient(Term):
    """Signatures that differ from the contract's but accept what stylekit passes."""

    name = "lenient"
    default_layers = ["c3"]
    target_images = frozenset({"style"})

    @torch.no_grad()
    def prepare(self, targets, extra=None):
        pass

    def forward(self, *inputs):
        return inputs[1].mean()


class StaticLayers(SequentialBackbone):
    name = "static-layers"

    @staticmethod
    def layer_names_for(params):
        return ("c1",)

    def __init__(self, *args, **kwargs):
        super().__init__(OrderedDict(c1=nn.Conv2d(3, 4, 3)))


def test_signatures_that_accept_what_stylekit_passes_are_not_reported():
    assert contract_breach(Lenient, StaticLayers) is None


# ---------------------------------------------------------------- requires

def test_requires_typo_suggests_the_installed_package_and_no_install_command(install_dist, tmp_path):
    install_dist("stylekit-laplacian", "")
    recipe = write_recipe(tmp_path, head='requires = ["stylekit-laplacain"]\n' + TINY_RECIPE_HEAD)
    status, _, err = run_cli("validate", str(recipe), registry=tiny_registry())
    assert status == 2
    assert ("requires[0]: plugin package 'stylekit-laplacain' is not installed - did you mean the installed "
            "'stylekit-laplacian'? Correct the name in requires") in err
    assert "pip install" not in err


def test_requires_of_an_unrelated_missing_package_says_how_to_install_it(tmp_path):
    recipe = write_recipe(tmp_path, head='requires = ["stylekit-foo"]\n' + TINY_RECIPE_HEAD)
    status, _, err = run_cli("validate", str(recipe))
    assert status == 2
    assert "requires[0]: this recipe needs the plugin package 'stylekit-foo' - install it with `pip install stylekit-foo`" in err


# ---------------------------------------------------------------- backbones that break their promise

LYING_BACKBONE = """
from collections import OrderedDict
import torch
from torch import nn
from stylekit import hookimpl
from stylekit.contract.components import Backbone, Params
from stylekit.contract.sequential import SequentialBackbone

class Liar(SequentialBackbone):
    '''Advertises relu3, which it does not have.'''
    name = "liar"

    @classmethod
    def layer_names_for(cls, params):
        return ("c1", "r1", "relu3")

    def __init__(self, params, weights="random"):
        super().__init__(OrderedDict(c1=nn.Conv2d(3, 4, 3, padding=1), r1=nn.ReLU()))
        self.params = params

class Dropper(Backbone):
    '''Computes both layers, returns only the first.'''
    name = "dropper"

    @classmethod
    def layer_names_for(cls, params):
        return ("a", "b")

    def __init__(self, params, weights="random"):
        super().__init__()
        self.params = params
        self.conv = nn.Conv2d(3, 4, 3, padding=1)

    def features(self, image, layers):
        a = self.conv(image)
        return {"a": a}

class Moody(Dropper):
    '''Keeps its promise when probed (no gradients), breaks it in the loop.'''
    name = "moody"

    def features(self, image, layers):
        if torch.is_grad_enabled():
            raise RuntimeError("no gradients here")
        a = self.conv(image)
        return {"a": a, "b": a}

@hookimpl
def register_backbones(register):
    register(Liar)
    register(Dropper)
    register(Moody)
"""


def backbone_recipe(tmp_path, name: str, layers: str):
    head = TINY_RECIPE_HEAD.replace('name = "tiny"', f'name = "{name}"')
    return write_recipe(tmp_path, f'[[loss]]\nname = "gram"\nlayers = {layers}\n', head=head)


def test_backbone_advertising_a_layer_it_lacks_is_named_when_built(install_dist, tmp_path):
    install_dist("stylekit-liar", LYING_BACKBONE)
    recipe = backbone_recipe(tmp_path, "liar", '["relu3"]')
    assert run_cli("validate", str(recipe))[0] == 0  # the recipe itself is fine: the promise is broken
    status, _, err = run_cli("run", str(recipe))
    assert status == 3  # the plugin's bug: a failed run, not bad input
    assert ("backbone.name: backbone 'liar' of package 'stylekit-liar' advertises layers it does not produce: relu3 - "
            "layer_names_for() must list exactly the layers that features() returns") in err
    assert "Traceback" not in err and not (tmp_path / "out" / "result.png").exists()


def test_backbone_whose_features_drop_a_layer_is_named(install_dist, tmp_path):
    install_dist("stylekit-liar", LYING_BACKBONE)
    status, _, err = run_cli("run", str(backbone_recipe(tmp_path, "dropper", '["a"]')))
    assert status == 3
    assert "backbone 'dropper' of package 'stylekit-liar' advertises layers it does not produce: b" in err


def test_builtin_backbones_produce_every_layer_they_advertise():
    """The check plugin backbones get at every build, made once here for stylekit's own."""
    from stylekit.plugins.probe import check_layers

    registry = tiny_registry(env={"STYLEKIT_PLUGINS": "none"})
    for name, entry in registry.components["backbone"].items():
        assert entry.plugin.package == "stylekit"
        check_layers(entry.cls(entry.cls.Params(), "random"), name)  # raises UserError on a missing layer


def test_backbone_features_raising_in_the_loop_is_named(install_dist, tmp_path):
    install_dist("stylekit-liar", LYING_BACKBONE)
    status, _, err = run_cli("run", str(backbone_recipe(tmp_path, "moody", '["a"]')))
    assert status == 3
    assert ("backbone: backbone 'moody' of package 'stylekit-liar' raised RuntimeError: no gradients here in features() "
            "at step 1") in err


# ---------------------------------------------------------------- exceptions raised by plugin code at run time

FAILING = """
import torch
from stylekit import hookimpl
from stylekit.contract.components import LossTerm, Optimizer, Params, Scheduler

class Flaky(LossTerm):
    '''Raises where its params say.'''
    name = "flaky"
    reads_features = False

    class Params(Params):
        fail_in: str = "forward"
        fail_at: int = 3

    def prepare(self, targets):
        self.calls = 0
        if self.params.fail_in == "prepare":
            raise ValueError("no targets for me")

    def forward(self, features, image):
        self.calls += 1
        if self.params.fail_in == "forward" and self.calls == self.params.fail_at:
            raise ValueError("boom")
        return image.mean()

class Clumsy(Optimizer):
    '''An SGD whose second step raises.'''
    name = "clumsy"

    def build(self, variables):
        class Steps(torch.optim.SGD):
            count = 0

            def step(self, closure=None):
                Steps.count += 1
                if Steps.count == 2:
                    raise RuntimeError("step two")
                return super().step(closure)

        return Steps(variables, lr=0.01)

class Unbuildable(Scheduler):
    '''Cannot be built.'''
    name = "unbuildable"

    def build(self, optimizer, total_steps):
        raise TypeError("no schedule")

@hookimpl
def register_losses(register):
    register(Flaky)

@hookimpl
def register_optimizers(register):
    register(Clumsy)

@hookimpl
def register_schedulers(register):
    register(Unbuildable)
"""


def failing_recipe(tmp_path, params: str = "", tail: str = ""):
    body = TINY_LOSSES + f'\n[[loss]]\nname = "flaky"\n[loss.params]\n{params}\n' + tail
    return write_recipe(tmp_path, body)


def test_loss_forward_raising_names_package_entry_and_step(install_dist, tmp_path, monkeypatch):
    install_dist("stylekit-failing", FAILING)
    monkeypatch.delenv("STYLEKIT_TRACEBACK", raising=False)
    recipe = failing_recipe(tmp_path)
    status, _, err = run_cli("run", str(recipe))
    assert status == 3  # a bug in the plugin is a failed run; 2 is for bad input
    line = recipe.read_text().splitlines().index('name = "flaky"')  # 0-based: the [[loss]] line above it
    assert err.strip().splitlines()[-1] == (
        f"error: {recipe}:{line}: loss[3]: loss 'flaky' of package 'stylekit-failing' raised ValueError: boom in forward() "
        "at step 3 - a bug in stylekit-failing, or params it does not handle; STYLEKIT_TRACEBACK=1 or --traceback "
        "shows the traceback")
    assert "Traceback" not in err and not (tmp_path / "out" / "result.png").exists()


def test_traceback_is_shown_with_the_flag_or_the_environment_variable(install_dist, tmp_path, monkeypatch):
    install_dist("stylekit-failing", FAILING)
    recipe = failing_recipe(tmp_path)
    status, _, err = run_cli("run", str(recipe), "--traceback")
    assert status == 3 and "Traceback (most recent call last)" in err and 'raise ValueError("boom")' in err
    monkeypatch.setenv("STYLEKIT_TRACEBACK", "1")
    status, _, err = run_cli("run", str(recipe))
    assert status == 3 and "Traceback (most recent call last)" in err


def test_loss_prepare_raising_is_named(install_dist, tmp_path):
    install_dist("stylekit-failing", FAILING)
    status, _, err = run_cli("run", str(failing_recipe(tmp_path, 'fail_in = "prepare"')))
    assert status == 3
    assert "loss[3]: loss 'flaky' of package 'stylekit-failing' raised ValueError: no targets for me in prepare() before step 1" in err


def test_optimizer_step_raising_is_named(install_dist, tmp_path):
    install_dist("stylekit-failing", FAILING)
    recipe = failing_recipe(tmp_path, 'fail_in = "nowhere"', '[optimizer]\nname = "clumsy"\n')
    status, _, err = run_cli("run", str(recipe))
    assert status == 3
    assert "optimizer: optimizer 'clumsy' of package 'stylekit-failing' raised RuntimeError: step two in step() at step 2" in err


def test_scheduler_build_raising_is_named(install_dist, tmp_path):
    install_dist("stylekit-failing", FAILING)
    recipe = failing_recipe(tmp_path, 'fail_in = "nowhere"', '[scheduler]\nname = "unbuildable"\n')
    status, _, err = run_cli("run", str(recipe))
    assert status == 3
    assert "scheduler: scheduler 'unbuildable' of package 'stylekit-failing' raised TypeError: no schedule in build() before step 1" in err


def test_from_python_a_plugin_bug_is_a_plugin_error_carrying_the_original(install_dist, tmp_path):
    """Not a UserError (bad input) with the original hidden in __context__: a RunFailed that
    names the package and the component and holds what the plugin raised."""
    import stylekit
    from stylekit.errors import PluginError, RunFailed

    install_dist("stylekit-failing", FAILING)
    plan = stylekit.load(failing_recipe(tmp_path), registry=tiny_registry())
    with pytest.raises(PluginError) as caught:
        stylekit.stylize(plan)
    error = caught.value
    assert isinstance(error, RunFailed) and not isinstance(error, stylekit.UserError)
    assert stylekit.PluginError is PluginError
    assert isinstance(error.original, ValueError) and str(error.original) == "boom"
    assert error.__cause__ is error.original
    assert (error.package, error.kind, error.component) == ("stylekit-failing", "loss", "flaky")
    assert error.problem.field == "loss[3]" and error.problem.line and 'raise ValueError("boom")' in error.problem.details
    assert "loss 'flaky' of package 'stylekit-failing' raised ValueError: boom in forward() at step 3" in str(error)


PICKY = """
import torch
from stylekit import hookimpl
from stylekit.contract import LossTerm, Optimizer, Params
from stylekit.errors import Problem, UserError

class Picky(LossTerm):
    '''Reads at most max_layers layers: a check across its params and its layers.'''
    name = "picky"

    class Params(Params):
        max_layers: int = 1

    def __init__(self, params, layers):
        super().__init__(params, layers)
        if len(layers) > params.max_layers:
            raise UserError(Problem(f"reads at most {params.max_layers} layer(s), not {len(layers)} - "
                                    "list fewer or raise params.max_layers", field="layers"))

    def forward(self, features, image):
        return image.mean()

class Fussy(Optimizer):
    '''Refuses every params, without naming a field.'''
    name = "fussy"

    def __init__(self, params):
        raise UserError("never satisfied - choose another optimizer")

    def build(self, variables):
        return torch.optim.SGD(variables, lr=0.1)

@hookimpl
def register_losses(register):
    register(Picky)

@hookimpl
def register_optimizers(register):
    register(Fussy)
"""


def test_a_check_in_a_components_init_is_reported_at_load_with_file_line_field_and_package(install_dist, tmp_path):
    install_dist("stylekit-picky", PICKY)
    recipe = write_recipe(tmp_path, TINY_LOSSES + '\n[[loss]]\nname = "picky"\nlayers = ["r1", "r2"]\n\n'
                                    '[optimizer]\nname = "fussy"\n')
    lines = recipe.read_text().splitlines()
    layers_line, optimizer_line = lines.index('name = "picky"') + 2, lines.index("[optimizer]") + 1
    expected = [f"error: {recipe}:{layers_line}: loss[3].layers: reads at most 1 layer(s), not 2 - list fewer or raise "
                "params.max_layers (loss 'picky' of package 'stylekit-picky')",
                f"error: {recipe}:{optimizer_line}: optimizer: never satisfied - choose another optimizer (optimizer "
                "'fussy' of package 'stylekit-picky')"]
    for command in ("validate", "run"):  # validate reports it too: found when the recipe is loaded
        status, _, err = run_cli(command, str(recipe))
        assert status == 2 and err.strip().splitlines()[-2:] == expected, err
    assert not (tmp_path / "out").exists()
    status, _, err = run_cli("validate", str(recipe), "--set", "loss[3].params.max_layers=2", "--set", "optimizer.name=adam")
    assert status == 0, err


def test_a_check_in_a_components_init_is_located_when_a_run_builds_it(install_dist, tmp_path):
    """Built again for the run (a plan made elsewhere, or an __init__ that changed its mind),
    the loss term's UserError reads as it does at load."""
    import dataclasses

    import stylekit

    install_dist("stylekit-picky", PICKY)
    recipe = write_recipe(tmp_path, TINY_LOSSES + '\n[[loss]]\nname = "picky"\nlayers = ["r1"]\n')
    plan = stylekit.load(recipe, registry=tiny_registry())
    picky = plan.losses[3]
    plan = plan.replace(losses=plan.losses[:3] + (dataclasses.replace(picky, layers={"r1": 1.0, "r2": 1.0}),))
    with pytest.raises(stylekit.UserError) as caught:
        stylekit.stylize(plan)
    (problem,) = caught.value.problems
    assert (problem.file, problem.line, problem.field) == (str(recipe), len(recipe.read_text().splitlines()), "loss[3].layers")
    assert problem.message.endswith("(loss 'picky' of package 'stylekit-picky')")


# ---------------------------------------------------------------- params shown readably

DOCUMENTED = """
from typing import Annotated, Literal
from pydantic import Field
from stylekit import hookimpl
from stylekit.contract.components import LossTerm, Params

class Sizes(LossTerm):
    '''Params of every shape.'''
    name = "sizes"
    reads_features = False

    class Params(Params):
        sizes: list[Annotated[int, Field(gt=0)]] = Field(default_factory=lambda: [3, 5], description="patch sizes")
        mode: Literal["a", "b"] = "a"
        scale: float | None = Field(None, ge=0, le=2, description="how much")

    def forward(self, features, image):
        return image.mean()

@hookimpl
def register_losses(register):
    register(Sizes)
"""


def test_plugins_lists_params_with_readable_types_constraints_and_descriptions(install_dist):
    install_dist("stylekit-sizes", DOCUMENTED)
    status, out, _ = run_cli("plugins")
    assert status == 0
    assert "sizes: list[int > 0] (default [3, 5]) - patch sizes" in out
    assert "mode: 'a' | 'b' (default 'a')" in out
    assert "scale: float | None >= 0, <= 2 (default None) - how much" in out
    assert "FieldInfo" not in out and "Annotated" not in out


# ---------------------------------------------------------------- test helpers that cost nothing


def test_pytest_plugin_loads_without_torch_and_testing_imports_without_pytest():
    code = textwrap.dedent("""
        import sys
        import stylekit.pytest_plugin
        assert "torch" not in sys.modules, "the pytest plugin imported torch at load"
        sys.modules["pytest"] = None  # as if pytest were not installed
        for name in [m for m in sys.modules if m.startswith("stylekit")]:
            del sys.modules[name]
        import stylekit.testing
        print("ok")
    """)
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert result.returncode == 0 and result.stdout.strip() == "ok", result.stderr


# ---------------------------------------------------------------- the run record


def test_run_record_holds_the_params_each_component_used(tmp_path):
    body = '[[loss]]\nname = "gram"\nlayers = ["r1"]\n\n[optimizer]\nname = "lbfgs"\n[optimizer.params]\nhistory = 7\n'
    recipe = write_recipe(tmp_path, body)
    status, _, err = run_cli("run", str(recipe), "--steps", "1")
    assert status == 0, err
    record = json.loads((tmp_path / "out" / "result.json").read_text())
    assert record["recipe"]["loss"][0]["params"] == {}  # as written
    resolved = record["resolved"]
    assert resolved["backbone"] == {"name": "tiny", "package": "stylekit", "params": {"width": 8}, "weights": "random"}
    (gram,) = resolved["loss"]
    assert gram["package"] == "stylekit" and gram["layers"] == {"r1": 1.0} and gram["params"]  # defaults filled in
    assert resolved["optimizer"]["name"] == "lbfgs" and resolved["optimizer"]["params"]["history"] == 7
    assert "lr" in resolved["optimizer"]["params"]
    assert resolved["scheduler"] == {"name": "none", "package": "stylekit", "params": {}}


def test_every_builtin_param_has_a_description():
    registry = load_registry(env={"STYLEKIT_PLUGINS": "none"})
    for kind, named in registry.components.items():
        for name, entry in named.items():
            for field_name, field in entry.cls.Params.model_fields.items():
                assert field.description, f"{kind} '{name}': param '{field_name}' has no Field(description=...)"


def test_plugins_written_against_the_old_import_paths_keep_working_with_a_warning():
    """`stylekit.components`, `stylekit.sequential` and `stylekit.hookspecs` moved into
    `stylekit.contract`; a published plugin that imports the old paths still loads, and is
    told where they went, at its own line."""
    import warnings

    import stylekit.contract

    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        from stylekit.components import LossTerm, Params
        from stylekit.hookspecs import hookimpl as old_hookimpl
        from stylekit.sequential import SequentialBackbone
    assert (LossTerm, Params, SequentialBackbone) == (stylekit.contract.LossTerm, stylekit.contract.Params,
                                                      stylekit.contract.SequentialBackbone)
    assert old_hookimpl is stylekit.hookimpl is stylekit.contract.hookimpl
    assert {w.category for w in caught} == {DeprecationWarning} and len(caught) == 4
    assert all(w.filename == __file__ for w in caught)
    assert "stylekit.components moved to stylekit.contract" in str(caught[0].message)
    with pytest.raises(ImportError):
        from stylekit.sequential import LossTerm  # noqa: F401  (never lived there)


def pixel_term_plugin(name: str, forward) -> list:
    """An `extra` for tiny_registry: package stylekit-NAME with one pixel-space loss term
    NAME whose forward is `forward(image)`."""
    class Term(LossTerm):
        reads_features = False

        def forward(self, features, image):
            return forward(image)

    Term.name = name

    class Plugin:
        @hookimpl
        def register_losses(self, register):
            register(Term)

    return [(Plugin(), PluginInfo(name, f"stylekit-{name}", "1.0"))]


#: A term that forgets to reduce: its forward returns a shape (1,) tensor.
UNREDUCED = pixel_term_plugin("unreduced", lambda image: image.mean().view(1))


def test_a_term_value_that_is_not_a_scalar_is_named_at_its_entry(tmp_path, monkeypatch):
    """A (1,)-shaped value failed in torch.stack: 'stack expects each tensor to be equal
    size', a traceback naming no plugin, exit 1 (issue 22). The first evaluation checks each
    term's value against the contract and names the term's package, entry and step."""
    monkeypatch.delenv("STYLEKIT_TRACEBACK", raising=False)
    recipe = write_recipe(tmp_path, TINY_LOSSES + '\n[[loss]]\nname = "unreduced"\n')
    status, _, err = run_cli("run", str(recipe), "--steps", "2", registry=tiny_registry(UNREDUCED))
    assert status == 3 and "Traceback" not in err, err
    line = recipe.read_text().splitlines().index('name = "unreduced"')
    assert err.strip().splitlines()[-1] == (
        f"error: {recipe}:{line}: loss[3]: loss 'unreduced' of package 'stylekit-unreduced' broke the contract at "
        "step 1: forward() returned a torch.float32 tensor of shape (1,), where the contract wants the term's "
        "unweighted value as a 0-dim float tensor (reduce it, e.g. with .sum() or .mean()) - a bug in "
        "stylekit-unreduced")
    assert not (tmp_path / "out" / "result.png").exists()


def test_a_term_value_that_is_not_a_scalar_is_named_in_a_stacked_group_too():
    """Stacked images call a term without `together` slice by slice: the same check there."""
    from stylekit.run.engine import BadTermValue
    from stylekit.run.together import _slice_by_slice

    classes = []  # the class is made by the hook: register it to get it
    UNREDUCED[0][0].register_losses(classes.append)
    term = classes[0](classes[0].Params(), {})
    values = _slice_by_slice([term, term])
    with pytest.raises(BadTermValue, match=r"returned a torch.float32 tensor of shape \(1,\)") as caught:
        values({}, torch.rand(2, 3, 4, 4))
    assert caught.value.term is term


def test_a_plugin_term_that_goes_non_finite_first_is_named_before_the_learning_rate(tmp_path):
    """The advice was only 'lower the learning rate', sending a plugin's user to tune a run
    that the plugin's own bug broke (issue 22): the term and its package come first."""
    recipe = write_recipe(tmp_path, TINY_LOSSES + '\n[[loss]]\nname = "poisoned"\n')
    # NaN from the first step, whatever the learning rate: the term's bug (a log of 0, say).
    registry = tiny_registry(pixel_term_plugin("poisoned", lambda image: image.mean() * float("nan")))
    status, _, err = run_cli("run", str(recipe), "--steps", "2", registry=registry)
    assert status == 3 and "Traceback" not in err, err
    assert ("the run diverged: poisoned (package stylekit-poisoned) went non-finite (NaN or infinity) at step 1 of 2 - "
            "the term 'poisoned' of package 'stylekit-poisoned' produced it first: a bug there is likely (its author "
            "may need to look at its forward()); if not, lower the learning rate (optimizer.params.lr) or the loss "
            "weights") in err
    assert not (tmp_path / "out" / "result.png").exists()
