"""Recipes: TOML files, validated by pydantic, that choose and configure every component.

`load_recipe` reads a recipe, applies command-line overrides, validates the schema and
each component's own params, checks layer names and image files, and resolves paths
relative to the recipe file. Every problem is collected and raised at once as a
`UserError` whose lines read `recipes/x.toml:12: loss[1].layers[0]: ...`.
"""

from __future__ import annotations

import os
import re
import sys
from dataclasses import dataclass
from pathlib import Path
from types import SimpleNamespace
from typing import Any, Callable

from pydantic import BaseModel, ValidationError

from . import checks
from .components import Backbone
from .errors import Problem, UserError, did_you_mean
from .overrides import apply_override, parse_override  # noqa: F401 (parse_override: re-exported)
from .plugins import Registry
from .schema import INIT_CHOICES, BackboneSpec, ImagesSpec, LossSpec, Recipe
from .tomlpos import dotted, key_lines, line_of

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover
    import tomli as tomllib


@dataclass
class LoadedRecipe:
    """A validated recipe with paths resolved and every component's params validated."""

    path: Path
    recipe: Recipe
    backbone_params: BaseModel
    loss_params: list[BaseModel]
    optimizer_params: BaseModel
    scheduler_params: BaseModel
    #: (loc, message) -> Problem at the recipe's file and line: for errors found later, in building.
    at: Callable[[tuple, str], Problem] | None = None

    @property
    def raw(self) -> dict:
        return self.recipe.model_dump(mode="json")


# ---------------------------------------------------------------- loading


def read_toml(path: Path) -> tuple[dict, str]:
    try:
        text = path.read_text(encoding="utf-8-sig")  # -sig: editors that save a byte-order mark
    except FileNotFoundError:
        raise UserError(Problem("recipe file not found - check the path", file=str(path))) from None
    except IsADirectoryError:
        raise UserError(Problem("this is a folder, not a recipe file - give the .toml file", file=str(path))) from None
    except UnicodeDecodeError as exc:
        raise UserError(Problem(f"not UTF-8 text (byte {exc.start}) - save the recipe as UTF-8", file=str(path))) from None
    except (OSError, UnicodeDecodeError) as exc:
        raise UserError(Problem(f"cannot read the recipe ({exc})", file=str(path))) from None
    try:
        return tomllib.loads(text), text
    except tomllib.TOMLDecodeError as exc:
        found = re.search(r"\s*\(at line (\d+), column \d+\)", str(exc))
        line = int(found.group(1)) if found else None
        message = str(exc).replace(found.group(0), "") if found else str(exc)
        raise UserError(Problem(f"TOML syntax error: {message} - fix the syntax at this line", file=str(path), line=line)) from None


