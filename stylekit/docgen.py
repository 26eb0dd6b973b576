"""Generates docs/hooks.md and docs/recipe.md from the code, so the references cannot drift.

    python -m stylekit.docgen          # rewrite both files
    python -m stylekit.docgen --check  # exit 1 if either is out of date (the tests do this)
"""

from __future__ import annotations

import inspect
import sys
import types
from typing import Annotated, Literal, Union, get_args, get_origin
from pathlib import Path

from pydantic import BaseModel
from pydantic_core import PydanticUndefined

from . import hookspecs, schema

DOCS = Path(__file__).resolve().parent.parent / "docs"


def hooks_markdown() -> str:
    lines = ["# Hook reference", "",
             "Generated from `stylekit/hookspecs.py` by `python -m stylekit.docgen`; do not edit by hand.", "",
             inspect.getdoc(hookspecs).strip(), ""]
    for name in hookspecs.HOOK_KINDS:
        func = getattr(hookspecs, name)
        lines += [f"## `{name}{str(inspect.signature(func)).replace(chr(39), '')}`", "", inspect.getdoc(func).strip(), ""]
    return "\n".join(lines)


def _fields(model: type[BaseModel], prefix: str) -> list[str]:
    rows = []
    for name, field in model.model_fields.items():
        annotation = field.annotation
        nested = _nested_model(annotation)
        key = f"{prefix}{name}"
        if nested is not None:
            rows += _fields(nested, f"{key}[]." if _is_list(annotation) else f"{key}.")
            continue
        default = "required" if field.is_required() else repr(field.default if field.default is not PydanticUndefined else None)
        type_name = _type_name(annotation).replace("|", "\\|")  # a pipe would end the table cell
        rows.append(f"| `{key}` | `{type_name}` | `{default}` | {_comment(model, name)} |")
    return rows


def _type_name(annotation) -> str:
    """The annotation as a reader writes it: constraints (Annotated[...]) are left out; the
    field's comment says them."""
    origin, args = get_origin(annotation), get_args(annotation)
    if origin is Annotated:
        return _type_name(args[0])
    if origin in (Union, types.UnionType):
        return " | ".join(_type_name(arg) for arg in args)
    if origin is Literal:
        return f"Literal[{', '.join(repr(arg) for arg in args)}]"
    if origin is not None:
        return f"{getattr(origin, '__name__', str(origin))}[{', '.join(_type_name(arg) for arg in args)}]"
    if annotation is type(None):
        return "None"
    return annotation.__name__ if isinstance(annotation, type) else str(annotation).replace("typing.", "")


def _nested_model(annotation):
    for candidate in (annotation, *getattr(annotation, "__args__", ())):
        if isinstance(candidate, type) and issubclass(candidate, BaseModel):
            return candidate
    return None


def _is_list(annotation) -> bool:
    return getattr(annotation, "__origin__", None) is list


def _comment(model: type[BaseModel], field: str) -> str:
    """The `#:` comment lines above a field in its class's source."""
    try:
        source = inspect.getsource(model).splitlines()
    except OSError:
        return ""
    for i, line in enumerate(source):
        if line.strip().startswith(f"{field}:"):
            notes = []
            j = i - 1
            while j >= 0 and source[j].strip().startswith("#:"):
                notes.insert(0, source[j].strip()[2:].strip())
                j -= 1
            return " ".join(notes)
    return ""


def recipe_markdown() -> str:
    lines = ["# Recipe reference", "",
             "Generated from `stylekit/schema.py` by `python -m stylekit.docgen`; do not edit by hand.",
             "Paths are relative to the recipe file. Each component's `params` table is checked against",
             "that component's own model: `stylekit plugins` lists them with types and defaults.", "",
             "| field | type | default | meaning |", "|---|---|---|---|"]
    lines += _fields(schema.Recipe, "")
    return "\n".join(lines) + "\n"


GENERATED = {"hooks.md": hooks_markdown, "recipe.md": recipe_markdown}


def main(argv: list[str]) -> int:
    stale = []
    for name, make in GENERATED.items():
        path = DOCS / name
        text = make()
        if "--check" in argv:
            if not path.exists() or path.read_text(encoding="utf-8") != text:
                stale.append(name)
        else:
            path.parent.mkdir(exist_ok=True)
            path.write_text(text, encoding="utf-8")
    if stale:
        print(f"out of date: {', '.join(stale)} - run python -m stylekit.docgen", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
