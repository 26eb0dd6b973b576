"""Whose code raised: exceptions from plugin code, turned into one message that names the
package, the component, the recipe entry and the step.

A plugin's loss, backbone, optimizer or scheduler runs inside stylekit's loop, so an
exception it raises surfaces as a traceback through stylekit's engine, naming neither the
plugin nor the recipe entry. `blame` walks the traceback from the innermost frame out and
stops at the first frame that runs a method of a component (or of the torch optimizer or
scheduler that a component built): that component is the one to name. An exception with
no component on its traceback is stylekit's own bug and keeps its traceback.

The traceback itself travels in `Problem.details`, printed by the CLI only with
`--traceback` or `STYLEKIT_TRACEBACK=1`.
"""

from __future__ import annotations

import dataclasses
import traceback
from dataclasses import dataclass

import torch

from stylekit.contract.components import Backbone, LossTerm, Optimizer, Scheduler
from stylekit.errors import TRACEBACK_ENV, PluginError, Problem
from stylekit.run.engine import BadTermValue, Loop
from stylekit.run.failures import is_resource_failure

@dataclass(frozen=True)
class Culprit:
    """A component of a run, as the user knows it: what it is and where the recipe says so."""

    kind: str  # backbone, loss, optimizer, scheduler
    name: str  # the recipe's name for it
    package: str
    entry: str  # the recipe field that chose it: loss[1], optimizer, ...

    def describe(self) -> str:
        return f"{self.kind} '{self.name}' of package '{self.package}'"


def _culprit_of(owner, plan, terms) -> Culprit | None:
    """The component of `plan` that `owner` (a frame's `self`) is, or belongs to."""
    if isinstance(owner, LossTerm):
        # The same class may serve two entries: the built term says which; before the
        # objective exists (a term's __init__), the first entry of that class.
        for index, term in enumerate(terms):
            if term is owner:
                loss = plan.losses[index]
                return Culprit("loss", loss.choice.name, loss.choice.package, loss.entry)
        for loss in plan.losses:
            if isinstance(owner, loss.choice.cls):
                return Culprit("loss", loss.choice.name, loss.choice.package, loss.entry)
        return None
    for kind, base, built in (("backbone", Backbone, ()), ("optimizer", Optimizer, (torch.optim.Optimizer,)),
                              ("scheduler", Scheduler, (torch.optim.lr_scheduler.LRScheduler,))):
        # What an optimizer or scheduler component built is a torch object; its `step` is
        # part of the plugin's code as much as `build` is.
        if isinstance(owner, (base, *built)):
            choice = getattr(plan, kind)
            return Culprit(kind, choice.name, choice.package, kind)
    return None


def blame(exc: BaseException, plan, terms=()) -> tuple[Culprit, str, object | None] | None:
    """(component, method it was running, the engine's loop state when the loop was running)
    for an exception raised in a component's code; None when no frame of the traceback
    belongs to a component of `plan` (then it is stylekit's bug). `terms`: the built loss
    terms, in the recipe's order, when there are some."""
    frames = [frame for frame, _ in traceback.walk_tb(exc.__traceback__)]
    loop = next((value for frame in frames for value in frame.f_locals.values() if isinstance(value, Loop)), None)
    if isinstance(exc, BadTermValue):  # found by stylekit's check, in its own frames: the term is named in it
        found = _culprit_of(exc.term, plan, terms)
        return (found, "forward", loop) if found is not None else None
    for frame in reversed(frames):
        owner = frame.f_locals.get("self")
        found = _culprit_of(owner, plan, terms) if owner is not None else None
        if found is not None:
            return found, frame.f_code.co_name, loop
    return None


def attributed(exc: BaseException, plan, steps_before: int, terms=()) -> PluginError | None:
    """A PluginError naming the component of `plan` that raised `exc` (a failed run, exit
    status 3: the plugin's bug, not the user's input); None when none did (or when it ran
    out of memory). A plugin's own UserError never comes here: the callers pass it on as
    bad input. `steps_before`: the steps of the stages before this one."""
    if is_resource_failure(exc):  # out of memory or too small: the sizes' fault, not the plugin's; the runner says so
        return None
    found = blame(exc, plan, terms)
    if found is None:
        return None
    where, method, loop = found
    when = f"at step {steps_before + loop.step + 1}" if loop is not None else f"before step {steps_before + 1}"
    first_line = (str(exc).strip().splitlines() or [""])[0]
    if isinstance(exc, BadTermValue):  # nothing raised in the plugin: it broke the contract
        message = f"{where.describe()} broke the contract {when}: {first_line} - a bug in {where.package}"
    else:
        message = (f"{where.describe()} raised {type(exc).__name__}{': ' + first_line if first_line else ''} "
                   f"in {method}() {when} - a bug in {where.package}, or params it does not handle; "
                   f"{TRACEBACK_ENV}=1 or --traceback shows the traceback")
    details = "".join(traceback.format_exception(exc))
    if plan.at is None:
        problem = Problem(message, file=plan.source, field=where.entry, details=details)
    else:  # at the recipe's line for the entry: `loss[1]` is the loc ("loss", 1)
        name, _, index = where.entry.partition("[")
        problem = dataclasses.replace(plan.at((name, int(index[:-1])) if index else (name,), message), details=details)
    # `original`: None where stylekit's check found the fault (errors.PluginError).
    return PluginError(problem, None if isinstance(exc, BadTermValue) else exc, where.package, where.kind, where.name)
