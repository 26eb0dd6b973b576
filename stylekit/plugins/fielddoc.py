"""Pydantic fields as a reader wants them: a readable type, its constraints, the default and
the `Field(description=...)`. One convention for the recipe schema and for components'
params, used by `stylekit plugins` and by the generated references.

`list[Annotated[int, Gt(gt=0)]]` reads `list[int > 0]`; `Field(1.0, gt=0)` reads type
`float`, constraints `> 0`, default `1.0`.
"""

from __future__ import annotations

import types
from typing import Annotated, Any, Literal, Union, get_args, get_origin

from pydantic import BaseModel
from pydantic.fields import FieldInfo
from pydantic_core import PydanticUndefined

# annotated_types constraint attribute -> how it reads.
_BOUNDS = {"gt": "> {}", "ge": ">= {}", "lt": "< {}", "le": "<= {}", "multiple_of": "a multiple of {}",
           "min_length": "length >= {}", "max_length": "length <= {}", "pattern": "matching {!r}"}


def constraints(metadata: list[Any]) -> list[str]:
    """Readable constraints from a field's (or an Annotated type's) metadata."""
    found = []
    for item in metadata:
        if isinstance(item, FieldInfo):  # Annotated[int, Field(gt=0)]
            found += constraints(item.metadata)
            continue
        for attribute, template in _BOUNDS.items():
            value = getattr(item, attribute, None)
            if value is not None:
                found.append(template.format(value))
    return found


def type_text(annotation: Any) -> str:
    origin, args = get_origin(annotation), get_args(annotation)
    if origin is Annotated:
        base, *metadata = args
        limits = constraints(metadata)
        return f"{type_text(base)} {', '.join(limits)}" if limits else type_text(base)
    if origin is Literal:
        return " | ".join(repr(arg) for arg in args)
    if origin in (Union, types.UnionType):
        return " | ".join(type_text(arg) for arg in args)
    if annotation is type(None):
        return "None"
    if origin is not None:
        name = getattr(origin, "__name__", str(origin))
        return f"{name}[{', '.join(type_text(arg) for arg in args)}]" if args else name
    if isinstance(annotation, type):
        return annotation.__name__
    return str(annotation).replace("typing.", "")


def default_value(field: FieldInfo) -> Any:
    """The value a field takes when it is left out (None for a required field)."""
    if field.default_factory is not None:
        return field.default_factory()
    return None if field.default is PydanticUndefined else field.default


def field_rows(model: type[BaseModel]) -> list[dict]:
    """One row per field of `model`: name, type, constraints, default, required, description."""
    rows = []
    for name, field in model.model_fields.items():
        default = default_value(field)
        if isinstance(default, BaseModel):
            default = default.model_dump(mode="json")
        rows.append({"name": name, "type": type_text(field.annotation), "constraints": ", ".join(constraints(field.metadata)),
                     "default": default, "required": field.is_required(), "description": field.description or ""})
    return rows


def row_text(row: dict) -> str:
    """`power: float > 0 (default 1.0) - exponent on the edge magnitude`."""
    kind = row["type"] + (f" {row['constraints']}" if row["constraints"] else "")
    default = "required" if row["required"] else f"default {row['default']!r}"
    description = f" - {row['description']}" if row["description"] else ""
    return f"{row['name']}: {kind} ({default}){description}"
