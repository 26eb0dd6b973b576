"""User-facing errors: each problem names the file, line, field and what to do.

The CLI prints every problem of a `UserError` on its own line and exits with status 2,
without a traceback. Code anywhere in stylekit raises `UserError` for bad input
(recipes, images, plugins, command lines); anything else is a bug and keeps its traceback.
"""

from __future__ import annotations

import difflib
import os
import dataclasses
from dataclasses import dataclass
from typing import Iterable


@dataclass(frozen=True)
class Problem:
    message: str
    file: str | None = None
    line: int | None = None
    field: str | None = None
    #: The full traceback of the exception behind the problem, where there was one (a plugin
    #: that raised): printed only with `--traceback` or STYLEKIT_TRACEBACK=1.
    details: str | None = dataclasses.field(default=None, compare=False, repr=False)

    def __str__(self) -> str:
        where = ""
        if self.file:
            where = f"{self.file}:{self.line}: " if self.line else f"{self.file}: "
        field = f"{self.field}: " if self.field else ""
        return one_line(f"{where}{field}{self.message}")


def one_line(text: str) -> str:
    """`text` with line breaks and other unprintable characters escaped (as \\n, \\x85),
    so that one problem is always one line, whatever a recipe's keys or values hold."""
    return "".join(ch if ch.isprintable() else ch.encode("unicode_escape").decode("ascii") for ch in text)


class UserError(Exception):
    """Bad input from the user; carries one or more problems, all reported at once."""

    def __init__(self, problems: Problem | str | Iterable[Problem]):
        if isinstance(problems, str):
            problems = [Problem(problems)]
        elif isinstance(problems, Problem):
            problems = [problems]
        self.problems = list(problems)
        super().__init__("\n".join(str(p) for p in self.problems))


def did_you_mean(name: str, choices: Iterable[str]) -> str:
    """' - did you mean 'x'?' for the closest choice, or the list of choices."""
    choices = sorted(choices)
    close = difflib.get_close_matches(name, choices, n=1, cutoff=0.6)
    if close:
        return f" - did you mean '{close[0]}'?"
    return f" - choose one of: {', '.join(choices)}" if choices else ""


class RunFailed(Exception):
    """A run that could not produce its image: it diverged, a plugin's code raised, or the
    output could not be written. The CLI prints the message (which says what was kept, and
    where) and exits with status 3; unlike `UserError`, the recipe itself may be fine."""

    exit_status = 3


class PluginError(RunFailed):
    """A plugin's code failed during a run: a bug in the plugin (or params it does not
    handle), not bad input. `original` is the exception it raised (also `__cause__`; None
    where stylekit's check of its results found the fault, e.g. a layer it does not produce),
    `package` the plugin package, `kind` and `component` the component's kind and name
    (`loss`, `edges`), and `problem` the message at the recipe's file, line and entry
    (`loss[2]`), with the traceback in `problem.details`. A plugin that means to reject
    its input raises `UserError` instead, which stays one."""

    def __init__(self, problem: Problem, original: BaseException | None, package: str, kind: str, component: str):
        super().__init__(str(problem))
        self.problem, self.original = problem, original
        self.package, self.kind, self.component = package, kind, component
        self.__cause__ = original


#: Set (to anything but 0/false/no) to see the traceback behind a message about a plugin.
TRACEBACK_ENV = "STYLEKIT_TRACEBACK"


def tracebacks_wanted(env: dict[str, str] | None = None) -> bool:
    value = (env if env is not None else os.environ).get(TRACEBACK_ENV, "")
    return value.strip().lower() not in ("", "0", "false", "no")
