"""Checks that a plugin keeps its side of the contract, made when its component is built, so
that a broken promise is reported as the plugin's, before any run starts.

A backbone promises, through `layer_names_for`, the layers its `features` produces; recipes
are validated against that list without building anything. When a plugin's backbone is
built, one forward pass on a small random image asks for every advertised layer and
compares what comes back (VGG-19 at 64x64: about 0.1-0.4 s on a 2-core CPU, so the
built-ins, whose layers the suite checks, skip it).

What the backbone's code gets wrong here (an exception it raises, a layer it does not
produce) is the plugin's bug: a `PluginError`, a failed run. A `UserError` it raises
(weights that cannot be had) is bad input and passes through.
"""

from __future__ import annotations

import dataclasses
import traceback

import torch
from pydantic import BaseModel

from stylekit.contract.components import Backbone
from stylekit.errors import TRACEBACK_ENV, PluginError, Problem, UserError
from stylekit.plugins.registry import BUILTIN_PACKAGE

#: Side of the probe image. Large enough for five 2x poolings (VGG's) to leave 2x2 pixels.
PROBE_SIZE = 64


def probed_backbone(cls: type[Backbone], params: BaseModel, weights: str | None, package: str) -> Backbone:
    """`cls(params, weights)`, probed. A UserError the backbone raises (weights it cannot
    get) passes through; any other exception, or a layer it advertises and does not
    produce, becomes a PluginError that names the backbone and its package."""
    who = f"backbone '{cls.name}' of package '{package}'"
    try:
        backbone = cls(params, weights)
    except UserError:
        raise
    except Exception as exc:
        raise _plugin_failed(f"{who} failed to build", exc, package, cls.name) from exc
    if package != BUILTIN_PACKAGE:  # stylekit's own are checked once, by its test suite, not on every run
        check_layers(backbone, who, package)
    return backbone


def check_layers(backbone: Backbone, who: str, package: str = BUILTIN_PACKAGE) -> None:
    name = type(backbone).name
    advertised = tuple(type(backbone).layer_names_for(backbone.params))
    probe = torch.rand(1, 3, PROBE_SIZE, PROBE_SIZE, generator=torch.Generator().manual_seed(0))
    try:
        parameter = next(backbone.parameters(), None)
        if parameter is not None:
            probe = probe.to(device=parameter.device, dtype=parameter.dtype)
        with torch.no_grad():
            produced = backbone.features(probe, frozenset(advertised))
    except UserError:  # the plugin's own word about its input
        raise
    except Exception as exc:
        raise _plugin_failed(f"{who} failed when asked for its advertised layers "
                             f"(layer_names_for) on a {PROBE_SIZE}x{PROBE_SIZE} image", exc, package, name) from exc
    if not isinstance(produced, dict):
        raise PluginError(Problem(f"{who}: features() returned {type(produced).__name__}, not a dict of layer name -> "
                                  "tensor", field="backbone.name"), None, package, "backbone", name)
    missing = [layer for layer in advertised if layer not in produced]
    if missing:
        raise PluginError(Problem(
            f"{who} advertises layers it does not produce: {', '.join(missing)} - layer_names_for() "
            "must list exactly the layers that features() returns when asked for them",
            field="backbone.name"), None, package, "backbone", name)


def located(problem: Problem, at) -> Problem:
    """`problem` at the recipe's line (`at`: `Plan.at`, which maps a field to its line): a problem without a field is
    about the weights the backbone was asked to load (it raised UserError for them)."""
    loc = ("backbone", "weights") if problem.field is None else tuple(problem.field.split("."))
    return dataclasses.replace(at(loc, problem.message), details=problem.details)


def located_error(error: PluginError, at) -> PluginError:
    """`error` with its problem at the recipe's line (see `located`)."""
    return PluginError(located(error.problem, at), error.original, error.package, error.kind, error.component)


def _plugin_failed(what: str, exc: Exception, package: str, name: str) -> PluginError:
    first_line = (str(exc).strip().splitlines() or [""])[0]
    message = f"{what} ({type(exc).__name__}{': ' + first_line if first_line else ''}) - {TRACEBACK_ENV}=1 or --traceback shows the traceback"
    return PluginError(Problem(message, field="backbone.name", details="".join(traceback.format_exception(exc))), exc,
                       package, "backbone", name)
