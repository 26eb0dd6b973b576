"""What a checkpoint holds, checked against the plan it is to continue, before anything is
restored from it: a hand-edited or damaged file gets one message naming what is wrong,
never a traceback from deep in the optimizer, and never a run resumed from a state that
does not add up (a loss history 50 times longer than the steps it claims).

The optimizer's and the scheduler's states are checked against states of the same
components built over a small stand-in image and stepped a few times: the same keys, and
values of the same kind (a number, a flag, a text, a list, or a tensor the size of the
image). This needs no knowledge of any one optimizer, so a plugin's is checked as Adam is.
"""

from __future__ import annotations

import copy
import math
import warnings
from numbers import Real

import torch

from stylekit.files.images import output_size
from stylekit.recipe.plan import Plan
from stylekit.run.build import build_optimizer, build_scheduler

#: The stand-in image the reference states are made over: its number of elements (105)
#: is what marks a tensor "the size of the image" in them.
STAND_IN = (1, 3, 5, 7)
STAND_IN_SIZE = math.prod(STAND_IN)


def problem_with(state: dict, plan: Plan) -> str | None:
    """What is wrong with a checkpoint's `state` (of stylekit's format, made by `plan`'s
    recipe) for continuing `plan`, or None when it adds up."""
    for key, kinds, what in (("stage", int, "a whole number"), ("loop", dict, "a table"), ("history", list, "a list"),
                             ("rng", torch.Tensor, "a tensor"), ("seconds", Real, "a number")):
        if key not in state:
            return f"'{key}' is missing"
        if not isinstance(state[key], kinds) or isinstance(state[key], bool):
            return f"'{key}' is {_kind(state[key])}, not {what}"
    stage_index, loop = state["stage"], state["loop"]
    if not 0 <= stage_index < len(plan.stages):
        return f"'stage' is {stage_index}, but the recipe has {len(plan.stages)} stage(s) (0 to {len(plan.stages) - 1})"
    stage = plan.stages[stage_index]
    for key, kinds, what in (("step", int, "a whole number"), ("image", torch.Tensor, "a tensor"),
                             ("optimizer", dict, "a table")):
        if key not in loop:
            return f"'loop.{key}' is missing"
        if not isinstance(loop[key], kinds) or isinstance(loop[key], bool):
            return f"'loop.{key}' is {_kind(loop[key])}, not {what}"
    step = loop["step"]
    if not 1 <= step <= stage.steps:
        return f"it is at step {step} of stage {stage_index + 1}, which has {stage.steps} steps"
    # The stages before took their steps, or fewer where their loss settled (min_gain),
    # though never fewer than gain_steps + 1.
    earlier = plan.stages[:stage_index]
    most = sum(s.steps for s in earlier) + step
    least = sum(min(s.steps, s.gain_steps + 1) if s.min_gain else s.steps for s in earlier) + step
    history = state["history"]
    if not least <= len(history) <= most:
        at = f"step {most}" if least == most else f"step {least} to {most}"
        return f"its loss history has {len(history)} steps, but it is at {at} of the run"
    taken = state.get("stage_steps")  # a checkpoint from before min_gain has none
    if taken is not None:
        fits = isinstance(taken, list) and len(taken) == stage_index and all(
            isinstance(n, int) and not isinstance(n, bool) and 1 <= n <= s.steps for n, s in zip(taken, earlier))
        if not fits:
            return f"'stage_steps' is not the steps of the {stage_index} stage(s) before its stage, each within its steps"
        if sum(taken) + step != len(history):
            return (f"its stages before took {sum(taken)} steps and it is at step {step} of stage {stage_index + 1}, "
                    f"but its loss history has {len(history)} steps")
    width = len(plan.losses) + 1  # the total, then each term
    for number, row in enumerate(history, 1):
        if not isinstance(row, list) or len(row) != width or not all(_loss_value(v) for v in row):
            return f"step {number} of its loss history is not a list of {width} numbers"
    rng = state["rng"]
    if rng.dtype != torch.uint8 or tuple(rng.shape) != tuple(torch.get_rng_state().shape):
        return f"'rng' is {_kind(rng)}, not the random state torch keeps (uint8, {tuple(torch.get_rng_state().shape)})"
    if not math.isfinite(state["seconds"]) or state["seconds"] < 0:
        return f"'seconds' is {state['seconds']}, not a time"
    h, w = output_size(plan.images.content, stage.width, stage.height)
    shape = (1, 3, h, w)
    for key in ("image", "average"):
        value = loop.get(key)
        if value is None and key == "average":
            if plan.recipe.run.ema_decay:
                return "'loop.average' is missing, and run.ema_decay needs it"
            continue
        if not isinstance(value, torch.Tensor) or tuple(value.shape) != shape or not value.is_floating_point():
            return f"'loop.{key}' is {_kind(value)}, not this run's image at stage {stage_index + 1} (float, {shape})"
        if not bool(torch.isfinite(value).all()):
            return f"'loop.{key}' holds NaN or infinite values"
    return _component_problem(state, plan, stage, shape)


