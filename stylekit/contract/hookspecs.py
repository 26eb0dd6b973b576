"""The hooks a stylekit plugin implements.

A plugin is a module (or object) with functions decorated by `stylekit.hookimpl`, named
after the hooks below, listed under the `stylekit` entry-point group of its distribution:

    [project.entry-points.stylekit]
    mrf = "stylekit_mrf"

Every hook receives a `register` callback and calls it once per component class; stylekit
owns the collection, so a plugin never builds or returns lists. A hook implementation may
declare fewer arguments than the spec (pluggy passes only those it names).

Hooks are called once, when the plugin manager loads, in plugin load order; names are
global per kind, so registering a name that another plugin already registered is an error
that names both plugins.
"""

from __future__ import annotations

from typing import Callable

import pluggy

PROJECT = "stylekit"
hookspec = pluggy.HookspecMarker(PROJECT)
hookimpl = pluggy.HookimplMarker(PROJECT)


@hookspec
def register_backbones(register: Callable[[type], None]) -> None:
    """Register feature backbones.

    Called once at plugin load. Call `register(cls)` for each subclass of
    `stylekit.contract.components.Backbone`; `cls.name` is what a recipe's `backbone.name` says.
    Returns nothing.
    """


@hookspec
def register_losses(register: Callable[[type], None]) -> None:
    """Register loss terms.

    Called once at plugin load. Call `register(cls)` for each subclass of
    `stylekit.contract.components.LossTerm`; `cls.name` is what a recipe's `[[loss]] name` says.
    Returns nothing.
    """


@hookspec
def register_optimizers(register: Callable[[type], None]) -> None:
    """Register optimizers.

    Called once at plugin load. Call `register(cls)` for each subclass of
    `stylekit.contract.components.Optimizer`; `cls.name` is what a recipe's `optimizer.name` says.
    Returns nothing.
    """


@hookspec
def register_schedulers(register: Callable[[type], None]) -> None:
    """Register learning-rate schedulers.

    Called once at plugin load. Call `register(cls)` for each subclass of
    `stylekit.contract.components.Scheduler`; `cls.name` is what a recipe's `scheduler.name` says.
    Returns nothing.
    """


@hookspec
def register_flow_providers(register: Callable[[type], None]) -> None:
    """Register optical-flow providers (for `stylekit video`).

    Called once at plugin load. Call `register(cls)` for each subclass of
    `stylekit.contract.flow.FlowProvider`; `cls.name` is what a recipe's `flow.name` says.
    Returns nothing.
    """


#: Hook name -> component kind it registers.
HOOK_KINDS = {
    "register_backbones": "backbone",
    "register_losses": "loss",
    "register_optimizers": "optimizer",
    "register_schedulers": "scheduler",
    "register_flow_providers": "flow",
}
