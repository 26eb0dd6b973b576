"""What `stylekit plugins` shows: every plugin, its package and version, its components,
and each component's params with types, constraints, defaults and descriptions; and the
plugins that failed to load, with what went wrong."""

from __future__ import annotations

from stylekit.plugins.fielddoc import field_rows, row_text
from stylekit.plugins.registry import Registry


def params_table(model) -> list[dict]:
    return field_rows(model)


def listing(registry: Registry) -> list[dict]:
    out = []
    for plugin in registry.plugins:
        components = []
        for kind, named in registry.components.items():
            for name, entry in sorted(named.items()):
                if entry.plugin == plugin:
                    components.append({"kind": kind, "name": name, "summary": entry.cls.describe(),
                                       "params": params_table(entry.cls.Params)})
        out.append({"plugin": plugin.name, "package": plugin.package, "version": plugin.version, "components": components})
    for broken in registry.broken:
        out.append({"plugin": broken.plugin.name, "package": broken.plugin.package, "version": broken.plugin.version,
                    "components": [], "error": broken.error})
    return out


def render_text(table: list[dict]) -> str:
    lines = []
    for plugin in table:
        if plugin.get("error"):
            lines.append(f"{plugin['package']} {plugin['version']} (plugin '{plugin['plugin']}'): BROKEN, {plugin['error']}")
            continue
        lines.append(f"{plugin['package']} {plugin['version']} (plugin '{plugin['plugin']}')")
        for c in plugin["components"]:
            lines.append(f"  {c['kind']:<9} {c['name']:<14} {c['summary']}")
            for p in c["params"]:
                lines.append(f"  {'':<9} {'':<14}   {row_text(p)}")
    return "\n".join(lines)
