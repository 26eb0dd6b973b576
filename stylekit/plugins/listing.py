"""What `stylekit plugins` shows: every plugin, its package and version, its components,
and each component's params with types, constraints, defaults and descriptions; and the
plugins that failed to load, with what went wrong."""

from __future__ import annotations

import textwrap

from stylekit.plugins.fielddoc import field_rows, row_text
from stylekit.plugins.registry import Registry


def params_table(model) -> list[dict]:
    return field_rows(model)


def offered_layers(cls) -> tuple[str, ...] | None:
    """The layers a backbone class offers with its default params (`layer_names_for`, no
    weights loaded): what a recipe that leaves the backbone's params alone may name. None
    where that cannot be known so: a Params with a required field, or a class that fails
    to answer (a plugin's bug, which a run reports; listing it must not fail)."""
    try:
        return tuple(cls.layer_names_for(cls.Params()))
    except Exception:  # noqa: BLE001 - see above: whatever the plugin raised, the listing goes on
        return None


def listing(registry: Registry) -> list[dict]:
    out = []
    for plugin in registry.plugins:
        components = []
        for kind, named in registry.components.items():
            for name, entry in sorted(named.items()):
                if entry.plugin == plugin:
                    component = {"kind": kind, "name": name, "summary": entry.cls.describe(),
                                 "params": params_table(entry.cls.Params)}
                    if kind == "backbone":
                        layers = offered_layers(entry.cls)
                        component["layers"] = None if layers is None else list(layers)
                    components.append(component)
        out.append({"plugin": plugin.name, "package": plugin.package, "version": plugin.version, "components": components})
    for broken in registry.broken:
        out.append({"plugin": broken.plugin.name, "package": broken.plugin.package, "version": broken.plugin.version,
                    "components": [], "error": broken.error})
    return out


#: The names' column: as wide as the longest name, from NAME_COLUMN up to NAME_COLUMN_MAX; a
#: longer name has its summary on the next line, so that the columns stay where they are.
NAME_COLUMN, NAME_COLUMN_MAX = 14, 24


def render_text(table: list[dict]) -> str:
    names = [c["name"] for plugin in table for c in plugin["components"]]
    width = min(max([NAME_COLUMN, *map(len, names)]), NAME_COLUMN_MAX)
    lines = []
    for plugin in table:
        if plugin.get("error"):
            lines.append(f"{plugin['package']} {plugin['version']} (plugin '{plugin['plugin']}'): BROKEN, {plugin['error']}")
            continue
        lines.append(f"{plugin['package']} {plugin['version']} (plugin '{plugin['plugin']}')")
        for c in plugin["components"]:
            if len(c["name"]) > width:
                lines += [f"  {c['kind']:<9} {c['name']}", f"  {'':<9} {'':<{width}} {c['summary']}"]
            else:
                lines.append(f"  {c['kind']:<9} {c['name']:<{width}} {c['summary']}")
            for p in c["params"]:
                lines.append(f"  {'':<9} {'':<{width}}   {row_text(p)}")
            if c.get("layers"):
                indent = f"  {'':<9} {'':<{width}}   "
                # A backbone offers dozens of layers: wrapped for a 100-column terminal.
                lines += textwrap.wrap(f"layers (default params): {', '.join(c['layers'])}", 100,
                                       initial_indent=indent, subsequent_indent=indent + "  ")
    return "\n".join(lines)

