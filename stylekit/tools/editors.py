"""`stylekit schema --taplo DIR`: the JSON Schema and a `.taplo.toml` beside a user's
recipes, so that editors built on taplo (Even Better TOML in VS Code, and others) and
`taplo check` check them wherever they are.

A recipe copied out of stylekit's recipes/ keeps its first line `#:schema
./recipe.schema.json`, a path relative to the recipe that no longer resolves, and taplo
then checks nothing, silently. Written under that same name in the recipe's folder, the
schema is found again; the `.taplo.toml` covers the recipes without such a line, for an
editor opened on the folder (taplo reads its configuration where it runs, or at the root
of the folder an editor opens). A recipe's own `#:schema` line comes before it.

Neither file replaces one that stylekit did not write.
"""

from __future__ import annotations

import json
from pathlib import Path

from stylekit.errors import Problem, UserError
from stylekit.files.images import write_text_atomic
from stylekit.tools.json_schema import DESCRIPTION

#: The name the shipped recipes' `#:schema ./recipe.schema.json` line gives the schema.
SCHEMA_NAME = "recipe.schema.json"
TAPLO_NAME = ".taplo.toml"
#: The first line of a `.taplo.toml` that stylekit wrote: how it knows the file is its own.
TAPLO_MARK = "# Written by `stylekit schema --taplo`"


def taplo_config() -> str:
    """The `.taplo.toml` for a folder of recipes: its *.toml checked against the schema
    beside them (taplo reads both paths relative to the .taplo.toml's folder)."""
    return f"""{TAPLO_MARK}, which may write it again: keep your changes elsewhere.
# Editors built on taplo (Even Better TOML in VS Code, and others) and `taplo check` check
# the recipes in this folder against {SCHEMA_NAME} beside them: misspelled fields and
# component names are underlined, and descriptions show on hover. taplo reads this file
# where it runs, or at the root of the folder an editor opens; a recipe's own first line
# `#:schema PATH` (relative to the recipe) comes before it.

[[rule]]
include = ["*.toml"]
exclude = ["{TAPLO_NAME}", "taplo.toml"]
schema = {{ path = "{SCHEMA_NAME}" }}
"""


def written_by_stylekit(path: Path) -> bool:
    """Whether `path` holds a schema or a `.taplo.toml` that stylekit wrote (and may replace)."""
    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError):
        return False
    if path.name == TAPLO_NAME:
        return text.startswith(TAPLO_MARK)
    try:
        return json.loads(text).get("description") == DESCRIPTION
    except (ValueError, AttributeError):  # not JSON, or JSON that is no object
        return False


def replace_problems(paths: list[Path], flag: str) -> list[Problem]:
    """Each of `paths` that a write would destroy: a folder, or a file stylekit did not write."""
    problems = []
    for path in paths:
        if path.is_dir():
            problems.append(Problem(f"{path} is a folder - move it away, or give another folder", field=flag))
        elif (path.exists() or path.is_symlink()) and not written_by_stylekit(path):
            problems.append(Problem(f"{path} is a file that stylekit did not write, which this would replace - "
                                    "move it away, or give another folder", field=flag))
    return problems


def write_for_editors(folder: Path, schema: str, flag: str) -> list[Path]:
    """`schema` (the rendered JSON Schema) and the `.taplo.toml` written into `folder`, which
    must exist; nothing is written unless both can be. Returns the paths written. `flag`
    names the option in messages (`--taplo my-recipes`)."""
    if not folder.is_dir():
        what = "is a file" if folder.exists() else "does not exist"
        raise UserError(Problem(f"{folder} {what} - give the folder your recipes are in", field=flag))
    paths = [folder / SCHEMA_NAME, folder / TAPLO_NAME]
    problems = replace_problems(paths, flag)
    if problems:
        raise UserError(problems)
    for path, text in zip(paths, (schema, taplo_config())):
        write_text_atomic(text, path)
    return paths