def _component_problem(state: dict, plan: Plan, stage, shape: tuple) -> str | None:
    """The optimizer's and scheduler's states against the reference states (see above)."""
    loop = state["loop"]
    reference = _reference(plan, stage)
    if reference is None:  # a component that cannot be stepped on a stand-in: left to its own loading
        return None
    per_param, groups, scheduler = reference
    optimizer = loop["optimizer"]
    if not isinstance(optimizer.get("param_groups"), list) or not isinstance(optimizer.get("state"), dict):
        return "'loop.optimizer' lacks its 'state' and 'param_groups'"
    if len(optimizer["param_groups"]) != len(groups):
        return f"'loop.optimizer.param_groups' has {len(optimizer['param_groups'])} groups, not {len(groups)}"
    ids = []
    for i, (group, expected) in enumerate(zip(optimizer["param_groups"], groups)):
        where = f"loop.optimizer.param_groups[{i}]"
        if not isinstance(group, dict):
            return f"'{where}' is {_kind(group)}, not a table"
        params = group.get("params")
        if not isinstance(params, list) or len(params) != len(expected["params"]) \
                or not all(isinstance(p, int) and not isinstance(p, bool) for p in params):
            return f"'{where}.params' is not a list of {len(expected['params'])} whole number(s)"
        ids += params
        for key, value in expected.items():
            wrong = None if key == "params" else _unlike(group.get(key, _MISSING), value, shape, f"{where}.{key}")
            if wrong:
                return wrong
            # The hyperparameters come from the recipe, which is the checkpoint's: only the
            # learning rate moves (a scheduler's). Another value (an L-BFGS history of 0) is
            # an edit, and one the optimizer may not survive.
            if key not in ("params", "lr") and not _equal(group[key], value):
                return f"'{where}.{key}' is {group[key]!r}, but the recipe's optimizer has {value!r}"
    states = optimizer["state"]
    if per_param and not states:
        return "'loop.optimizer.state' is empty, though the optimizer keeps a state after a step"
    for key, entry in states.items():
        if key not in ids:
            return f"'loop.optimizer.state' has an entry for {key!r}, which is no parameter of its groups"
        wrong = _state_problem(entry, per_param, shape, f"loop.optimizer.state[{key!r}]")
        if wrong:
            return wrong
    return _scheduler_problem(loop.get("scheduler"), scheduler, loop["step"], shape, plan, stage)


