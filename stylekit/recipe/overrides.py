"""Overrides of recipe fields, from the command line (`--set KEY=VALUE`, `--steps`, ...) or
from Python (`stylekit.load(recipe, overrides={"run.steps": 50})`).

An override is a key path (('optimizer', 'params', 'lr')) and a value. `Overrides` also
remembers where each was given, so that an error in an overridden value names it as the
user wrote it (`--set run.steps=0: run.steps: ...` on the command line,
`overrides['run.steps']: run.steps: ...` from Python) rather than a line of the recipe, and
which values are paths given relative to the current directory.
"""

from __future__ import annotations

import difflib
import re
import shlex
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable

from stylekit.errors import Problem, UserError, did_you_mean
from stylekit.recipe.nesting import TOO_DEEP, deepest_path
from stylekit.recipe.tomlpos import dotted

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover
    import tomli as tomllib

#: Recipe fields that hold file paths. Given in a recipe they are relative to the recipe's
#: folder; given on the command line, to the current directory (as `--content` is).
PATH_FIELDS = {("images", "content"), ("images", "style"), ("images", "style_masks"),
               ("images", "init"), ("output", "path"), ("backbone", "weights")}
#: Values of path fields that are names, not files.
NOT_PATHS = {("images", "init"): {"content", "style", "noise"}}

_PART = re.compile(r"^[A-Za-z_][A-Za-z0-9_\-]*$")
EXAMPLE = "e.g. --set optimizer.params.lr=0.5, --set loss.0.weight=2 or --set loss.gram.weight=2"


def shell_word(text: str) -> str:
    """`text` quoted as one would type it, for messages: bare when it has no spaces or quotes,
    else in the quotes that need no escapes."""
    if text and not any(ch.isspace() or ch in "'\"\\$`" for ch in text):
        return text
    if "'" not in text:
        return f"'{text}'"
    if not any(ch in "\"\\$`" for ch in text):
        return f'"{text}"'
    return shlex.quote(text)


@dataclass(frozen=True)
class OverrideSource:
    """Where overrides are given, for messages: how one is named from the text the user wrote
    (`--set run.steps=0`, `overrides['run.steps']`), and how a malformed key is written right."""

    name: Callable[[str], str]
    how: str


COMMAND_LINE = OverrideSource(lambda text: f"--set {shell_word(text)}", f"write KEY=VALUE, {EXAMPLE}")
PYTHON = OverrideSource(lambda key: f"overrides[{key!r}]",
                "write a dotted key, e.g. {'optimizer.params.lr': 0.5} or {'loss[0].weight': 2}")


class Overrides(dict):
    """key path -> value, plus `flags`: key path -> the command-line text it came from."""

    def __init__(self):
        super().__init__()
        self.flags: dict[tuple, str] = {}

    def add(self, key: tuple, value: Any, flag: str) -> None:
        self[key] = value
        self.flags[key] = flag

    @classmethod
    def of(cls, overrides) -> Overrides:
        """A copy of `overrides` (an `Overrides`, or any mapping of key paths), its flags kept,
        to add to without changing the caller's."""
        copied = cls()
        for key, value in (overrides or {}).items():
            copied.add(key, value, getattr(overrides, "flags", {}).get(key))
        return copied

    def flag_for(self, loc: tuple) -> str | None:
        """The flag that set `loc` or a table or list that contains it; None if from the file."""
        loc = tuple(loc)
        for key, flag in self.flags.items():
            if loc[: len(key)] == key:
                return flag
        return None


def parse_key(key: str, text: str, origin: OverrideSource = COMMAND_LINE) -> tuple:
    """'loss[0].params.lr' or 'loss.0.params.lr' -> ('loss', 0, 'params', 'lr'); a UserError
    naming `text` (what the user wrote, where `origin` says) if malformed. A name where a
    list is ('loss.gram.weight') is kept, for `apply_override` to find the entry so named."""
    def bad(why: str) -> UserError:
        return UserError(Problem(f"{origin.name(text)}: {why} - {origin.how}"))

    key = key.strip()
    if not key:
        raise bad("the key before '=' is empty")
    path: list = []
    for piece in key.split("."):
        found = re.fullmatch(r"([^\[\]]*)((?:\[[^\[\]]*\])*)", piece)
        if not found or (not found.group(1) and not path):
            raise bad(f"'{piece}' is not a key" if piece else "empty part between dots")
        name, indexes = found.group(1), found.group(2)
        if name.isdigit() and path:  # loss.0.weight, as the Python API takes it
            path.append(int(name))
        elif name:
            if not _PART.match(name):
                raise bad(f"'{name}' is not a field name")
            path.append(name)
        elif not indexes:
            raise bad("empty part between dots")
        for index in re.findall(r"\[([^\[\]]*)\]", indexes):
            if not index.isdigit():
                raise bad(f"list index '[{index}]' must be a number from 0")
            path.append(int(index))
    return tuple(path)


