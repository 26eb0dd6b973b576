"""Helpers for testing stylekit components, for plugin authors and for stylekit's own tests
alike. Plain functions, usable without pytest; the pytest fixtures built on them live in
`stylekit.pytest_plugin` (loaded by pytest through the `pytest11` entry point).

- `TinyBackbone`: a 3-layer random conv net (layers c1, r1, c2, r2, c3), fast on any CPU.
- `tiny_registry()`: the installed plugins plus the tiny backbone (and any extra plugins).
- `write_images(folder)`: a small content and style image, as PNG files.
- `write_recipe(folder, body)`: a recipe file whose images are those small images.
- `run_cli(*args)`: run the `stylekit` command in-process; returns (status, stdout, stderr).
- `run_for_losses(recipe, *args)`: `stylekit run` a recipe; returns its per-step loss rows.
- `check_loss`, `check_backbone`, `check_optimizer`, `check_scheduler`, `check_flow`: run a component class
  on the CPU as the engine does and fail, with a message that says what the contract wants,
  where it does not keep it (`stylekit.component_checks`).
Fixtures (in `stylekit.pytest_plugin`): `stylekit_registry`, `stylekit_images`, `stylekit_recipe`.
"""

from __future__ import annotations

import contextlib
import io
import json
import math
from collections import OrderedDict
from pathlib import Path
from typing import Any, Iterable

import torch
from PIL import Image
from torch import nn

from stylekit import component_checks
from stylekit.component_checks import check_backbone, check_flow, check_optimizer, check_scheduler
from stylekit.contract.components import Backbone, LossTerm, Params
from stylekit.contract.sequential import SequentialBackbone
from stylekit.contract.hookspecs import hookimpl
from stylekit.plugins.registry import PluginInfo, Registry, load_registry


class TinyBackbone(SequentialBackbone):
    """Three random 3x3 convs with ReLUs; for testing plumbing, not for pictures."""

    name = "tiny"
    weight_choices = ("random",)

    class Params(Params):
        width: int = 8

    @classmethod
    def layer_names_for(cls, params):
        return ("c1", "r1", "c2", "r2", "c3")

    def __init__(self, params: "TinyBackbone.Params", weights: str = "random"):
        w = params.width
        super().__init__(OrderedDict(c1=nn.Conv2d(3, w, 3, padding=1), r1=nn.ReLU(),
                                     c2=nn.Conv2d(w, w, 3, padding=1, stride=2), r2=nn.ReLU(),
                                     c3=nn.Conv2d(w, w, 3, padding=1)))
        self.params = params


def check_loss(cls: type[LossTerm], params: Any = None, layers: dict[str, float] | Iterable[str] | None = None,
               backbone: Backbone | None = None) -> None:
    """Check that the loss term `cls` keeps the contract, on the CPU in well under a second:
    built with `params` (a `cls.Params`, a dict, or None for the defaults) and `layers` (by
    default its `default_layers` where the backbone has them, else r1 and r2 of the tiny
    backbone), it prepares from targets as the engine computes them, its `forward` returns a
    finite 0-dim float tensor whose gradient reaches the image, with float32 and with bf16
    features, it changes neither its targets nor the features, and its `together`, if it
    offers one, gives 3 images the values and gradients `forward` gives each alone. Raises
    AssertionError saying what the contract wants and what the class did. `backbone`: the
    features to check against (default: a `TinyBackbone`)."""
    if backbone is None:
        with torch.random.fork_rng(devices=[]):  # the same random weights every time, the caller's seed untouched
            torch.manual_seed(0)
            backbone = TinyBackbone(TinyBackbone.Params())
    layers = layers if layers is None or isinstance(layers, dict) else tuple(layers)
    component_checks.check_loss(cls, backbone, params, layers, default_layers=("r1", "r2"))


class TestingPlugin:
    """The plugin that registers `TinyBackbone`."""

    @hookimpl
    def register_backbones(self, register):
        register(TinyBackbone)


