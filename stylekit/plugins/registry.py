"""Plugin loading: entry points of the `stylekit` group into a registry of components.

Built-in components are entry points of the `stylekit` distribution itself and load exactly
as third-party ones do. `STYLEKIT_PLUGINS` chooses which external distributions load:
unset loads all, `none` loads only the built-ins, `stylekit-mrf,stylekit-foo` loads those.
"""

from __future__ import annotations

import os
import warnings
from dataclasses import dataclass, field
from importlib.metadata import distributions, entry_points
from typing import Any, Iterable

import pluggy

from stylekit.contract import hookspecs
from stylekit.contract.components import Component
from stylekit.contract.kinds import KINDS
from stylekit.plugins import conformance
from stylekit.errors import Problem, UserError, did_you_mean

PLUGINS_ENV = "STYLEKIT_PLUGINS"
BUILTIN_PACKAGE = "stylekit"


@dataclass(frozen=True)
class PluginInfo:
    name: str  # entry-point name
    package: str  # distribution that provides it
    version: str

    @property
    def label(self) -> str:
        return f"{self.package}:{self.name}"


@dataclass(frozen=True)
class Registered:
    cls: type[Component]
    plugin: PluginInfo


@dataclass(frozen=True)
class BrokenPlugin:
    """A plugin that could not be loaded. Left out, not fatal: commands that do not need it
    still work, and `stylekit plugins` lists it with `error`."""

    plugin: PluginInfo
    error: str  # what went wrong, e.g. "failed to import (ModuleNotFoundError: No module named 'x')"
    #: (kind, name) of each component it registered before it was found broken: a recipe
    #: that names one is told why it cannot have it.
    provides: frozenset[tuple[str, str]] = frozenset()

    def describe(self) -> str:
        return f"plugin '{self.plugin.name}' of package '{self.plugin.package}' {self.error}"


@dataclass
class Registry:
    plugins: list[PluginInfo] = field(default_factory=list)
    components: dict[str, dict[str, Registered]] = field(
        default_factory=lambda: {kind: {} for kind in KINDS}
    )
    #: Distributions that provide `stylekit` entry points but were left out by STYLEKIT_PLUGINS.
    skipped_packages: set[str] = field(default_factory=set)
    #: Plugins that failed to import or whose hooks pluggy rejected; their components are missing.
    broken: list[BrokenPlugin] = field(default_factory=list)
    #: Names in STYLEKIT_PLUGINS that no installed distribution with `stylekit` entry points
    #: has (as written), and the names of those distributions, to suggest from.
    unmatched: list[str] = field(default_factory=list)
    plugin_packages: set[str] = field(default_factory=set)

    def names(self, kind: str) -> list[str]:
        return sorted(self.components[kind])

    def get(self, kind: str, name: str) -> type[Component]:
        """The component class, or a UserError message (without location) with a suggestion."""
        try:
            return self.components[kind][name].cls
        except KeyError:
            for broken in self.broken:
                if (kind, name) in broken.provides:
                    raise UserError(f"{kind} '{name}' cannot be used: {broken.describe()}") from None
            suspects = "".join(f"; {b.describe()} - it may be the one that provides it" for b in self.broken)
            suspects += "".join(f"; a plugin may be left out: {line}" for line in unmatched_lines(self))
            raise UserError(f"unknown {kind} '{name}'{did_you_mean(name, self.components[kind])}{suspects}") from None

    def packages(self) -> set[str]:
        return {plugin.package for plugin in self.plugins}


def selected_packages(env: dict[str, str] | None = None) -> set[str] | None:
    """The external packages STYLEKIT_PLUGINS allows, or None for all of them."""
    names = selected_names(env)
    return None if names is None else {normalize_package(name) for name in names}


def selected_names(env: dict[str, str] | None = None) -> list[str] | None:
    """The package names in STYLEKIT_PLUGINS as written, or None when it allows all."""
    value = (env if env is not None else os.environ).get(PLUGINS_ENV)
    if value is None or value.strip() == "":
        return None
    if value.strip().lower() == "none":
        return []
    return [part.strip() for part in value.split(",") if part.strip()]


