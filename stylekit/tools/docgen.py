"""Generates docs/hooks.md, docs/recipe.md and docs/components.md from the code, so the
references cannot drift.

    python -m stylekit.tools.docgen          # rewrite them
    python -m stylekit.tools.docgen --check  # exit 1 if one is out of date (the tests do this)
"""

from __future__ import annotations

import inspect
import sys
from dataclasses import is_dataclass
from pathlib import Path

from pydantic import BaseModel

import stylekit.contract
from stylekit.contract import components, hookspecs
from stylekit.recipe import schema
from stylekit.plugins.fielddoc import field_rows

DOCS = Path(__file__).resolve().parents[2] / "docs"


def hooks_markdown() -> str:
    lines = ["# Hook reference", "",
             "Generated from `stylekit/contract/hookspecs.py` by `python -m stylekit.tools.docgen`; do not edit by hand.", "",
             inspect.getdoc(hookspecs).strip(), ""]
    for name in hookspecs.HOOK_KINDS:
        func = getattr(hookspecs, name)
        lines += [f"## `{name}{str(inspect.signature(func)).replace(chr(39), '')}`", "", inspect.getdoc(func).strip(), ""]
    return "\n".join(lines)


def _fields(model: type[BaseModel], prefix: str) -> list[str]:
    rows = []
    for row, field in zip(field_rows(model), model.model_fields.values()):
        annotation = field.annotation
        nested = _nested_model(annotation)
        key = f"{prefix}{row['name']}"
        if nested is not None:
            rows += _fields(nested, f"{key}[]." if _is_list(annotation) else f"{key}.")
            continue
        rows.append(_table_row(key, row))
    return rows


def _table_row(key: str, row: dict) -> str:
    kind = row["type"] + (f" ({row['constraints']})" if row["constraints"] else "")
    default = "required" if row["required"] else repr(row["default"])
    cells = [f"`{key}`", f"`{kind}`", f"`{default}`", row["description"]]
    return "| " + " | ".join(cell.replace("|", "\\|") for cell in cells) + " |"  # a pipe would end the cell


def _nested_model(annotation):
    for candidate in (annotation, *getattr(annotation, "__args__", ())):
        if isinstance(candidate, type) and issubclass(candidate, BaseModel):
            return candidate
    return None


def _is_list(annotation) -> bool:
    return getattr(annotation, "__origin__", None) is list


def recipe_markdown() -> str:
    lines = ["# Recipe reference", "",
             "Generated from `stylekit/recipe/schema.py` (and `video_schema.py`) by `python -m stylekit.tools.docgen`; do not edit by hand.",
             "Paths are relative to the recipe file. Each component's `params` table is checked against",
             "that component's own model: `stylekit plugins` lists them with types and defaults.", "",
             "| field | type | default | meaning |", "|---|---|---|---|"]
    lines += _fields(schema.Recipe, "")
    return "\n".join(lines) + "\n" + EDITORS


EDITORS = """
## Checked as you type, wherever a recipe is

Editors built on taplo (Even Better TOML in VS Code, and others) and `taplo check` check a
recipe against `stylekit schema`'s JSON Schema: misspelled fields, component names, params
and layers are underlined, and each field's description shows on hover. They find the schema
in one of two ways:

- a recipe's first line `#:schema PATH`, relative to the recipe. The shipped recipes start
  with `#:schema ./recipe.schema.json`, which names `recipes/recipe.schema.json`; a recipe
  copied elsewhere keeps the line, which then names nothing, and is not checked (silently);
- a `.taplo.toml` in the folder taplo runs in, or at the root of the folder the editor
  opens, whose `[[rule]]` names the recipes (a glob, relative to that file) and the schema.
  The repository's own `.taplo.toml` associates `recipes/*.toml`.

For recipes anywhere else, `stylekit schema --taplo DIR` writes both into their folder:
`DIR/recipe.schema.json` (the name the copied recipes' `#:schema` line looks for, so they are
checked again) and `DIR/.taplo.toml` (for recipes without the line, when DIR is the folder
the editor opens). Run it again after installing a plugin, so that its components are known.
It replaces only files that stylekit wrote: a `.taplo.toml` of your own is left as it is
(exit status 2); add the rule to it yourself:

```toml
[[rule]]
include = ["my-recipes/*.toml"]
schema = { path = "my-recipes/recipe.schema.json" }
```

A recipe kept alone can also name the schema by an absolute path or a URL
(`#:schema /home/me/stylekit/recipe.schema.json`).
"""


