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


def _limits(metadata: list[Any]) -> list[tuple[str, Any]]:
    """(annotated_types attribute, value) of each constraint in a field's metadata."""
    found = []
    for item in metadata:
        if isinstance(item, FieldInfo):  # Annotated[int, Field(gt=0)]
            found += _limits(item.metadata)
            continue
        found += [(attribute, getattr(item, attribute)) for attribute in _BOUNDS if getattr(item, attribute, None) is not None]
    return found


def constraints(metadata: list[Any]) -> list[str]:
    """Readable constraints from a field's (or an Annotated type's) metadata."""
    return [_BOUNDS[attribute].format(value) for attribute, value in _limits(metadata)]


def inner_constraints(metadata: list[Any]) -> str:
    """The constraints of a type inside another (a tuple's element), without the commas that
    would read as more elements: a lower and an upper bound as an interval (`in [0, 1)`),
    the rest joined with `and`."""
    limits = _limits(metadata)
    found = dict(limits)
    lower = next((key for key in ("gt", "ge") if key in found), None)
    upper = next((key for key in ("lt", "le") if key in found), None)
    parts = []
    if lower and upper:
        parts.append(f"in {'(' if lower == 'gt' else '['}{found[lower]}, {found[upper]}{')' if upper == 'lt' else ']'}")
        limits = [(key, value) for key, value in limits if key not in (lower, upper)]
    return " and ".join(parts + [_BOUNDS[key].format(value) for key, value in limits])


def type_text(annotation: Any, inner: bool = False) -> str:
    """`annotation` as a reader wants it; `inner`: inside another type, where constraints are
    written without commas (`tuple[float in [0, 1), float in [0, 1)]`)."""
    origin, args = get_origin(annotation), get_args(annotation)
    if origin is Annotated:
        base, *metadata = args
        limits = inner_constraints(metadata) if inner else ", ".join(constraints(metadata))
        return f"{type_text(base, inner)} {limits}" if limits else type_text(base, inner)
    if origin is Literal:
        return " | ".join(repr(arg) for arg in args)
    if origin in (Union, types.UnionType):
        return " | ".join(type_text(arg, inner) for arg in args)
    if annotation is type(None):
        return "None"
    if annotation is Ellipsis:  # tuple[float, ...]
        return "..."
    if origin is not None:
        name = getattr(origin, "__name__", str(origin))
        return f"{name}[{', '.join(type_text(arg, inner=True) for arg in args)}]" if args else name
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
