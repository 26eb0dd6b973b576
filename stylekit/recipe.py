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
from typing import Any, Callable, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from .components import Backbone
from .errors import Problem, UserError, did_you_mean
from .plugins import Registry
from .tomlpos import dotted, key_lines, line_of

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover
    import tomli as tomllib


class Strict(BaseModel):
    model_config = ConfigDict(extra="forbid")


INIT_CHOICES = ("content", "style", "noise")


class ImagesSpec(Strict):
    #: The content image (a photo): its structure is kept.
    content: str
    #: One style image or several, blended by `style_weights`.
    style: list[str] = Field(min_length=1)
    #: Blend weights of the style images (normalized to sum to 1); equal when absent.
    style_weights: list[float] | None = None
    #: Spatial control: one mask image per style (white: this style applies, black: not);
    #: where no mask is white, no style applies. Read by the `gram` loss.
    style_masks: list[str] | None = None
    #: The style image's size relative to the output (by pixel count), independent of it.
    style_scale: float = Field(1.0, gt=0)
    #: "area": keep the style image's aspect, match the output's pixel count x style_scale^2;
    #: "stretch": resize to the output's exact height and width (as the chapter does).
    style_fit: Literal["area", "stretch"] = "area"
    #: Where the synthesized image starts: "content", "style", "noise", or an image file.
    init: str = "content"
    #: Keep the content's colours: "luminance" transfers style on luminance only and puts the
    #: content's colour back; "histogram" matches the style image's colours to the content's
    #: before the run (Gatys et al. 2017). "none": the style's colours.
    preserve_colors: Literal["none", "luminance", "histogram"] = "none"

    @field_validator("style", mode="before")
    @classmethod
    def one_or_many(cls, value):
        return [value] if isinstance(value, str) else value

    @model_validator(mode="after")
    def weights_match(self):
        if self.style_weights is not None and len(self.style_weights) != len(self.style):
            raise ValueError(f"style_weights has {len(self.style_weights)} entries for {len(self.style)} style images")
        if self.style_masks is not None and len(self.style_masks) != len(self.style):
            raise ValueError(f"style_masks has {len(self.style_masks)} entries for {len(self.style)} style images")
        if self.style_weights is not None and (min(self.style_weights) < 0 or sum(self.style_weights) <= 0):
            raise ValueError("style_weights must be non-negative with a positive sum")
        return self


class OutputSpec(Strict):
    #: The stylized image (.png or .jpg); its run record is written beside it as .json.
    path: str = "stylized.png"
    #: Output size in pixels; give one to keep the content image's aspect ratio.
    width: int | None = Field(None, gt=0, le=16384)
    #: Output height in pixels (the default width is 512 when neither is given).
    height: int | None = Field(None, gt=0, le=16384)
    #: Save the current image every N steps (0: never) next to the output.
    save_every: int = Field(0, ge=0)
    #: Write a JSON run record next to the output.
    record: bool = True
    #: Also write <name>.losses.png (loss curves) and, with save_every, <name>.strip.png.
    plot: bool = False

    @field_validator("path")
    @classmethod
    def image_suffix(cls, value: str):
        if Path(value).suffix.lower() not in (".png", ".jpg", ".jpeg"):
            raise ValueError(f"output path '{value}' must end in .png, .jpg or .jpeg")
        return value


class BackboneSpec(Strict):
    #: A registered backbone (`stylekit plugins` lists them).
    name: str = "vgg19"
    #: A name the backbone knows (vgg19: caffe, torchvision, random) or a state-dict path.
    weights: str | None = None
    #: The backbone's own params (vgg19: pooling, feature_scale, normalization).
    params: dict[str, Any] = {}


class LossSpec(Strict):
    #: A registered loss term (`stylekit plugins` lists them).
    name: str
    #: The term's weight in the total loss.
    weight: float = 1.0
    #: Layers the term reads: a list, or a table of layer -> per-layer weight.
    layers: list[str] | dict[str, float] | None = None
    #: Per-layer weights for a list of `layers`, in the same order.
    layer_weights: list[float] | None = None
    #: The loss term's own params, checked against its Params model.
    params: dict[str, Any] = {}

    @model_validator(mode="after")
    def weights_match(self):
        if self.layer_weights is not None:
            if not isinstance(self.layers, list):
                raise ValueError("layer_weights needs `layers` as a list of the same length")
            if len(self.layer_weights) != len(self.layers):
                raise ValueError(f"layer_weights has {len(self.layer_weights)} entries for {len(self.layers)} layers")
        return self

    def layer_table(self, default: tuple[str, ...]) -> dict[str, float]:
        if isinstance(self.layers, dict):
            return dict(self.layers)
        names = list(default) if self.layers is None else self.layers
        weights = self.layer_weights or [1.0] * len(names)
        return dict(zip(names, weights))


