"""Line numbers of keys in a TOML text, for error messages (tomllib keeps none).

A light scan, not a parser: it follows `[table]`, `[[array]]` headers and `key =` lines,
which is how recipes are written. Values spanning lines are skipped over safely because
only lines that look like a header or an assignment at the start are read.
"""

from __future__ import annotations

import re

HEADER = re.compile(r"^\s*(\[\[?)\s*([^\]]+?)\s*\]\]?\s*(#.*)?$")
ASSIGN = re.compile(r"^\s*([A-Za-z0-9_\-\.\"' ]+?)\s*=")

Path = tuple  # of str and int


def _split_key(key: str) -> list[str]:
    return [part.strip().strip("\"'") for part in key.split(".")]


def key_lines(text: str) -> dict[Path, int]:
    """Map every key path (('loss', 1, 'params', 'lr')) and table header to its line (1-based)."""
    lines: dict[Path, int] = {}
    array_index: dict[Path, int] = {}
    current: Path = ()
    for number, line in enumerate(text.splitlines(), 1):
        header = HEADER.match(line)
        if header:
            is_array = header.group(1) == "[["
            path: Path = ()
            parts = _split_key(header.group(2))
            for i, part in enumerate(parts):
                path += (part,)
                last = i == len(parts) - 1
                if last and is_array:
                    array_index[path] = array_index.get(path, -1) + 1
                    path += (array_index[path],)
                elif path in array_index:
                    path += (array_index[path],)
            current = path
            lines.setdefault(current, number)
            continue
        assign = ASSIGN.match(line)
        if assign and not line.lstrip().startswith("#"):
            lines.setdefault(current + tuple(_split_key(assign.group(1))), number)
    return lines


def line_of(lines: dict[Path, int], loc: Path) -> int | None:
    """The line of `loc`, or of its nearest enclosing key or table that has one."""
    loc = tuple(loc)
    while loc:
        if loc in lines:
            return lines[loc]
        loc = loc[:-1]
    return None


def dotted(loc: Path) -> str:
    """('loss', 2, 'params', 'x') -> 'loss[2].params.x'."""
    out = ""
    for part in loc:
        out += f"[{part}]" if isinstance(part, int) else (f".{part}" if out else str(part))
    return out