TESTING_PLUGIN_INFO = PluginInfo("testing", "stylekit", "test")


def tiny_registry(extra: Iterable[tuple[Any, PluginInfo]] = (), env: dict[str, str] | None = None) -> Registry:
    """The registry of installed plugins plus the tiny backbone and `extra` (plugin, info) pairs."""
    return load_registry(env=env, extra=[(TestingPlugin(), TESTING_PLUGIN_INFO), *extra])


def pattern(h: int, w: int, kind: str) -> Image.Image:
    """A deterministic test picture: 'content' is smooth shapes, 'style' is stripes."""
    ys = torch.linspace(0, 1, h).view(h, 1).expand(h, w)
    xs = torch.linspace(0, 1, w).view(1, w).expand(h, w)
    if kind == "content":
        disc = (((xs - 0.4) ** 2 + (ys - 0.5) ** 2) < 0.08).float()
        rgb = torch.stack([0.2 + 0.6 * disc, 0.3 + 0.5 * ys, 0.6 - 0.4 * xs])
    else:
        stripes = torch.sin((xs * 9 + ys * 5) * math.pi * 2) * 0.5 + 0.5
        rgb = torch.stack([stripes, 0.9 - 0.7 * stripes, 0.3 + 0.4 * ys])
    return Image.fromarray((rgb.clamp(0, 1) * 255).byte().permute(1, 2, 0).numpy())


def write_images(folder: Path, size: tuple[int, int] = (48, 64)) -> tuple[Path, Path]:
    folder.mkdir(parents=True, exist_ok=True)
    content, style = folder / "content.png", folder / "style.png"
    pattern(*size, "content").save(content)
    pattern(*size, "style").save(style)
    return content, style


TINY_RECIPE_HEAD = """\
[images]
content = "content.png"
style = "style.png"

[output]
path = "out/result.png"
width = 64

[backbone]
name = "tiny"
weights = "random"

[run]
steps = 5
device = "cpu"
precision = "fp32"
progress_every = 0
"""

# Weights sized for the tiny random backbone, whose features are small.
TINY_LOSSES = """\
[[loss]]
name = "content"
weight = 1e4
layers = ["c3"]

[[loss]]
name = "gram"
weight = 1e6
layers = ["r1", "r2"]

[[loss]]
name = "tv"
weight = 0.1
"""


def write_recipe(folder: Path, body: str = TINY_LOSSES, head: str = TINY_RECIPE_HEAD, name: str = "recipe.toml") -> Path:
    """A recipe in `folder` next to small test images: `head` (images, output, tiny backbone,
    run) followed by `body` (loss terms, optimizer...)."""
    write_images(folder)
    path = folder / name
    path.write_text(head + "\n" + body, encoding="utf-8")
    return path


def run_cli(*args: str, registry: Registry | None = None) -> tuple[int, str, str]:
    """Run `stylekit ARGS` in-process with `registry` (default: `tiny_registry()`);
    returns (exit status, stdout, stderr)."""
    from stylekit.commands.cli import main  # the one thing taken from commands/: only for tests that run it

    out, err = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        try:
            status = main(list(args), registry=registry or tiny_registry())
        except SystemExit as exc:  # argparse exits on bad command lines
            status = exc.code if isinstance(exc.code, int) else 2
    return status, out.getvalue(), err.getvalue()


def run_for_losses(recipe: Path, *args: str, registry: Registry | None = None) -> list[dict[str, float]]:
    """`stylekit run RECIPE ARGS`, asserting success; the per-step losses from its run record
    (the recipe must write one, as recipes from `write_recipe` do, to out/result.png)."""
    status, _, err = run_cli("run", str(recipe), *args, registry=registry)
    assert status == 0, err
    record = Path(recipe).parent / "out" / "result.json"
    return json.loads(record.read_text())["losses"]