def normalize_package(package: str) -> str:
    return package.strip().lower().replace("_", "-")


def installed_distributions() -> set[str]:
    """The names of every installed distribution (plugins or not)."""
    return {dist.metadata["Name"] for dist in distributions() if dist.metadata["Name"]}


def broken_warnings(registry: Registry) -> list[str]:
    """One line per broken plugin, for commands that went on without it, and per name in
    STYLEKIT_PLUGINS that matched no plugin distribution."""
    return [f"warning: {_left_out(broken)}" for broken in registry.broken] + \
        [f"warning: {line}" for line in unmatched_lines(registry)]


def unmatched_lines(registry: Registry) -> list[str]:
    """What to say of each name in STYLEKIT_PLUGINS that no installed plugin distribution has:
    a misspelt name would otherwise leave the plugin out without a word."""
    return [f"{PLUGINS_ENV} names '{name}', but no installed distribution provides stylekit plugins under that name"
            f"{did_you_mean(name, registry.plugin_packages)}" for name in registry.unmatched]


class BrokenPluginWarning(UserWarning):
    """A plugin package that failed to load, left out of a recipe that did not need it."""


_warned: set[tuple[str, str, str]] = set()  # (package, entry point, error): each told once per process


def warn_broken(registry: Registry, stacklevel: int = 2) -> None:
    """`warnings.warn` for each broken plugin of `registry` not yet warned about, from Python
    (`stylekit.load`), where the command line prints `broken_warnings` instead. A recipe that
    names a component the plugin would have provided fails instead (`Registry.get`)."""
    for broken in registry.broken:
        key = (broken.plugin.package, broken.plugin.name, broken.error)
        if key not in _warned:
            _warned.add(key)
            warnings.warn(_left_out(broken), BrokenPluginWarning, stacklevel=stacklevel + 1)
    for line in unmatched_lines(registry):
        if ("", "", line) not in _warned:
            _warned.add(("", "", line))
            warnings.warn(line, UserWarning, stacklevel=stacklevel + 1)


def _left_out(broken: BrokenPlugin) -> str:
    return f"{broken.describe()} (left out; this recipe does not need it)"


def load_registry(env: dict[str, str] | None = None, extra: Iterable[tuple[Any, PluginInfo]] = ()) -> Registry:
    """Load every selected entry-point plugin (and `extra` plugin objects) into a registry."""
    allowed = selected_packages(env)
    plugins: list[tuple[Any, PluginInfo]] = []
    broken: list[BrokenPlugin] = []
    skipped: set[str] = set()
    found = sorted(entry_points(group=hookspecs.PROJECT), key=lambda ep: (ep.dist.name != BUILTIN_PACKAGE, ep.dist.name, ep.name))
    providers = {ep.dist.name for ep in found if ep.dist}
    for ep in found:
        package = ep.dist.name if ep.dist else "?"
        if package != BUILTIN_PACKAGE and allowed is not None and normalize_package(package) not in allowed:
            skipped.add(package)
            continue
        info = PluginInfo(ep.name, package, ep.dist.version if ep.dist else "?")
        try:
            plugins.append((ep.load(), info))
        except Exception as exc:  # a broken plugin must not take stylekit (or `stylekit plugins`) down
            broken.append(BrokenPlugin(info, f"failed to import ({type(exc).__name__}: {exc}) - reinstall or fix "
                                             f"{package}, or leave it out with {PLUGINS_ENV}=<the packages you want>"))
    registry = build_registry([*plugins, *extra])
    registry.skipped_packages = skipped
    registry.broken = broken + registry.broken
    registry.plugin_packages = providers
    provided = {normalize_package(name) for name in providers}
    registry.unmatched = [name for name in selected_names(env) or [] if normalize_package(name) not in provided]
    return registry