def _state_problem(entry, references: list[dict], shape: tuple, where: str) -> str | None:
    """A parameter's optimizer state against the states of the stand-in after one and after
    a few steps: the keys both have are needed, and each value must be of its kind."""
    if not isinstance(entry, dict):
        return f"'{where}' is {_kind(entry)}, not a table"
    needed = sorted(set.intersection(*(set(r) for r in references)), key=str) if references else []
    lacking = [key for key in needed if key not in entry]
    if lacking:
        return f"'{where}' lacks {lacking[0]!r}"
    known = {}
    for r in references:
        known.update(r)
    for key, value in entry.items():
        wrong = _unlike(value, known[key], shape, f"{where}.{key}") if key in known else None
        if wrong:
            return wrong
    # Lists that go together in every reference (L-BFGS: directions, steps and their
    # products) must have one length: the optimizer indexes one by the other's.
    together = [k for k in needed if all(isinstance(r[k], list) for r in references)]
    for a in together:
        for b in together:
            if all(len(r[a]) == len(r[b]) for r in references) and len(entry[a]) != len(entry[b]):
                return f"'{where}.{a}' has {len(entry[a])} entries but '{b}' has {len(entry[b])}"
    return None


def _scheduler_problem(value, reference: dict | None, step: int, shape: tuple, plan: Plan, stage) -> str | None:
    if reference is None:
        return None if value is None or isinstance(value, dict) else f"'loop.scheduler' is {_kind(value)}, not a table"
    if not isinstance(value, dict):
        return f"'loop.scheduler' is {_kind(value)}, but the recipe's scheduler needs its state"
    wrong = _unlike(value, reference, shape, "loop.scheduler")
    if wrong:
        return wrong
    # torch's schedulers keep their settings in public attributes and what moves with the
    # steps in private ones (and last_epoch): the settings come from the recipe.
    for key, expected in reference.items():
        if isinstance(key, str) and not key.startswith("_") and key != "last_epoch" and not _equal(value[key], expected):
            return f"'loop.scheduler.{key}' is {value[key]!r}, but the recipe's scheduler has {expected!r}"
    # They count their steps: the reference took REFERENCE_STEPS of them.
    if reference.get("last_epoch") == REFERENCE_STEPS and value.get("last_epoch") != step:
        return f"'loop.scheduler.last_epoch' is {value.get('last_epoch')!r}, but the run is at step {step} of its stage"
    try:  # and it must step from there, as the run will step it (a cosine over 0 steps divides by 0)
        _, scheduler, _ = _stand_in(plan, stage)
        scheduler.load_state_dict(copy.deepcopy(value))
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            scheduler.step()
    except Exception as exc:
        return f"'loop.scheduler' cannot be stepped from this state ({type(exc).__name__}: {exc})"
    return None


def _equal(a, b) -> bool:
    try:
        return type(a) is type(b) and bool(a == b)
    except Exception:  # what cannot be compared so (tensors) is not equal
        return False


_MISSING = object()
_ANY = object()  # a list entry the references say nothing about
REFERENCE_STEPS = 3


def _unlike(value, reference, shape: tuple, where: str) -> str | None:
    """How `value`, found at `where` in the checkpoint, differs in kind from `reference` (the
    value a reference state has there), as "'where' is ..."; None when it does not."""
    if value is _MISSING:
        return f"'{where}' is missing"
    if isinstance(reference, torch.Tensor) and reference.numel() == STAND_IN_SIZE:
        expected = shape if reference.dim() == len(STAND_IN) else (math.prod(shape),)
        if not isinstance(value, torch.Tensor) or tuple(value.shape) != expected \
                or value.is_floating_point() != reference.is_floating_point():
            return f"'{where}' is {_kind(value)}, not a tensor of {reference.dtype} shaped {expected} (the image's size)"
        return None if bool(torch.isfinite(value).all()) else f"'{where}' holds NaN or infinite values"
    if _number(reference):
        if not _number(value):
            return f"'{where}' is {_kind(value)}, not a number"
        return None if math.isfinite(float(value)) else f"'{where}' is {float(value)}, not a finite number"
    if isinstance(reference, (list, tuple)):
        if not isinstance(value, (list, tuple)):
            return f"'{where}' is {_kind(value)}, not a list"
        if isinstance(reference, tuple):  # a fixed group of values (Adam's betas)
            if len(value) != len(reference):
                return f"'{where}' has {len(value)} entries, not {len(reference)}"
            pairs = list(zip(value, reference))
        else:  # any length (L-BFGS's history): each entry like the reference's first one
            model = next((r for r in reference if r is not None), _MISSING)
            pairs = [(item, _ANY if model is _MISSING or (item is None and None in reference) else model)
                     for item in value]
        return next((wrong for i, (item, expected) in enumerate(pairs) if expected is not _ANY
                     for wrong in [_unlike(item, expected, shape, f"{where}[{i}]")] if wrong), None)
    if isinstance(reference, dict):
        if not isinstance(value, dict):
            return f"'{where}' is {_kind(value)}, not a table"
        return next((wrong for key, expected in reference.items()
                     for wrong in [_unlike(value.get(key, _MISSING), expected, shape, f"{where}.{key}")] if wrong), None)
    if reference is None:
        return None if value is None else f"'{where}' is {_kind(value)}, not None"
    if type(value) is not type(reference):
        return f"'{where}' is {_kind(value)}, not {type(reference).__name__}"
    return None