def parse_override(text: str) -> tuple[tuple, Any]:
    """'optimizer.params.lr=0.5' -> (('optimizer', 'params', 'lr'), 0.5); values are TOML,
    and a value that is not TOML (a bare word) is taken as a string."""
    if "=" not in text:
        raise UserError(Problem(f"{COMMAND_LINE.name(text)}: {COMMAND_LINE.how}"))
    key, value = text.split("=", 1)
    path = parse_key(key, text)
    try:
        parsed = tomllib.loads(f"v = {value.strip()}")["v"]
    except (tomllib.TOMLDecodeError, ValueError):
        parsed = value.strip()
    except RecursionError:  # arrays or inline tables nested some hundreds deep
        raise UserError(Problem(f"{COMMAND_LINE.name(text)}: {TOO_DEEP}")) from None
    if deepest_path(parsed, path) is not None:  # the key's parts count too
        raise UserError(Problem(f"{COMMAND_LINE.name(text)}: {TOO_DEEP}"))
    return path, parsed


def apply_override(data: dict, path: tuple, value: Any, flag: str | None = None) -> tuple:
    """Set `path` in the recipe's data to `value`, creating tables on the way, and return the
    path it was set at: a name where a list is (('loss', 'gram', 'weight')) picks the one
    entry of that name (('loss', 1, 'weight')). A UserError (naming `flag`) where the path
    runs through something that is not a table or list, or names no entry or several."""
    flag = flag or f"override {dotted(path)}"  # given to load_recipe without saying where from

    def fail(why: str) -> UserError:
        return UserError(Problem(f"{why}", file=flag))

    node: Any = data
    for i, part in enumerate(path):
        here, last = dotted(path[: i + 1]), i == len(path) - 1
        if isinstance(part, str) and isinstance(node, list):
            part = named_entry(node, path, i, fail)
            path = (*path[:i], part, *path[i + 1:])
            here = dotted(path[: i + 1])
        if isinstance(part, int):
            if not isinstance(node, list):
                raise fail(f"{dotted(path[:i]) or 'the recipe'} is not a list - remove the [{part}]")
            if part >= len(node):
                raise fail(f"there is no {here} in the recipe ({dotted(path[:i])} has {len(node)} entries)")
        elif not isinstance(node, dict):
            raise fail(f"{dotted(path[:i])} is a value ({node!r}), not a table - it has no field '{part}'")
        if last:
            node[part] = value
            return path
        nxt = path[i + 1]
        if isinstance(part, str) and part not in node:
            node[part] = [] if isinstance(nxt, int) else {}
        node = node[part]


def named_entry(entries: list, path: tuple, i: int, fail: Callable[[str], UserError]) -> int:
    """The index of the one table in `entries` (the list at path[:i]) whose name is path[i];
    a UserError where none or several are so named."""
    where, name = dotted(path[:i]), path[i]
    found = [j for j, entry in enumerate(entries) if isinstance(entry, dict) and entry.get("name") == name]
    if len(found) == 1:
        return found[0]
    if found:  # an index is the one way to tell them apart
        which = " and ".join(dotted((*path[:i], j)) for j in found)
        raise fail(f"{len(found)} entries of {where} are named '{name}' ({which}) - "
                   f"give the index instead, e.g. {dotted((*path[:i], found[0], *path[i + 1:]))}")
    names = [entry["name"] for entry in entries if isinstance(entry, dict) and isinstance(entry.get("name"), str)]
    if names:
        if difflib.get_close_matches(name, names, n=1, cutoff=0.6):  # a misspelt name
            raise fail(f"no entry of {where} is named '{name}'{did_you_mean(name, set(names))}")
        raise fail(f"no entry of {where} is named '{name}' - name one ({', '.join(names)}) or give its index, "
                   f"e.g. {dotted((*path[:i], names[0], *path[i:]))} or {dotted((*path[:i], 0, *path[i:]))}")
    raise fail(f"{where} is a list - index it, e.g. {dotted((*path[:i], 0, *path[i:]))}")


def with_cwd_paths(path: tuple, value: Any, cwd: Path | None = None) -> Any:
    """Make path-valued fields given on the command line absolute against the current
    directory, so that the recipe's folder does not apply to them; a whole table given at
    once (`--set images={content="a.png", style="b.png"}`) has its path fields made so too."""
    cwd = cwd or Path.cwd()
    if isinstance(value, dict):
        return {key: with_cwd_paths((*path, key), item, cwd) for key, item in value.items()}
    field = tuple(part for part in path if isinstance(part, str))
    if field not in PATH_FIELDS:
        return value

    def absolute(item):
        if not isinstance(item, str) or not item or item in NOT_PATHS.get(field, ()):
            return item
        if field == ("backbone", "weights") and not ("/" in item or "\\" in item or "." in item):
            return item  # a name the backbone knows (caffe, random), not a file
        try:
            given = Path(item).expanduser()
        except RuntimeError:  # ~user of no such user: a name like any other
            given = Path(item)
        try:
            return str((cwd / given).resolve())
        except (OSError, RuntimeError, ValueError):  # a loop of links, a NUL: the load check reports it
            return str(cwd / given)

    return [absolute(item) for item in value] if isinstance(value, list) else absolute(value)
