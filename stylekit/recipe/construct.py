"""Components built once when a recipe is loaded, as a run builds them, so that the checks a
component makes in its `__init__` (its params against its layers, say) are reported by
`stylekit validate` and before any run, as a params error is: at the recipe's file and
line, the entry's field, and the component's package.

A component says what is wrong by raising `stylekit.errors.UserError` in `__init__`; a
`Problem` it gives a `field` (`params.patch_size`, `layers`) is placed at that field of its
entry, one without at the entry itself (`loss[2]`). Backbones are not built here: that
loads weights, and `stylekit.plugins.probe` reports theirs when the run builds them. Any
other exception is a bug in the plugin, left for the run to report as one (`PluginError`,
with its traceback).
"""

from __future__ import annotations

import re
from typing import Callable

from stylekit.errors import Problem, UserError
from stylekit.recipe.plan import Choice, LossChoice

_PART = re.compile(r"([^.\[\]]+)|\[(\d+)\]")


def located(error: UserError, entry: tuple, choice: Choice, kind: str, at: Callable[[tuple, str], Problem]) -> list[Problem]:
    """The problems of a UserError that the `kind` component `choice` of the recipe's `entry`
    (the loc ("loss", 2)) raised as it was built, at the recipe's lines, each naming the
    component and its package as params errors do."""
    return [at(entry + _loc(problem.field), f"{problem.message} ({kind} '{choice.name}' of package '{choice.package}')")
            for problem in error.problems]


def _loc(field: str | None) -> tuple:
    """'params.sizes[1]' -> ('params', 'sizes', 1)."""
    return tuple(name or int(index) for name, index in _PART.findall(field or ""))


def build_term(loss: LossChoice, at: Callable[[tuple, str], Problem] | None):
    """The loss term of `loss`; a UserError it raises is located (`at`: the plan's locator)."""
    try:
        return loss.choice.cls(loss.choice.params, loss.layers)
    except UserError as exc:
        if at is None:
            raise
        raise UserError(located(exc, ("loss", loss.index), loss.choice, "loss", at)) from None


def build_component(kind: str, choice: Choice, at: Callable[[tuple, str], Problem] | None):
    """The optimizer or scheduler `choice`; a UserError it raises is located."""
    try:
        return choice.cls(choice.params)
    except UserError as exc:
        if at is None:
            raise
        raise UserError(located(exc, (kind,), choice, kind, at)) from None


def construction_problems(losses: list[LossChoice], chosen: dict[str, Choice | None], known: list[Problem],
                          at: Callable[[tuple, str], Problem]) -> list[Problem]:
    """What the recipe's loss terms, optimizer and scheduler say is wrong when built; only
    for entries with no problem in `known` (their params and layers already checked)."""
    found: list[Problem] = []
    flawed = {(problem.field or "").partition(".")[0] for problem in known}
    builds = [(f"loss[{loss.index}]", lambda loss=loss: build_term(loss, at)) for loss in losses]
    builds += [(kind, lambda kind=kind, choice=choice: build_component(kind, choice, at))
               for kind, choice in chosen.items() if choice is not None]
    for entry, build in builds:
        if entry in flawed:
            continue
        try:
            build()
        except UserError as exc:
            found += exc.problems
        except Exception:  # noqa: BLE001 - a bug in the plugin: the run reports it, with its traceback
            pass
    return found