class ComponentSpec(Strict):
    #: A registered component; optimizer defaults to adam, scheduler to none.
    name: str
    #: The component's own params, checked against its Params model.
    params: dict[str, Any] = {}


class RunSpec(Strict):
    #: Optimizer steps (one backbone forward and backward pass each).
    steps: int = Field(500, ge=1)
    #: auto (CUDA, then Apple MPS, then CPU), cpu, cuda, cuda:N or mps.
    device: str = "auto"
    #: auto picks bf16 where the hardware runs it fast (AMX/AVX-512-BF16 CPUs, Ampere+ GPUs).
    precision: Literal["auto", "fp32", "bf16", "fp16"] = "auto"
    #: Seeds torch before anything random; None: a fresh run each time.
    seed: int | None = 0
    #: Keep the image in [0, 1] after every step.
    clamp: bool = True
    #: Print the loss terms every N steps (0: never).
    progress_every: int = Field(10, ge=0)
    #: Output the exponential moving average of the iterates with this decay (0: off), e.g. 0.95.
    ema_decay: float = Field(0.0, ge=0, lt=1)
    #: Activation checkpointing: recompute the backbone's activations in the backward pass
    #: instead of keeping them: less memory for very large outputs, at the cost of the recompute.
    checkpoint: bool = False
    #: Opt-in torch.compile of the backbone's forward pass; see docs/performance.md before using.
    compile: bool = False

    @field_validator("device")
    @classmethod
    def known_device(cls, value: str):
        base = value.split(":")[0]
        if base not in ("auto", "cpu", "cuda", "mps"):
            raise ValueError(f"unknown device '{value}'{did_you_mean(base, ['auto', 'cpu', 'cuda', 'mps'])}")
        return value


class StageSpec(Strict):
    #: This stage's output width (the height keeps the content's aspect unless given).
    width: int = Field(gt=0, le=16384)
    height: int | None = Field(None, gt=0, le=16384)
    #: Steps at this size.
    steps: int = Field(ge=1)


class Recipe(Strict):
    #: Plugin distributions this recipe needs, e.g. ["stylekit-mrf"].
    requires: list[str] = []
    images: ImagesSpec
    output: OutputSpec = OutputSpec()
    backbone: BackboneSpec = BackboneSpec()
    loss: list[LossSpec] = Field(min_length=1)
    optimizer: ComponentSpec = ComponentSpec(name="adam")
    scheduler: ComponentSpec = ComponentSpec(name="none")
    run: RunSpec = RunSpec()
    #: Coarse-to-fine: each stage starts from the upsampled result of the one before and
    #: recomputes targets at its size; the last stage's size is the output's. Overrides
    #: output.width/height and run.steps when given.
    stage: list[StageSpec] = []


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


# ---------------------------------------------------------------- overrides


def parse_override(text: str) -> tuple[tuple, Any]:
    """'optimizer.params.lr=0.5' -> (('optimizer', 'params', 'lr'), 0.5); values are TOML."""
    if "=" not in text:
        raise UserError(Problem(f"--set '{text}': write KEY=VALUE, e.g. --set optimizer.params.lr=0.5"))
    key, value = text.split("=", 1)
    path: list = []
    for part in key.strip().replace("[", ".").replace("]", "").split("."):
        if not part:
            raise UserError(Problem(f"--set '{text}': empty part in key '{key}'"))
        path.append(int(part) if part.isdigit() else part)
    try:
        parsed = tomllib.loads(f"v = {value.strip()}")["v"]
    except tomllib.TOMLDecodeError:
        parsed = value.strip()  # a bare word: take it as a string
    return tuple(path), parsed


