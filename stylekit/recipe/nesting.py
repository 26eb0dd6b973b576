"""How deep a recipe's tables and arrays nest, and a clear refusal past MAX_DEPTH.

tomllib parses nested arrays and inline tables by recursion, about three frames a level,
so text nested a few hundred deep ends in a RecursionError; dotted keys and table headers
it parses without recursion, but what reads the data afterwards (json, pydantic, copies)
recurses as tomllib does. A recipe needs a handful of levels (`loss[1].params.x` is four),
so anything past MAX_DEPTH is refused up front with the file and line, before any of that.
"""

from __future__ import annotations

from typing import Any, Callable

#: Far past the handful of levels a recipe uses (plugin params that take tables of tables
#: included), and far below the ~300 levels where Python's recursion limit is met.
MAX_DEPTH = 64

TOO_DEEP = (f"tables, arrays or dotted keys nested more than {MAX_DEPTH} levels deep - a recipe needs a few; "
            "flatten it")


def deepest_path(value: Any, prefix: tuple = ()) -> tuple | None:
    """The key path (keys and list indexes) of the first leaf of `value` more than MAX_DEPTH
    levels down, counting `prefix`; None if there is none. Walked without recursion."""
    stack = [(value, prefix)]
    while stack:
        node, path = stack.pop()
        if len(path) > MAX_DEPTH:
            while isinstance(node, (dict, list)) and node:  # on to a leaf: its path names the line
                key = next(iter(node)) if isinstance(node, dict) else 0
                node, path = node[key], (*path, key)
            return path
        if isinstance(node, dict):
            stack.extend((item, (*path, key)) for key, item in reversed(list(node.items())))
        elif isinstance(node, list):
            stack.extend((item, (*path, index)) for index, item in reversed(list(enumerate(node))))
    return None


def first_line(text: str, fails: Callable[[str], bool]) -> int | None:
    """The first line L (1-based) such that `fails(the text's first L lines)`, by bisection;
    `fails` must be false for a prefix before that line and true for any from it on (as a
    parser that meets a problem at that line is), and true for the whole text."""
    lines = text.splitlines(keepends=True)
    low, high = 1, len(lines)
    if not lines or not fails(text):
        return None
    while low < high:
        middle = (low + high) // 2
        if fails("".join(lines[:middle])):
            high = middle
        else:
            low = middle + 1
    return low
