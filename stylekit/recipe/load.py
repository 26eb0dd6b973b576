"""Recipes: TOML files, validated by pydantic, that choose and configure every component.

`load_recipe` reads a recipe, applies command-line overrides, validates the schema and
each component's own params, checks layer names and image files, and resolves paths
relative to the recipe file. Every problem is collected and raised at once as a
`UserError` whose lines read `recipes/x.toml:12: loss[1].layers[0]: ...`.
"""

from __future__ import annotations

import dataclasses
import difflib
import os
from pathlib import Path
from types import SimpleNamespace
from typing import Any

from pydantic import ValidationError

from stylekit.contract.components import Backbone
from stylekit.errors import Problem, UserError, did_you_mean
from stylekit.files.images import open_rgb, rgb_of
from stylekit.plugins.registry import PLUGINS_ENV, Registry, installed_distributions, normalize_package
from stylekit.recipe import input_checks, nesting, output_checks
from stylekit.recipe.construct import construction_problems
from stylekit.recipe.devices import resolve_device, resolve_precision
from stylekit.recipe.messages import (instead, locator, pydantic_problem, quoted_values, without_echoes,
                                      without_tried_branches)
from stylekit.recipe.overrides import Overrides, apply_override
from stylekit.recipe.plan import MEMORY, Choice, InputImages, LossChoice, Plan
from stylekit.recipe.schema import INIT_CHOICES, BackboneSpec, ImagesSpec, LossSpec, Recipe
from stylekit.recipe.source import read_source, shortened_loc
from stylekit.recipe.stage_fit import (fit_stages_to_overrides, planned_stages, planned_steps, steps_factor, steps_given,
                                      written_steps)
from stylekit.recipe.tomlpos import key_lines


# ---------------------------------------------------------------- loading