def build_registry(plugins: Iterable[tuple[Any, PluginInfo]]) -> Registry:
    """Register plugin objects with pluggy and collect their components, checking each."""
    manager = pluggy.PluginManager(hookspecs.PROJECT)
    manager.add_hookspecs(hookspecs)
    registry = Registry()
    owners: dict[int, PluginInfo] = {}
    problems: list[Problem] = []
    for plugin, info in plugins:
        try:
            manager.register(plugin, name=info.label)
        except pluggy.PluginValidationError as exc:  # nothing of it is registered: left out, like an import failure
            registry.broken.append(BrokenPlugin(info, f"has a bad hook: {exc}"))
            continue
        owners[id(plugin)] = info
        registry.plugins.append(info)
    problems += _unknown_hooks(manager)
    if problems:
        raise UserError(problems)

    # Each class is checked as its hook registers it; a plugin with a class that breaks the
    # contract is then left out whole, as if it had failed to import (its other components
    # with it: half a plugin is not what its package promises), and the rest registered.
    offered: list[tuple[str, type[Component], PluginInfo]] = []
    breaches: dict[PluginInfo, list[str]] = {}
    provided: dict[PluginInfo, set[tuple[str, str]]] = {}
    for hook_name, kind in hookspecs.HOOK_KINDS.items():
        for impl in getattr(manager.hook, hook_name).get_hookimpls():
            info = owners[id(impl.plugin)]
            register = _collect_into(offered, breaches, provided, kind, info)
            try:
                impl.function(**{arg: register for arg in impl.argnames})
            except Exception as exc:
                problems.append(Problem(f"plugin '{info.name}' of package '{info.package}' failed in {hook_name} ({type(exc).__name__}: {exc})"))
    for info, found in breaches.items():
        registry.broken.append(BrokenPlugin(info, f"breaks the contract: {'; '.join(found)}",
                                            frozenset(provided.get(info, ()))))
    registry.plugins = [info for info in registry.plugins if info not in breaches]
    for kind, cls, info in offered:
        if info in breaches:
            continue
        existing = registry.components[kind].get(cls.name)
        if existing is not None:
            problems.append(Problem(
                f"{kind} '{cls.name}' is registered twice: by plugin '{info.name}' of package '{info.package}' and by "
                f"plugin '{existing.plugin.name}' of package '{existing.plugin.package}' - uninstall one of them or "
                f"leave one out with {PLUGINS_ENV}"))
            continue
        registry.components[kind][cls.name] = Registered(cls, info)
    if problems:
        raise UserError(problems)
    return registry


def _unknown_hooks(manager: pluggy.PluginManager) -> list[Problem]:
    """Hook implementations whose name matches no hook spec (a typo like `register_loss`)."""
    problems = []
    for hook_name in dir(manager.hook):
        hook = getattr(manager.hook, hook_name)
        if hook_name.startswith("_") or not isinstance(hook, pluggy.HookCaller) or hook.spec is not None:
            continue
        for impl in hook.get_hookimpls():
            problems.append(Problem(
                f"plugin '{impl.plugin_name}' implements unknown hook '{hook_name}'"
                f"{did_you_mean(hook_name, hookspecs.HOOK_KINDS)}"))
    return problems


def _collect_into(offered: list, breaches: dict[PluginInfo, list[str]], provided: dict[PluginInfo, set],
                  kind: str, info: PluginInfo):
    """The `register` callback a plugin's hook gets: each class checked against the contract
    of `kind` (`stylekit.plugins.conformance`), then kept in `offered`, or its breaches in
    `breaches` under its plugin; `provided` notes the names each plugin registers."""

    def register(cls: type) -> None:
        name = getattr(cls, "name", None)
        if isinstance(name, str):
            provided.setdefault(info, set()).add((kind, name))
        found = conformance.breaches(cls, kind)
        if found:
            breaches.setdefault(info, []).extend(found)
        else:
            offered.append((kind, cls, info))

    return register
