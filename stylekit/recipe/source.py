"""Recipe text read as a TOML document: a file read within its size limit, parsed with
its depth limited, or a recipe given as text or a dict; each failure one problem with the
file and line."""

from __future__ import annotations

import copy
import os
import re
import sys
from pathlib import Path

from stylekit.errors import Problem, UserError
from stylekit.files.reading import RECIPE_LIMIT, FileTooLarge, NotRegularFile, read_bytes
from stylekit.recipe import nesting
from stylekit.recipe.tomlpos import dotted, key_lines, line_of

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover
    import tomli as tomllib


def read_toml(path: Path) -> tuple[dict, str]:
    try:
        text = read_bytes(path, RECIPE_LIMIT, "recipe").decode("utf-8-sig")  # -sig: editors that save a byte-order mark
    except FileNotFoundError:
        raise UserError(Problem("recipe file not found - check the path", file=str(path))) from None
    except IsADirectoryError:
        raise UserError(Problem("this is a folder, not a recipe file - give the .toml file", file=str(path))) from None
    except NotRegularFile as exc:
        raise UserError(Problem(f"{exc.strerror} - give the recipe's .toml file", file=str(path))) from None
    except FileTooLarge as exc:
        raise UserError(Problem(f"{exc.strerror} - recipes are a few KB; give the .toml file", file=str(path))) from None
    except UnicodeDecodeError as exc:
        raise UserError(Problem(f"not UTF-8 text (byte {exc.start}) - save the recipe as UTF-8", file=str(path))) from None
    except (OSError, ValueError) as exc:
        raise UserError(Problem(f"cannot read the recipe ({exc})", file=str(path))) from None
    return parse_toml(text, str(path)), text


def parse_toml(text: str, label: str) -> dict:
    try:
        data = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        found = re.search(r"\s*\(at line (\d+), column \d+\)", str(exc))
        line = int(found.group(1)) if found else None
        message = str(exc).replace(found.group(0), "") if found else str(exc)
        raise UserError(Problem(f"TOML syntax error: {message} - fix the syntax at this line", file=label, line=line)) from None
    except RecursionError:  # arrays or inline tables nested some hundreds deep
        raise UserError(Problem(nesting.TOO_DEEP, file=label, line=nesting.first_line(text, _recurses))) from None
    deep = nesting.deepest_path(data)
    if deep is not None:  # dotted keys and headers: tomllib makes them without recursion, others would not read them
        raise UserError(Problem(nesting.TOO_DEEP, file=label, line=line_of(key_lines(text), deep),
                                field=shortened_loc(deep)))
    return data


def _recurses(text: str) -> bool:
    try:
        tomllib.loads(text)
    except RecursionError:
        return True
    except tomllib.TOMLDecodeError:
        pass
    return False


def shortened_loc(loc: tuple, parts: int = 4) -> str:
    """A deep field's path for messages: its first few parts."""
    return dotted(loc[:parts]) + ("..." if len(loc) > parts else "")


def read_source(source: str | Path | dict, base: Path | None = None) -> tuple[dict, str, str, Path]:
    """(data, text, label, base folder) of a recipe given as a file path, a TOML text or a
    dict. A str is TOML text when it has a line break or an `=`, else a path."""
    if isinstance(source, dict):
        deep = nesting.deepest_path(source)
        if deep is not None:  # before deepcopy, which recurses
            raise UserError(Problem(nesting.TOO_DEEP, file="<dict>", field=shortened_loc(deep)))
        return copy.deepcopy(source), "", "<dict>", base or Path.cwd()
    if isinstance(source, str) and ("\n" in source or "=" in source):
        return parse_toml(source, "<string>"), source, "<string>", base or Path.cwd()
    if not isinstance(source, (str, os.PathLike)) or isinstance(os.fspath(source), bytes):
        raise UserError(f"a recipe must be a file path, a TOML text or a dict, not {type(source).__name__}")
    if "\0" in os.fspath(source):
        raise UserError(f"a recipe path cannot contain a NUL character (\\0) (got {os.fspath(source)!r})")
    path = Path(source)
    data, text = read_toml(path)
    return data, text, str(path), base or path.parent