#: The classes a plugin subclasses, calls or receives, in the order the reference shows them.
CONTRACT_CLASSES = ("Component", "Params", "Backbone", "SequentialBackbone", "LossTerm", "Targets", "Optimizer", "BatchedStepper",
                    "Scheduler", "FlowProvider", "FramePair")


def contract_members(cls: type) -> list[tuple[str, str]]:
    """(heading, documentation) of each member `cls` itself defines that a plugin may
    implement or call: its methods (with signatures) and its documented class attributes."""
    members = []
    annotations = cls.__dict__.get("__annotations__", {})
    names = [name for name in cls.__dict__ if name == "__init__" or not name.startswith("_")]
    names += [name for name in annotations if name not in names and not name.startswith("_")]
    for name in names:
        # `kind` is documented once, on Component; a dataclass's fields in its docstring.
        if name in ("model_config", "Params") or (name == "kind" and cls is not components.Component) \
                or (is_dataclass(cls) and name in cls.__dataclass_fields__):
            continue
        value = inspect.getattr_static(cls, name, None)
        function = value.__func__ if isinstance(value, (classmethod, staticmethod)) else value
        if isinstance(value, property):
            members.append((f"`{name}` (property)", inspect.getdoc(value) or ""))
        elif inspect.isfunction(function):
            signature = str(inspect.signature(function)).replace("'", "")
            prefix = "classmethod " if isinstance(value, classmethod) else ""
            doc = inspect.getdoc(function) or ""
            if getattr(function, "__isabstractmethod__", False):
                doc = f"**Implement** (required). {doc}"
            members.append((f"{prefix}`{name}{signature}`", doc))
        else:
            annotation = str(annotations.get(name, ""))
            annotation = annotation.removeprefix("ClassVar[").removesuffix("]") if annotation.startswith("ClassVar[") else annotation
            shown = f"{name}: {annotation}" if annotation else name
            shown += f" = {_value_text(value)}" if name in cls.__dict__ else ""
            members.append((f"`{shown}`", _attribute_comment(cls, name)))
    return members


def _value_text(value) -> str:
    """repr, with sets sorted: their order changes with each process's string hashing."""
    if isinstance(value, (set, frozenset)):
        return f"{type(value).__name__}({{{', '.join(repr(item) for item in sorted(value))}}})"
    return repr(value)


def _attribute_comment(cls: type, name: str) -> str:
    """The `#:` comment lines above a class attribute in its class's source."""
    source = inspect.getsource(cls).splitlines()
    for i, line in enumerate(source):
        if line.strip().startswith((f"{name}:", f"{name} =")):
            notes = []
            j = i - 1
            while j >= 0 and source[j].strip().startswith("#:"):
                notes.insert(0, source[j].strip()[2:].strip())
                j -= 1
            return " ".join(notes)
    return ""


def components_markdown() -> str:
    lines = ["# Component reference", "",
             "Generated from `stylekit/contract/components.py`, `stylekit/contract/sequential.py` and "
             "`stylekit/contract/flow.py` by `python -m stylekit.tools.docgen`;",
             "do not edit by hand. The guide with worked examples is [plugins.md](plugins.md).", "",
             inspect.getdoc(components).strip(), ""]
    for class_name in CONTRACT_CLASSES:
        cls = getattr(stylekit.contract, class_name)
        bases = ", ".join(base.__name__ for base in cls.__bases__ if base is not object)
        lines += [f"## `stylekit.contract.{class_name}`" + (f" ({bases})" if bases else ""), "",
                  (inspect.getdoc(cls) or "").strip(), ""]
        for heading, doc in contract_members(cls):
            lines += [f"### {heading}", "", doc, ""]
    return "\n".join(lines).rstrip() + "\n"


GENERATED = {"hooks.md": hooks_markdown, "recipe.md": recipe_markdown, "components.md": components_markdown}


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
        print(f"out of date: {', '.join(stale)} - run python -m stylekit.tools.docgen", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