def load_recipe(source: str | Path | dict, registry: Registry, overrides: dict[tuple, Any] | None = None,
                images: dict[str, Any] | None = None, base: Path | None = None, label: str | None = None,
                decoded: dict | None = None, beside: bool = False) -> Plan:
    """Validate a recipe and resolve it into a checked `Plan`, or raise every problem at once.

    `images` may give the content ("content": a PIL image) and styles ("style": a list) as
    objects in memory; they replace the recipe's files, which may then be left out.
    Relative paths are resolved against `base` (default: the recipe file's folder, or the
    current folder for a recipe given as text or a dict). `decoded`: style images decoded
    by earlier loads (a batch's `Reuse.style_images`), taken from and added to. `beside`:
    also check the files `stylekit run` keeps beside the output (`output_checks.beside_problems`).
    """
    data, text, found_label, base = read_source(source, base)
    label = label or found_label  # a plan loaded again from its own recipe keeps its source
    flags = getattr(overrides, "flags", {})
    applied, unapplied = Overrides(), []  # keyed where each landed (a loss named, at its index)
    for key, value in (overrides or {}).items():
        try:
            applied.add(apply_override(data, key, value, flags.get(key)), value, flags.get(key))
        except UserError as exc:  # reported with the recipe's own problems, not instead of them
            unapplied += exc.problems
    overrides = applied
    deep = nesting.deepest_path(data)
    if deep is not None:  # given by overrides (the text's own depth is checked as it is parsed)
        problem = locator(label, {}, getattr(overrides, "flag_for", None))(deep, nesting.TOO_DEEP)
        raise UserError(dataclasses.replace(problem, field=shortened_loc(deep)))
    fit = fit_stages_to_overrides(data, overrides or {})
    memory = dict(images or {})
    if memory:
        section = data.setdefault("images", {})
        if isinstance(section, dict):
            if "content" in memory:
                section["content"] = MEMORY
            if "style" in memory:
                section["style"] = [MEMORY] * len(memory["style"])
    at = locator(label, key_lines(text), getattr(overrides, "flag_for", None), fit)
    problems: list[Problem] = unapplied + [at(loc, message) for loc, message in fit.problems]
    quoted = quoted_values(source, overrides, at)
    try:
        recipe = Recipe.model_validate(data)
    except ValidationError as exc:
        problems += without_echoes([pydantic_problem(err, (), Recipe, at) for err in without_tried_branches(exc.errors())], fit)
        recipe = None
    problems = instead(problems, quoted(Recipe, data))
    # Check components even where another part of the recipe failed the schema, so that
    # every problem is reported at once: take each section that is valid on its own.
    parts = recipe if recipe is not None else _valid_parts(data)
    if parts.requires is not None:
        problems += _missing_packages(parts.requires, registry, at)
    if parts.stage and parts.stage[0].carry != "image":
        problems.append(at(("stage", 0, "carry"), "the first stage has no stage before it to carry from: it starts "
                           "from images.init - remove carry there (it is for the stages after the first)"))
    inputs = None
    if parts.images is not None:
        _resolve_image_paths(parts.images, base)
        inputs = _open_images(parts.images, memory, at, problems, decoded)
    given = steps_given(overrides or {}, len(data["stage"]) if isinstance(data.get("stage"), list) else 0)
    factor = steps_factor(parts.strength, parts.more_steps_above, written_steps(parts), given)
    if given and recipe is not None:  # so that a plan made again from its recipe (`plan.raw`) takes them as given too
        recipe.more_steps_above = None
    if parts.output is not None:
        parts.output.path = _resolve(base, parts.output.path)
        problems += output_checks.output_problems(parts, at, beside, sum(planned_steps(parts, factor)) or None)

    backbone = None
    if parts.backbone is not None:
        backbone = _choice(registry, "backbone", parts.backbone.name, parts.backbone.params, ("backbone",), at, problems, quoted)
        if backbone is not None:
            problems += _resolve_weights(parts.backbone, backbone.cls, base, at)
    losses = []
    seen: dict[str, int] = {}
    for i, spec in enumerate(parts.loss or []):
        if spec is None:
            continue
        loss = _choice(registry, "loss", spec.name, spec.params, ("loss", i), at, problems, quoted)
        if loss is None:
            continue
        seen[spec.name] = seen.get(spec.name, 0) + 1
        label_ = spec.name if seen[spec.name] == 1 else f"{spec.name}#{seen[spec.name]}"
        layers = spec.layer_table(loss.cls.default_layers) if loss.cls.reads_features else {}
        # `strength` moves along the style/structure trade without the user knowing which
        # weights to change: it scales exactly the terms that pull towards the style image.
        pulls_to_style = loss.cls.reads_features and "style" in loss.cls.target_images
        strength = parts.strength if parts.strength is not None and pulls_to_style else 1.0
        losses.append(LossChoice(i, label_, loss, spec.weight * strength, layers))
        if backbone is not None:
            problems += _check_layers(spec, loss.cls, backbone.cls, backbone.params, i, at)
    chosen = {}
    for kind in ("optimizer", "scheduler"):
        spec = getattr(parts, kind)
        if spec is not None:
            chosen[kind] = _choice(registry, kind, spec.name, spec.params, (kind,), at, problems, quoted)
    # Checked in every recipe, a still image's too, so that a recipe is right or wrong whatever
    # it is used for; built only for a video (a provider may load a model). A path in its
    # params (RAFT's weights) is read from the recipe's folder, as the backbone's weights are.
    flow = None
    if parts.flow is not None:
        flow = _choice(registry, "flow", parts.flow.name, parts.flow.params, ("flow",), at, problems, quoted,
                       context={"base": base})
    device = dtype = None
    if parts.run is not None:
        device, dtype = _device_and_precision(parts.run, at, problems)
        if dtype is not None:
            problems += input_checks.weight_problems(parts, losses, dtype, at)
        if parts.run.checkpoint and backbone is not None and not backbone.cls.supports_checkpointing:
            problems.append(at(("run", "checkpoint"), f"backbone '{backbone.name}' does not support checkpointing - set it to false"))
    if inputs is not None and backbone is not None:
        problems += input_checks.size_problems(parts, inputs, backbone.cls, backbone.params, losses, at, fit)
    problems += construction_problems(losses, chosen, problems, at)  # what a component's __init__ refuses
    if problems or recipe is None:
        raise UserError(problems)
    return Plan(source=label, recipe=recipe, backbone=backbone, weights=recipe.backbone.weights, losses=tuple(losses),
                optimizer=chosen["optimizer"], scheduler=chosen["scheduler"], flow=flow, device=device, dtype=dtype,
                stages=planned_stages(recipe, factor), steps_factor=factor, images=inputs, output=Path(recipe.output.path),
                plugin_versions={p.package: p.version for p in registry.plugins}, at=at, registry=registry)


def _device_and_precision(run, at, problems: list[Problem]):
    try:
        device = resolve_device(run.device)
    except UserError as exc:
        problems.append(at(("run", "device"), exc.problems[0].message))
        return None, None
    try:
        return device, resolve_precision(run.precision, device)
    except UserError as exc:
        problems.append(at(("run", "precision"), exc.problems[0].message))
        return device, None


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
        elif name in ("strength", "more_steps_above"):  # numbers: their own problems are reported by the schema
            sections[name] = None
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


def _resolve(base: Path, value: str) -> str:
    try:
        value = str(Path(value).expanduser())
    except RuntimeError:  # ~user of no such user: leave it, the file check reports it
        pass
    return os.path.normpath(base / value)