def load_recipe(path: str | Path, registry: Registry, overrides: dict[tuple, Any] | None = None) -> LoadedRecipe:
    path = Path(path)
    data, text = read_toml(path)
    flags = getattr(overrides, "flags", {})
    for key, value in (overrides or {}).items():
        apply_override(data, key, value, flags.get(key))
    at = _locator(path, key_lines(text), getattr(overrides, "flag_for", None))
    problems: list[Problem] = []
    try:
        recipe = Recipe.model_validate(data)
    except ValidationError as exc:
        problems += [_pydantic_problem(err, (), Recipe, at) for err in _without_tried_branches(exc.errors())]
        recipe = None
    # Check components even where another part of the recipe failed the schema, so that
    # every problem is reported at once: take each section that is valid on its own.
    parts = recipe if recipe is not None else _valid_parts(data)
    if parts.requires is not None:
        problems += _missing_packages(parts.requires, registry, at)
    base = path.parent
    if parts.images is not None:
        parts.images.content = _resolve(base, parts.images.content)
        parts.images.style = [_resolve(base, p) for p in parts.images.style]
        if parts.images.style_masks:
            parts.images.style_masks = [_resolve(base, p) for p in parts.images.style_masks]
        if parts.images.init not in INIT_CHOICES:
            parts.images.init = _resolve(base, parts.images.init)
        sizes, found = checks.read_images(parts.images, at)
        problems += found
    if parts.output is not None:
        parts.output.path = _resolve(base, parts.output.path)
        problems += checks.output_problems(parts, at)

    backbone_cls = backbone_params = None
    if parts.backbone is not None:
        backbone_cls = _component(registry, "backbone", parts.backbone.name, ("backbone", "name"), at, problems)
        backbone_params = _params(registry, backbone_cls, parts.backbone.params, ("backbone", "params"), at, problems)
        if backbone_cls is not None:
            problems += _resolve_weights(parts.backbone, backbone_cls, base, at)
    loss_params, loss_classes = [], []
    for i, spec in enumerate(parts.loss or []):
        if spec is None:
            loss_classes.append(None)
            continue
        cls = _component(registry, "loss", spec.name, ("loss", i, "name"), at, problems)
        loss_classes.append(cls)
        loss_params.append(_params(registry, cls, spec.params, ("loss", i, "params"), at, problems))
        if cls is not None and backbone_cls is not None and backbone_params is not None:
            problems += _check_layers(spec, cls, backbone_cls, backbone_params, i, at)
    other_params = []
    for kind in ("optimizer", "scheduler"):
        spec = getattr(parts, kind)
        if spec is not None:
            cls = _component(registry, kind, spec.name, (kind, "name"), at, problems)
            other_params.append(_params(registry, cls, spec.params, (kind, "params"), at, problems))
    if parts.images is not None:
        problems += checks.size_problems(parts, sizes, backbone_cls, backbone_params, loss_classes, at)
    if problems or recipe is None:
        raise UserError(problems)
    return LoadedRecipe(path, recipe, backbone_params, loss_params, *other_params, at=at)


def _valid_parts(data: dict) -> SimpleNamespace:
    """The sections of a recipe that pass the schema on their own (None where they fail)."""
    def valid(name: str, model, raw):
        try:
            return model.model_validate(raw)
        except ValidationError:
            return None

    sections = {}
    for name, field in Recipe.model_fields.items():
        if name == "loss":
            items = data.get("loss")
            sections[name] = [valid(name, LossSpec, item) for item in items] if isinstance(items, list) else None
        elif name == "requires":
            requires = data.get("requires", [])
            sections[name] = requires if isinstance(requires, list) and all(isinstance(r, str) for r in requires) else None
        elif name == "stage":
            sections[name] = None  # stages name no components to check
        elif name in data:
            sections[name] = valid(name, field.annotation, data[name])
        else:
            sections[name] = None if field.is_required() else field.default.model_copy()
    return SimpleNamespace(**sections)


def _resolve_weights(spec: BackboneSpec, cls: type[Backbone], base: Path, at) -> list[Problem]:
    """Default the weights; a value that is no known name is a file relative to the recipe."""
    weights = spec.weights or cls.weight_choices[0]
    if weights not in cls.weight_choices:
        weights = _resolve(base, weights)
        if not Path(weights).is_file():
            return [at(("backbone", "weights"), f"'{spec.weights}' is neither one of {', '.join(cls.weight_choices)} "
                                                 f"nor an existing weights file ({weights})")]
    spec.weights = weights
    return []


def _locator(path: Path, lines: dict, flag_for=None):
    def at(loc: tuple, message: str) -> Problem:
        flag = flag_for(loc) if flag_for else None
        if flag:  # the value came from the command line: name the flag, not the recipe's line
            return Problem(message, file=flag, field=dotted(loc) or None)
        return Problem(message, file=str(path), line=line_of(lines, loc), field=dotted(loc) or None)
    return at


def _resolve(base: Path, value: str) -> str:
    try:
        value = str(Path(value).expanduser())
    except RuntimeError:  # ~user of no such user: leave it, the file check reports it
        pass
    return os.path.normpath(base / value)


