"""Validation errors as the user reads them: each pydantic error, and each quoted number
or boolean, as one `Problem` at the recipe's file and line (or the --set flag that gave
the value), with the field's dotted path and what to write instead."""

from __future__ import annotations

import json

from pydantic import BaseModel

from stylekit.errors import Problem, did_you_mean
from stylekit.recipe.stage_fit import StageFit
from stylekit.recipe.tomlpos import dotted, line_of
from stylekit.recipe.toml_types import text_for_typed_values


def locator(label: str, lines: dict, flag_for=None, fit: StageFit | None = None):
    def at(loc: tuple, message: str) -> Problem:
        # A stage scaled from an override holds the override's value, not the recipe's line.
        source = fit.source(loc) if fit is not None else None
        flag = flag_for(source or loc) if flag_for else None
        if flag:  # the value came from the command line: name the flag, not the recipe's line
            return Problem(message, file=flag, field=dotted(loc) or None)
        return Problem(message, file=label, line=line_of(lines, loc), field=dotted(loc) or None)
    return at


def without_echoes(problems: list[Problem], fit: StageFit) -> list[Problem]:
    """Without the problems of stage fields scaled from an override that has its own problem
    (`--set output.width=20000`: the width is too large once, not once more per stage)."""
    sources = fit.sources()
    fields = {p.field for p in problems if p.field}
    return [p for p in problems if sources.get(p.field or "") not in fields]


def pydantic_problem(err: dict, prefix: tuple, model: type[BaseModel] | None, at) -> Problem:
    loc = prefix + tuple(part for part in err["loc"] if not _is_union_tag(part))
    if err["type"] == "extra_forbidden":
        known = _fields_at(model, tuple(err["loc"][:-1])) if model is not None else []
        return at(loc, f"unknown key '{err['loc'][-1]}'{did_you_mean(str(err['loc'][-1]), known)}")
    message = err["msg"].removeprefix("Value error, ")
    bound = (err.get("ctx") or {}).get(_BOUNDS.get(err["type"], ""))
    if isinstance(bound, float) and abs(bound) >= 1e16:  # pydantic writes 3.4e38 out in 39 digits
        message = f"Input should be {err['type'].replace('_', ' ').replace('equal', 'or equal to')} {bound:g}"
    if err["type"] == "missing":
        return at(loc, "required field is missing - add it")
    if isinstance(err["input"], dict):  # a whole table: the message says what is wrong with it
        return at(loc, message)
    # The message quotes the value already (as JSON or as Python writes it: "output path
    # 'x.gif' must end in ..."): a "(got 'x.gif')" after it would say it twice.
    if isinstance(err["input"], str) and (json.dumps(err["input"]) in message or repr(err["input"]) in message):
        return at(loc, message)
    allowed = _allowed_range(model, tuple(err["loc"])) if err["type"] in _BOUNDS and model is not None else None
    allowed = allowed or _WANTED.get(err["type"])
    return at(loc, f"{message} (got {err['input']!r})" + (f" - write {allowed}" if allowed else ""))


#: pydantic's errors for what is no number -> what to write instead.
_WANTED = {"float_parsing": "a number", "float_type": "a number", "int_parsing": "a whole number",
           "int_type": "a whole number", "int_from_float": "a whole number"}

#: pydantic's errors for a number out of bounds -> the bound in their ctx.
_BOUNDS = {"less_than": "lt", "less_than_equal": "le", "greater_than": "gt", "greater_than_equal": "ge"}


def without_tried_branches(errors: list[dict]) -> list[dict]:
    """Drop 'should be a list' where a value of a union (a list or a table of layers) failed
    inside the other branch: the deeper error is the one that says what is wrong."""
    locs = [tuple(p for p in err["loc"] if not _is_union_tag(p)) for err in errors]
    return [err for err, loc in zip(errors, locs)
            if not (err["type"] in ("list_type", "dict_type") and any(len(o) > len(loc) and o[:len(loc)] == loc for o in locs))]


def quoted_values(source, overrides, at):
    """check(model, data, prefix) -> the problems of values of a TOML recipe written as text
    where `model` wants a number or a boolean (`steps = "10"`; see `stylekit.recipe.toml_types`),
    and of booleans where it wants a number (`steps = true`) or the other way round. Text
    given as overrides, or in a recipe given as a dict, is Python's and not checked; the
    booleans are checked wherever they come from."""
    overridden = [tuple(key) for key in overrides or {}]

    def check(model: type[BaseModel], data, prefix: tuple = ()) -> list[Problem]:
        found = []
        for raw, message, is_text in text_for_typed_values(model, data):
            loc = prefix + tuple(part for part in raw if not _is_union_tag(part))
            if not is_text or not isinstance(source, dict) and not any(loc[:len(key)] == key for key in overridden):
                found.append(at(loc, message))
        return found

    return check


def instead(problems: list[Problem], better: list[Problem]) -> list[Problem]:
    """`problems` with those of a field that `better` names replaced by its problem (one
    message for one mistake), then the rest of `better`."""
    by_field = {problem.field: problem for problem in better}
    merged, used = [], set()
    for problem in problems:
        if problem.field not in by_field:
            merged.append(problem)
        elif problem.field not in used:
            merged.append(by_field[problem.field])
            used.add(problem.field)
    return merged + [problem for problem in better if problem.field not in used]


def _is_union_tag(part) -> bool:
    # pydantic names the branch of a union it tried ('list[str]', 'dict[str,float]'); readers don't care.
    return isinstance(part, str) and ("[" in part or part in ("str", "int", "float", "bool"))


def _allowed_range(model: type[BaseModel], loc: tuple) -> str | None:
    """'a number at least 0 and less than 1': the bounds of the field at `loc` where it has two
    (pydantic's message names only the one broken, and the user should not meet the other
    next); None where it has one or none."""
    loc = tuple(part for part in loc if not _is_union_tag(part))
    parent = _model_at(model, loc[:-1]) if loc else None
    field = parent.model_fields.get(loc[-1]) if parent is not None and isinstance(loc[-1], str) else None
    if field is None:
        return None
    words = {"gt": "greater than", "ge": "at least", "lt": "less than", "le": "at most"}
    said = [f"{words[name]} {getattr(limit, name):g}" for limit in field.metadata for name in words
            if isinstance(getattr(limit, name, None), (int, float)) and abs(getattr(limit, name)) < 1e16]  # not float32's top
    if len(said) < 2:  # pydantic's message says the one bound
        return None
    kinds = getattr(field.annotation, "__args__", (field.annotation,))  # int, or int | None
    return f"{'a whole number' if int in kinds and float not in kinds else 'a number'} {' and '.join(said)}"


def _fields_at(model: type[BaseModel], loc: tuple) -> list[str]:
    """Field names of the (nested) model at `loc`, for did-you-mean suggestions."""
    found = _model_at(model, loc)
    return list(found.model_fields) if found is not None else []


def _model_at(model: type[BaseModel], loc: tuple) -> type[BaseModel] | None:
    """The (nested) model at `loc`, or None where `loc` leads to no model."""
    for part in loc:
        if isinstance(part, int):
            continue
        field = model.model_fields.get(part)
        if field is None:
            return None
        annotation = field.annotation
        args = getattr(annotation, "__args__", ())
        inner = args[0] if args else annotation
        if isinstance(inner, type) and issubclass(inner, BaseModel):
            model = inner
        elif isinstance(annotation, type) and issubclass(annotation, BaseModel):
            model = annotation
        else:
            return None
    return model
