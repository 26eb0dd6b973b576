"""Values a TOML recipe gives as text where a number or a boolean belongs.

TOML has real types, so `steps = "10"` is a mistake (quotes too many, or a value pasted from
elsewhere) that pydantic's lax mode would quietly read as 10. Such a value is reported once,
with what to write instead. Only the recipe file's own values are held to this: an override
is typed by whoever gave it (`--set` reads its value as TOML, so `--set run.steps=10` is
already a number; Python callers give Python values), and keeps the lax reading. An
integer where a float belongs (`lr = 1`) is a number like any other, in strict mode too.

A boolean where a number belongs (`steps = true`, which pydantic reads as 1 step) and a
number where a boolean belongs (`clamp = 0`) are refused wherever they come from, overrides
and Python callers included: neither is a way to write the other.
"""

from __future__ import annotations

import json
import math
import sys
from typing import Any

from pydantic import BaseModel, ValidationError

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover
    import tomli as tomllib

#: pydantic's strict-mode errors for a value of the wrong type -> what the field wants.
_WANTED = {"int_type": "an integer", "float_type": "a number", "bool_type": "true or false"}
_WRITE = {"int_type": "a whole number", "float_type": "a number", "bool_type": "true or false"}


def text_for_typed_values(model: type[BaseModel], data: Any) -> list[tuple[tuple, str, bool]]:
    """(pydantic's loc, message, whether the value is text) of every text value in `data`
    where `model` wants a number or a boolean, and of every boolean where it wants a number
    or number where it wants a boolean. Other strict-mode differences (a list for a tuple,
    10.0 for an integer) are not reported: the lax reading of those loses nothing the user
    wrote."""
    try:
        # As JSON: a Python list given for a tuple would fail whole in strict mode, hiding a
        # quoted number inside it (`betas = ["0.5", 0.999]`); JSON arrays are read element by element.
        model.model_validate_json(json.dumps(data, default=str), strict=True)
    except ValidationError as exc:
        found = []
        for err in exc.errors():
            kind, value = err["type"], err["input"]
            if kind not in _WANTED:
                continue
            if isinstance(value, str):
                found.append((tuple(err["loc"]), _message(kind, value), True))
            elif isinstance(value, bool) != (kind == "bool_type") and isinstance(value, (bool, int, float)):
                found.append((tuple(err["loc"]), _other_type(kind, value), False))
        return found
    return []


def _other_type(kind: str, value: bool | int | float) -> str:
    if isinstance(value, bool):
        what = "a count" if kind == "int_type" else "a number"
        return f"expected {_WANTED[kind]}, not the boolean {json.dumps(value)} - a boolean is not {what}; write {_WRITE[kind]}"
    return f"expected true or false, not the number {value!r} - write true or false"


def _message(kind: str, text: str) -> str:
    advice = "remove the quotes" if _fits_unquoted(kind, text) else f"write {_WRITE[kind]}, without quotes"
    return f"expected {_WANTED[kind]}, not the text {json.dumps(text, ensure_ascii=False)} - {advice}"


def _fits_unquoted(kind: str, text: str) -> bool:
    """Whether `text` without its quotes is a TOML value of the kind wanted."""
    if "\n" in text or "\r" in text:
        return False
    try:
        value = tomllib.loads(f"v = {text}")
    except (tomllib.TOMLDecodeError, ValueError, RecursionError):  # RecursionError: "[[[[..." some hundreds deep
        return False
    if list(value) != ["v"]:
        return False
    value = value["v"]
    if kind == "bool_type":
        return isinstance(value, bool)
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        return False
    if kind == "int_type":
        return isinstance(value, int)
    try:
        return math.isfinite(value)
    except OverflowError:  # an integer past any float (1 followed by 400 zeros)
        return False