def _number(value) -> bool:
    """A number as optimizers keep them: int, float, or a tensor of one real value."""
    if isinstance(value, torch.Tensor):
        return value.numel() == 1 and not value.is_complex() and value.dtype != torch.bool
    return isinstance(value, Real) and not isinstance(value, bool)


def _loss_value(value) -> bool:
    return value is None or (isinstance(value, Real) and not isinstance(value, bool))


def _kind(value) -> str:
    """What a value is, for messages: 'a tensor of torch.int64 shaped (3,)', 'text', ..."""
    if isinstance(value, torch.Tensor):
        return f"a tensor of {value.dtype} shaped {tuple(value.shape)}"
    if value is None:
        return "None"
    names = {bool: "true/false", str: "text", dict: "a table", list: "a list", tuple: "a list"}
    return next((name for kind, name in names.items() if isinstance(value, kind)), type(value).__name__)


def _stand_in(plan: Plan, stage):
    """(component, torch optimizer, scheduler) of `plan` over the stand-in image."""
    # No random numbers: the run's random state must stay as the checkpoint restores it.
    image = torch.linspace(0, 1, STAND_IN_SIZE).view(STAND_IN).requires_grad_(True)
    component = build_optimizer(plan)
    optimizer = component.build([image])
    return component, build_scheduler(plan).build(optimizer, stage.steps), optimizer


def _reference(plan: Plan, stage) -> tuple[list[dict], list[dict], dict | None] | None:
    """(the optimizer's per-parameter state after 1 and after REFERENCE_STEPS steps, its
    param_groups, the scheduler's state) over the stand-in image; None when the components
    cannot be stepped so (a plugin's that wants a real image)."""
    try:
        component, scheduler, optimizer = _stand_in(plan, stage)
        image = optimizer.param_groups[0]["params"][0]
        target = torch.full(STAND_IN, 0.25)
        states = []
        for step in range(1, REFERENCE_STEPS + 1):
            def closure():
                optimizer.zero_grad()
                loss = ((image - target) ** 2).sum()
                loss.backward()
                return loss

            if component.needs_closure:
                optimizer.step(closure)
            else:
                closure()
                optimizer.step()
            if scheduler is not None:
                scheduler.step()
            if step in (1, REFERENCE_STEPS):
                states.append(dict(optimizer.state_dict()["state"].get(0, {})))
        # Keys an optimizer says a state may lack (one saved by an earlier version of it) are
        # checked for their kind where present, never required: the first reference omits them.
        optional = getattr(optimizer, "optional_state", frozenset())
        states = [s for s in states if s]
        if states and optional:
            states[0] = {key: value for key, value in states[0].items() if key not in optional}
        groups = optimizer.state_dict()["param_groups"]
        return states, groups, None if scheduler is None else scheduler.state_dict()
    except Exception:
        return None