def _choice(registry: Registry, kind: str, name: str, raw_params: dict, loc: tuple, at, problems: list[Problem],
            quoted=None, context: dict | None = None) -> Choice | None:
    """The registered class of `name` with its params validated, or None (problems added).
    `quoted`: see `quoted_values`; `context`: pydantic's validation context for its Params."""
    try:
        cls = registry.get(kind, name)
    except UserError as exc:
        problems.append(at((*loc, "name"), exc.problems[0].message))
        return None
    package = registry.components[kind][name].plugin.package
    found = quoted(cls.Params, raw_params, (*loc, "params")) if quoted is not None else []
    try:
        params = cls.Params.model_validate(raw_params, context=context)
    except ValidationError as exc:
        found = instead([pydantic_problem(err, (*loc, "params"), cls.Params, at) for err in exc.errors()], found)
        params = None
    problems.extend(Problem(f"{problem.message} ({kind} '{name}' of package '{package}')", problem.file, problem.line,
                         problem.field) for problem in found)
    # Quoted numbers are reported, but read as pydantic reads them, so that the checks that
    # need the component (its layers, sizes) still run: every problem is told at once.
    return Choice(cls, params, package) if params is not None else None


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


def _resolve_image_paths(images: ImagesSpec, base: Path) -> None:
    def resolve(value: str) -> str:
        return value if value == MEMORY else _resolve(base, value)

    images.content = resolve(images.content)
    images.style = [resolve(p) for p in images.style]
    if images.style_masks:
        images.style_masks = [resolve(p) for p in images.style_masks]
    if images.init not in INIT_CHOICES:
        images.init = resolve(images.init)


def _open_images(images: ImagesSpec, memory: dict[str, Any], at, problems: list[Problem],
                 decoded: dict | None = None) -> InputImages | None:
    """Decode every input image now, so that a file that cannot be read is reported before
    the run (a truncated JPEG passes a header check and fails only when decoded). Style
    images found in `decoded` are not decoded again."""
    before = len(problems)

    def read(loc: tuple, path: str, given=None):
        if given is not None:
            return rgb_of(given, images)
        try:
            return open_rgb(path, images, warn=True)  # warn: an animation's first frame is used
        except UserError as exc:
            problems.append(at(loc, exc.problems[0].message))
            return None

    def read_style(loc: tuple, path: str, given=None):
        key = None if given is not None or decoded is None else _decoded_key(path, images)
        if key is not None and key in decoded:
            return decoded[key]
        image = read(loc, path, given)
        if key is not None and image is not None:
            decoded[key] = image
        return image

    content = read(("images", "content"), images.content, memory.get("content"))
    given_styles = memory.get("style") or [None] * len(images.style)
    styles = [read_style(("images", "style", i), p, g) for i, (p, g) in enumerate(zip(images.style, given_styles))]
    masks = [read(("images", "style_masks", i), p) for i, p in enumerate(images.style_masks or [])]
    init = images.init if images.init in INIT_CHOICES else read(("images", "init"), images.init)
    if len(problems) > before:
        return None
    raw_weights = images.style_weights or [1.0] * len(styles)
    return InputImages(content=content, styles=tuple(styles), style_weights=tuple(w / sum(raw_weights) for w in raw_weights),
                       masks=tuple(masks) if images.style_masks else None, init=init)


def _decoded_key(path: str, images: ImagesSpec) -> tuple | None:
    """What a decoded image depends on: the file (so that a file replaced between two items is
    decoded again: its inode and change time move with any write or rename, even where the
    modification time is kept, as by `cp -p`) and the fields that change decoding; None if
    unreadable."""
    try:
        found = os.stat(path)
    except (OSError, ValueError):
        return None  # open_rgb reports it
    return (os.path.realpath(path), found.st_dev, found.st_ino, found.st_size, found.st_mtime_ns, found.st_ctime_ns,
            images.background, images.max_pixels)


def _missing_packages(requires: list[str], registry: Registry, at) -> list[Problem]:
    loaded = {normalize_package(p) for p in registry.packages()}
    skipped = {normalize_package(p) for p in registry.skipped_packages}
    broken = {normalize_package(b.plugin.package): b for b in registry.broken}
    problems = []
    for i, package in enumerate(requires):
        wanted = normalize_package(package)
        if wanted in loaded:
            continue
        if wanted in broken:
            problems.append(at(("requires", i), f"plugin package '{package}' is installed but broken: {broken[wanted].describe()}"))
        elif wanted in skipped:
            problems.append(at(("requires", i), f"plugin package '{package}' is installed but {PLUGINS_ENV} leaves it out - add it to {PLUGINS_ENV}"))
        else:
            # A near-miss of an installed name is a typo: suggesting `pip install` of it would
            # invite installing whatever squats on the misspelt name.
            # The cutoff is high because plugin names share their `stylekit-` prefix:
            # 'stylekit-foo' is no typo of 'stylekit-mrf' (0.83), 'stylekit-laplacain' is of
            # 'stylekit-laplacian' (0.94).
            installed = {normalize_package(name): name for name in installed_distributions()}
            close = difflib.get_close_matches(wanted, installed, n=3, cutoff=0.85)
            if close:
                names = " or ".join(f"'{installed[name]}'" for name in close)
                problems.append(at(("requires", i), f"plugin package '{package}' is not installed - did you mean "
                                                    f"the installed {names}? Correct the name in requires"))
            else:
                problems.append(at(("requires", i), f"this recipe needs the plugin package '{package}' - install it with `pip install {package}`"))
    return problems