def _pydantic_problem(err: dict, prefix: tuple, model: type[BaseModel] | None, at) -> Problem:
    loc = prefix + tuple(part for part in err["loc"] if not _is_union_tag(part))
    if err["type"] == "extra_forbidden":
        known = _fields_at(model, tuple(err["loc"][:-1])) if model is not None else []
        return at(loc, f"unknown key '{err['loc'][-1]}'{did_you_mean(str(err['loc'][-1]), known)}")
    message = err["msg"].removeprefix("Value error, ")
    if err["type"] == "missing":
        return at(loc, "required field is missing - add it")
    if isinstance(err["input"], dict):  # a whole table: the message says what is wrong with it
        return at(loc, message)
    return at(loc, f"{message} (got {err['input']!r})")


def _without_tried_branches(errors: list[dict]) -> list[dict]:
    """Drop 'should be a list' where a value of a union (a list or a table of layers) failed
    inside the other branch: the deeper error is the one that says what is wrong."""
    locs = [tuple(p for p in err["loc"] if not _is_union_tag(p)) for err in errors]
    return [err for err, loc in zip(errors, locs)
            if not (err["type"] in ("list_type", "dict_type") and any(len(o) > len(loc) and o[:len(loc)] == loc for o in locs))]


def _is_union_tag(part) -> bool:
    # pydantic names the branch of a union it tried ('list[str]', 'dict[str,float]'); readers don't care.
    return isinstance(part, str) and ("[" in part or part in ("str", "int", "float", "bool"))


def _fields_at(model: type[BaseModel], loc: tuple) -> list[str]:
    """Field names of the (nested) model at `loc`, for did-you-mean suggestions."""
    for part in loc:
        if isinstance(part, int):
            continue
        field = model.model_fields.get(part)
        if field is None:
            return []
        annotation = field.annotation
        args = getattr(annotation, "__args__", ())
        inner = args[0] if args else annotation
        if isinstance(inner, type) and issubclass(inner, BaseModel):
            model = inner
        elif isinstance(annotation, type) and issubclass(annotation, BaseModel):
            model = annotation
        else:
            return []
    return list(model.model_fields)


def _component(registry: Registry, kind: str, name: str, loc: tuple, at, problems: list[Problem]):
    try:
        return registry.get(kind, name)
    except UserError as exc:
        problems.append(at(loc, exc.problems[0].message))
        return None


def _params(registry: Registry, cls, raw: dict, loc: tuple, at, problems: list[Problem]):
    if cls is None:
        return None
    try:
        return cls.Params.model_validate(raw)
    except ValidationError as exc:
        package = registry.components[cls.kind][cls.name].plugin.package
        for err in exc.errors():
            problem = _pydantic_problem(err, loc, cls.Params, at)
            problems.append(Problem(f"{problem.message} ({cls.kind} '{cls.name}' of package '{package}')",
                                    problem.file, problem.line, problem.field))
        return None


def _check_layers(spec: LossSpec, cls, backbone_cls: type[Backbone], backbone_params, index: int, at) -> list[Problem]:
    if not cls.reads_features:
        if spec.layers:
            return [at(("loss", index, "layers"), f"loss '{cls.name}' reads the image, not layers - remove `layers`")]
        return []
    known = backbone_cls.layer_names_for(backbone_params)
    table = spec.layer_table(cls.default_layers)
    if not table:
        return [at(("loss", index, "layers"), f"loss '{cls.name}' needs at least one layer")]
    problems = []
    for j, name in enumerate(table):
        if name not in known:
            loc = ("loss", index, "layers", j if isinstance(spec.layers, list) else name)
            problems.append(at(loc, f"unknown layer '{name}' of backbone '{backbone_cls.name}'{did_you_mean(name, known)}"))
    return problems


def _missing_packages(requires: list[str], registry: Registry, at) -> list[Problem]:
    from .plugins import ENV_VAR, normalize_package

    loaded = {normalize_package(p) for p in registry.packages()}
    skipped = {normalize_package(p) for p in registry.skipped_packages}
    problems = []
    for i, package in enumerate(requires):
        if normalize_package(package) in loaded:
            continue
        if normalize_package(package) in skipped:
            problems.append(at(("requires", i), f"plugin package '{package}' is installed but {ENV_VAR} leaves it out - add it to {ENV_VAR}"))
        else:
            problems.append(at(("requires", i), f"this recipe needs the plugin package '{package}' - install it with `pip install {package}`"))
    return problems