def apply_override(data: dict, path: tuple, value: Any) -> None:
    node = data
    for i, part in enumerate(path[:-1]):
        nxt = path[i + 1]
        if isinstance(part, int):
            if not isinstance(node, list) or part >= len(node):
                raise UserError(Problem(f"--set {dotted(path)}: there is no {dotted(path[:i + 1])} in the recipe"))
            node = node[part]
        else:
            node = node.setdefault(part, [] if isinstance(nxt, int) else {})
    last = path[-1]
    if isinstance(last, int):
        if not isinstance(node, list) or last >= len(node):
            raise UserError(Problem(f"--set {dotted(path)}: there is no {dotted(path)} in the recipe"))
    node[last] = value


# ---------------------------------------------------------------- loading


def read_toml(path: Path) -> tuple[dict, str]:
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise UserError(Problem("recipe file not found - check the path", file=str(path))) from None
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
    for key, value in (overrides or {}).items():
        apply_override(data, key, value)
    at = _locator(path, key_lines(text))
    problems: list[Problem] = []
    try:
        recipe = Recipe.model_validate(data)
    except ValidationError as exc:
        problems += [_pydantic_problem(err, (), Recipe, at) for err in exc.errors()]
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
        problems += _check_images(parts.images, at)
    if parts.output is not None:
        parts.output.path = _resolve(base, parts.output.path)

    backbone_cls = backbone_params = None
    if parts.backbone is not None:
        backbone_cls = _component(registry, "backbone", parts.backbone.name, ("backbone", "name"), at, problems)
        backbone_params = _params(registry, backbone_cls, parts.backbone.params, ("backbone", "params"), at, problems)
        if backbone_cls is not None:
            problems += _resolve_weights(parts.backbone, backbone_cls, base, at)
    loss_params = []
    for i, spec in enumerate(parts.loss or []):
        if spec is None:
            continue
        cls = _component(registry, "loss", spec.name, ("loss", i, "name"), at, problems)
        loss_params.append(_params(registry, cls, spec.params, ("loss", i, "params"), at, problems))
        if cls is not None and backbone_cls is not None and backbone_params is not None:
            problems += _check_layers(spec, cls, backbone_cls, backbone_params, i, at)
    other_params = []
    for kind in ("optimizer", "scheduler"):
        spec = getattr(parts, kind)
        if spec is not None:
            cls = _component(registry, kind, spec.name, (kind, "name"), at, problems)
            other_params.append(_params(registry, cls, spec.params, (kind, "params"), at, problems))
    if problems or recipe is None:
        raise UserError(problems)
    return LoadedRecipe(path, recipe, backbone_params, loss_params, *other_params, at=at)


class _Parts:
    """The sections of a recipe that pass the schema on their own (None where they fail)."""

    def __init__(self, **sections):
        self.__dict__.update(sections)


def _valid_parts(data: dict) -> _Parts:
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
    return _Parts(**sections)


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


def _locator(path: Path, lines: dict):
    def at(loc: tuple, message: str) -> Problem:
        return Problem(message, file=str(path), line=line_of(lines, loc), field=dotted(loc) or None)
    return at


def _resolve(base: Path, value: str) -> str:
    return os.path.normpath(base / Path(value).expanduser())


def _pydantic_problem(err: dict, prefix: tuple, model: type[BaseModel] | None, at) -> Problem:
    loc = prefix + tuple(part for part in err["loc"] if not _is_union_tag(part))
    if err["type"] == "extra_forbidden":
        known = _fields_at(model, tuple(err["loc"][:-1])) if model is not None else []
        return at(loc, f"unknown key '{err['loc'][-1]}'{did_you_mean(str(err['loc'][-1]), known)}")
    message = err["msg"].removeprefix("Value error, ")
    if err["type"] == "missing":
        return at(loc, "required field is missing - add it")
    return at(loc, f"{message} (got {err['input']!r})")


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


def _check_images(images: ImagesSpec, at) -> list[Problem]:
    from .images import check_image

    problems = []
    init = [(("images", "init"), images.init)] if images.init not in INIT_CHOICES else []
    init += [(("images", "style_masks", i), p) for i, p in enumerate(images.style_masks or [])]
    for loc, path in [(("images", "content"), images.content),
                      *((("images", "style", i), p) for i, p in enumerate(images.style)), *init]:
        reason = check_image(path)
        if reason:
            problems.append(at(loc, f"{reason}: {path}"))
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
