"""What `stylekit plugins` shows: every plugin, its package and version, its components,
and each component's params with types and defaults."""

from __future__ import annotations

from pydantic_core import PydanticUndefined

from .plugins import Registry


def params_table(model) -> list[dict]:
    rows = []
    for name, field in model.model_fields.items():
        default = None if field.default is PydanticUndefined else field.default
        rows.append({"name": name, "type": _type_name(field.annotation), "default": default,
                     "required": field.is_required(), "description": field.description or ""})
    return rows


def _type_name(annotation) -> str:
    text = getattr(annotation, "__name__", None) if not getattr(annotation, "__args__", None) else None
    return text or str(annotation).replace("typing.", "")


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
    return out


def render_text(table: list[dict]) -> str:
    lines = []
    for plugin in table:
        lines.append(f"{plugin['package']} {plugin['version']} (plugin '{plugin['plugin']}')")
        for c in plugin["components"]:
            lines.append(f"  {c['kind']:<9} {c['name']:<14} {c['summary']}")
            for p in c["params"]:
                default = "required" if p["required"] else f"default {p['default']!r}"
                lines.append(f"  {'':<9} {'':<14}   {p['name']}: {p['type']} ({default})")
    return "\n".join(lines)
