"""Checks that a component class keeps the contract of its kind, by running it on the CPU
the way the engine does: for plugin authors' tests (`stylekit.testing.check_loss` and the
others re-export these) and for stylekit's own.

Each check builds the component, calls every method the engine calls, with what the engine
passes, and asserts on what comes back. A failure is an `AssertionError` whose message
names the class, says what the contract wants and what the class did; an exception raised
by the class's own code is chained to it, so pytest shows its traceback too.

Tolerances: where two computations that should agree are compared (a loss's `together`
against its `forward`, an optimizer's `build_together` against `build`, an image's
features stacked with another against alone, a truncated backbone's against the whole),
they differ only in the order of float32 sums. Over the few thousand elements of these
small images that moves a result by about 1e-6 of its size; the checks allow 1e-4 of the
largest magnitude, while a real mistake (another image's target, a term left out, a
coupling between images) is off by a large fraction of it.
"""

from __future__ import annotations

import copy
import math
from typing import Any, Callable

import torch
from pydantic import BaseModel, ValidationError

from stylekit.contract.components import Backbone, LossTerm, Optimizer, Scheduler, Targets
from stylekit.run.engine import network_input
from stylekit.run.together import _together_is_its_own

#: Relative agreement asked of two computations that differ only in rounding (see above).
AGREE = 1e-4
#: Steps an optimizer or a scheduler is run for: enough for L-BFGS to use its history and
#: for a checkpoint taken midway to have state to restore.
STEPS = 6


class _Who:
    """How failures name the class under check: `loss 'edges' (EdgeLoss)`."""

    def __init__(self, cls: type, kind: str, base: type):
        if not (isinstance(cls, type) and issubclass(cls, base)):
            raise AssertionError(f"{cls!r} is checked as a {kind}, but it is not a subclass of "
                                 f"stylekit.contract.{base.__name__} - subclass it")
        self.cls = cls
        self.text = f"{kind} '{getattr(cls, 'name', '?')}' ({cls.__qualname__.rpartition('<locals>.')[2]})"

    def fail(self, wants: str, did: str) -> AssertionError:
        """'<class>: <what the contract wants> - <what it did>'."""
        return AssertionError(f"{self.text}: {wants} - {did}")

    def call(self, what: str, function: Callable, *args, wants: str = "") -> Any:
        """`function(*args)`; an exception it raises becomes a failure naming `what`."""
        try:
            return function(*args)
        except Exception as exc:
            first = (str(exc).strip().splitlines() or [""])[0]
            said = f"{type(exc).__name__}{': ' + first if first else ''}"
            raise AssertionError(f"{self.text}: {what} raised {said}{' - ' + wants if wants else ''}") from exc

    def params(self, params: BaseModel | dict | None) -> BaseModel:
        if isinstance(params, BaseModel):
            return params
        try:
            return self.cls.Params.model_validate(params or {})
        except ValidationError as exc:
            given = "the params given" if params else "its Params' defaults"
            raise AssertionError(f"{self.text}: {given} do not validate ({exc.errors()[0]['msg']} at "
                                 f"{'.'.join(map(str, exc.errors()[0]['loc']))}) - pass params=... that do") from None


def _generator(seed: int) -> torch.Generator:
    return torch.Generator().manual_seed(seed)


def _images(count: int, height: int, width: int, seed: int) -> list[torch.Tensor]:
    """`count` different random test images, (1, 3, height, width) in [0.1, 0.9]."""
    return [0.1 + 0.8 * torch.rand(1, 3, height, width, generator=_generator(seed + k)) for k in range(count)]


def _describe(value: Any) -> str:
    if isinstance(value, torch.Tensor):
        return f"a {value.dtype} tensor of shape {tuple(value.shape)}"
    return f"{type(value).__name__} {value!r}"[:120]


def _largest_gap(a: torch.Tensor, b: torch.Tensor) -> tuple[float, float]:
    """(largest |a - b|, largest |b|), in float64."""
    a, b = a.detach().double(), b.detach().double()
    return (a - b).abs().max().item(), b.abs().max().item()


def _agree(a: torch.Tensor, b: torch.Tensor) -> bool:
    gap, scale = _largest_gap(a, b)
    return gap <= AGREE * scale + 1e-12


# ---------------------------------------------------------------- loss terms


def check_loss(cls: type[LossTerm], backbone: Backbone, params: BaseModel | dict | None = None,
               layers: dict[str, float] | list[str] | tuple[str, ...] | None = None,
               default_layers: tuple[str, ...] = ()) -> None:
    """Check the loss term `cls` against `backbone`'s features (see
    `stylekit.testing.check_loss`, which passes the tiny backbone; the backbone is frozen
    and put in eval mode, as a run does). `layers`: the layers it reads (a list, or a dict
    of per-layer weights); by default its `default_layers` where the backbone has them all,
    else `default_layers` given here."""
    who = _Who(cls, "loss", LossTerm)
    params = who.params(params)
    layers = _loss_layers(who, cls, backbone, layers, default_layers)
    read = frozenset(layers)
    backbone.requires_grad_(False).eval()
    contents, styles = _images(3, 24, 32, seed=1), _images(3, 28, 20, seed=11)
    synthesized = _images(3, 24, 32, seed=21)

    term = _built_term(who, params, layers)
    targets = _targets(backbone, term, contents[0], styles[0], torch.float32)
    _prepare(who, term, targets)
    _forward_and_gradient(who, term, backbone, synthesized[0], read, torch.float32)

    # bf16 features, as a run with precision = "bf16" hands them over; the image stays float32.
    low = copy.deepcopy(backbone).to(torch.bfloat16)
    term = _built_term(who, params, layers)
    _prepare(who, term, _targets(low, term, contents[0], styles[0], torch.bfloat16))
    _forward_and_gradient(who, term, low, synthesized[0], read, torch.bfloat16, precision=" with bf16 features")

    if _offers_together(cls):
        _check_together(who, params, layers, backbone, contents, styles, synthesized, read)


def _loss_layers(who: _Who, cls, backbone: Backbone, layers, fallback: tuple[str, ...]) -> dict[str, float]:
    if not cls.reads_features:
        return {}
    known = backbone.layer_names
    if layers is None:
        layers = cls.default_layers if cls.default_layers and set(cls.default_layers) <= set(known) else fallback
        if not layers:
            raise AssertionError(f"{who.text}: reads features but has no default_layers the backbone offers "
                                 f"({', '.join(known)}) - pass layers=[...]")
    table = dict(layers) if isinstance(layers, dict) else {name: 1.0 for name in layers}
    unknown = [name for name in table if name not in known]
    if unknown:
        raise AssertionError(f"layers {', '.join(unknown)} are not the backbone's ({', '.join(known)}) - pass layers it has")
    return table


def _built_term(who: _Who, params: BaseModel, layers: dict[str, float]) -> LossTerm:
    term = who.call(f"{who.cls.__name__}(params, layers)", who.cls, params, dict(layers))
    if "_modules" not in vars(term):
        raise who.fail("__init__ must call super().__init__(params, layers), which sets the term up as a torch module",
                       "it did not")
    if getattr(term, "params", None) != params or getattr(term, "layers", None) != layers:
        raise who.fail("the built term keeps its params as self.params and its layers as self.layers (what "
                       "super().__init__(params, layers) sets)",
                       f"it holds params={getattr(term, 'params', None)!r}, layers={getattr(term, 'layers', None)!r}")
    return term


def _targets(backbone: Backbone, term: LossTerm, content: torch.Tensor, style: torch.Tensor,
             dtype: torch.dtype) -> Targets:
    """As `stylekit.run.build.compute_targets` makes them: features only of the images the
    term's `target_images` names."""
    images = term.target_images
    with torch.no_grad():
        def features(image: torch.Tensor, wanted: bool) -> dict[str, torch.Tensor]:
            if not wanted or not term.layers:
                return {}
            return backbone.features(network_input(image, dtype), frozenset(term.layers))
        return Targets(content_image=content, content=features(content, "content" in images), style_images=[style],
                       styles=[features(style, "style" in images)], style_weights=[1.0])


def _prepare(who: _Who, term: LossTerm, targets: Targets) -> None:
    before = _snapshot(targets.content, *targets.styles)
    with torch.no_grad():
        who.call("prepare(targets)", term.prepare, targets,
                 wants=f"targets hold the features of its layers ({', '.join(term.layers) or 'none'}) for the "
                       f"images its target_images names ({', '.join(sorted(term.target_images))})")
    if not _unchanged(before, _snapshot(targets.content, *targets.styles)):
        raise who.fail("prepare(targets) must leave the targets as they are (every term shares them)",
                       "it changed them in place - copy what you change")


def _snapshot(*tables: dict[str, torch.Tensor]) -> list[torch.Tensor]:
    return [value.detach().clone() for table in tables for value in table.values()]


def _unchanged(before: list[torch.Tensor], after: list[torch.Tensor]) -> bool:
    return all(torch.equal(a, b) for a, b in zip(before, after))


def _forward_and_gradient(who: _Who, term: LossTerm, backbone: Backbone, start: torch.Tensor, layers: frozenset[str],
                          dtype: torch.dtype, precision: str = "") -> None:
    image = start.clone().requires_grad_(True)
    features = backbone.features(network_input(image, dtype), layers) if layers else {}
    before = _snapshot(features)
    value = who.call(f"forward(features, image){precision}", term, features, image,
                     wants="features may arrive in bf16: compute in float32 (.float()) where it matters" if precision else "")
    _is_value(who, value, f"forward(features, image){precision}")
    if not _unchanged(before, _snapshot(features)):
        raise who.fail("forward must leave the features as they are (every term shares them)",
                       "it changed them in place - copy what you change")
    if not value.requires_grad:
        raise who.fail(f"the value of forward(features, image){precision} must depend on the image, through the "
                       "features or the image itself, so that its gradient reaches the pixels",
                       "it carries no gradient (computed under torch.no_grad(), or from .detach() or .item()?)")
    who.call(f"the backward pass of forward's value{precision}", value.backward)
    grad = image.grad
    if grad is None or not bool(grad.abs().sum() > 0):
        raise who.fail(f"the value of forward(features, image){precision} must depend on the image, through the "
                       "features or the image itself, so that its gradient reaches the pixels",
                       "the image got no gradient" if grad is None else "the image's gradient is zero everywhere "
                       "(a value computed without gradients, .detach() or .item()?)")
    if not bool(torch.isfinite(grad).all()):
        raise who.fail(f"the gradient of forward's value{precision} must be finite", "it holds nan or inf")


def _is_value(who: _Who, value: Any, what: str) -> None:
    if not isinstance(value, torch.Tensor) or value.dim() != 0 or not value.is_floating_point():
        raise who.fail(f"{what} must return the term's unweighted value as a 0-dim float tensor",
                       f"it returned {_describe(value)}")
    if not bool(torch.isfinite(value)):
        raise who.fail(f"{what} must return a finite value", f"it returned {value.item()}")


def _offers_together(cls: type[LossTerm]) -> bool:
    """Whether the engine would call `cls.together` for a group (see stylekit.run.together)."""
    return next(base for base in cls.__mro__ if "together" in vars(base)) is not LossTerm and _together_is_its_own(cls)


def _check_together(who: _Who, params, layers, backbone, contents, styles, synthesized, read) -> None:
    """A group of 3 images, each with its own targets: `together`'s values and gradients
    against each term's `forward` on its own slice of the same features."""
    terms = []
    for content, style in zip(contents, styles):
        term = _built_term(who, params, layers)
        _prepare(who, term, _targets(backbone, term, content, style, torch.float32))
        terms.append(term)
    evaluate = who.call("together(terms)", who.cls.together, terms)
    if evaluate is None:
        return  # it declines this group: each image's term is then called on its own
    if not callable(evaluate):
        raise who.fail("together(terms) must return a function of (features, images), or None",
                       f"it returned {_describe(evaluate)}")
    with torch.no_grad():
        stacked = backbone.features(torch.cat(synthesized), read) if read else {}

    def leaves(features: dict[str, torch.Tensor], images: torch.Tensor):
        return ({name: value.detach().clone().requires_grad_(True) for name, value in features.items()},
                images.detach().clone().requires_grad_(True))

    features, images = leaves(stacked, torch.cat(synthesized))
    values = who.call("the function together(terms) returned", evaluate, features, images)
    if not isinstance(values, torch.Tensor) or tuple(values.shape) != (len(terms),):
        raise who.fail(f"the function together(terms) returns must give one value per image, a ({len(terms)},) tensor",
                       f"it gave {_describe(values)}")
    values.sum().backward()
    for k, term in enumerate(terms):
        alone, image = leaves({name: value[k:k + 1] for name, value in stacked.items()}, images[k:k + 1])
        value = term(alone, image)
        value.backward()
        if not _agree(values[k], value):
            raise who.fail("together(terms) must give each image the value its term's forward gives it alone",
                           f"image {k} of 3: together gave {values[k].item():.6g}, forward {value.item():.6g}")
        pairs = [(f"the gradient of features['{name}']", features[name].grad, alone[name].grad) for name in alone]
        for what, grouped, single in pairs + [("the image's gradient", images.grad, image.grad)]:
            if single is None:
                continue
            grouped = None if grouped is None else grouped[k:k + 1]
            if grouped is None or not _agree(grouped, single):
                gap = "none" if grouped is None else f"differs by up to {_largest_gap(grouped, single)[0]:.3g}"
                raise who.fail("together(terms) must give each image the gradient its term's forward gives it alone",
                               f"image {k} of 3: {what} from together {gap} (forward's largest is "
                               f"{single.abs().max().item():.3g})")


# ---------------------------------------------------------------- backbones


def check_backbone(cls: type[Backbone], params: BaseModel | dict | None = None, weights: str | None = None) -> None:
    """Check the backbone `cls`, built with `params` (default: its Params' defaults) and
    `weights` (default: "random" where it offers it, else its first weight choice)."""
    who = _Who(cls, "backbone", Backbone)
    params = who.params(params)
    choices = cls.weight_choices
    if isinstance(choices, str) or not choices or not all(isinstance(c, str) for c in choices):
        raise who.fail("weight_choices must be a non-empty tuple of names", f"it is {choices!r}")
    weights = weights or ("random" if "random" in choices else choices[0])
    names = who.call("layer_names_for(params)", cls.layer_names_for, params)
    if isinstance(names, str) or not names or not all(isinstance(n, str) for n in names) or len(set(names)) != len(names):
        raise who.fail("layer_names_for(params) must list its layers' names, each once, in forward order",
                       f"it returned {names!r}")
    names = tuple(names)
    backbone = who.call(f"{cls.__name__}(params, {weights!r})", cls, params, weights)
    trainable = [name for name, p in backbone.named_parameters() if p.requires_grad]
    if trainable:
        raise who.fail("a backbone is frozen: its parameters must not require gradients (self.requires_grad_(False) "
                       "in __init__; SequentialBackbone does it)",
                       f"{len(trainable)} require them, e.g. {trainable[0]}")
    backbone.eval()  # as the engine does before a run
    _check_min_sides(who, backbone, params, names)
    side = max(16, _min_side(who, params, frozenset(names)))
    shape = (side + side // 2, side)  # not square: a swapped height and width shows
    reference = _check_features(who, backbone, names, shape, torch.float32)
    # bf16 on a copy: the truncation below is checked against the float32 features above.
    _check_features(who, copy.deepcopy(backbone).to(dtype=torch.bfloat16, memory_format=torch.channels_last), names,
                    shape, torch.bfloat16, count=1, precision=" in bf16")
    _check_truncate(who, backbone, names, shape, reference)


def _min_side(who: _Who, params, layers: frozenset[str]) -> int:
    need = who.call("min_input_side_for(params, layers)", who.cls.min_input_side_for, params, layers)
    if isinstance(need, bool) or not isinstance(need, int) or need < 1:
        raise who.fail("min_input_side_for(params, layers) must return a whole number of pixels, at least 1",
                       f"it returned {need!r} for {sorted(layers)}")
    return need


def _check_min_sides(who: _Who, backbone: Backbone, params, names: tuple[str, ...]) -> None:
    """Every layer from an image of exactly the side min_input_side_for gives for it alone:
    recipes are checked against that number, so an image that size must run. Layers that
    need the same side are asked for together, in one pass."""
    by_side: dict[int, list[str]] = {}
    for name in names:
        by_side.setdefault(_min_side(who, params, frozenset({name})), []).append(name)
    for need, layers in by_side.items():
        image = torch.full((1, 3, need, need), 0.5)
        try:
            with torch.no_grad():
                features = backbone.features(image, frozenset(layers))
        except Exception:  # noqa: BLE001 - asked again layer by layer, to name the first that fails
            for name in layers:
                with torch.no_grad():
                    who.call(f"features(image, {{'{name}'}}) on a {need}x{need} image", backbone.features, image,
                             frozenset({name}),
                             wants=f"min_input_side_for(params, {{'{name}'}}) says an image of {need}x{need} suffices; "
                                   "return the fewest pixels on each side an image needs (each pooling or stride-2 "
                                   "layer before the layer adds)")
            raise  # each alone went through: the layers together are what fails
        shown = "{" + ", ".join(repr(name) for name in layers) + "}"
        if not isinstance(features, dict) or any(name not in features for name in layers):
            raise who.fail("features(image, layers) returns a dict with a tensor for each name in layers",
                           f"asked for {shown}, it returned "
                           f"{sorted(features) if isinstance(features, dict) else _describe(features)}")
        for name in layers:
            if 0 in features[name].shape:
                raise who.fail(f"an image of the side min_input_side_for gives ({need}) leaves layer '{name}' at "
                               "least 1x1", f"it is {_describe(features[name])}")


def _check_features(who: _Who, backbone: Backbone, names: tuple[str, ...], shape: tuple[int, int],
                    dtype: torch.dtype, count: int = 2, precision: str = "") -> dict[str, torch.Tensor]:
    """`count` images stacked: every layer, 4-D with the batch first, finite, the gradient
    back to each image and to no parameter, and (with 2) each image's features what it gets
    alone."""
    images = torch.cat(_images(count, *shape, seed=31)).requires_grad_(True)
    layers = frozenset(names)
    what = f"features(images, layers){precision}"
    features = who.call(what, backbone.features, network_input(images, dtype), layers,
                        wants="the network is cast to bf16 as a whole: keep constants in register_buffer so that they "
                              "follow it" if precision else "")
    if not isinstance(features, dict):
        raise who.fail("features(image, layers) returns a dict of layer name -> tensor", f"it returned {_describe(features)}")
    missing = [name for name in names if name not in features]
    if missing:
        raise who.fail("features(image, layers) returns a tensor for every name in layers (layer_names_for lists them)",
                       f"asked for all {len(names)}{precision}, it left out {', '.join(missing)}")
    for name in names:
        value = features[name]
        if not isinstance(value, torch.Tensor) or value.dim() != 4 or value.shape[0] != count or not value.is_floating_point():
            raise who.fail(f"each layer's features are an (N, C, H, W) float tensor, N the images given ({what})",
                           f"for {count} image(s) of {shape[0]}x{shape[1]}, layer '{name}' is {_describe(value)}")
        if not bool(torch.isfinite(value).all()):
            raise who.fail(f"features must be finite ({what})", f"layer '{name}' holds nan or inf")
    total = sum(features[name].float().square().mean() for name in names)
    if not total.requires_grad:
        raise who.fail(f"the gradient flows back through the features to each image ({what})",
                       "the features carry no gradient (computed under torch.no_grad(), or .detach()?)")
    who.call(f"the backward pass through {what}", total.backward)
    if images.grad is None or not all(bool(images.grad[k].abs().sum() > 0) for k in range(count)):
        raise who.fail(f"the gradient flows back through the features to each image ({what})",
                       "an image got none (a layer computed without gradients, or .detach()?)")
    grads = [name for name, p in backbone.named_parameters() if p.grad is not None]
    if grads:
        raise who.fail("a frozen backbone's parameters get no gradient", f"{grads[0]} got one")
    if count > 1:
        with torch.no_grad():
            first = backbone.features(network_input(images[:1], dtype), layers)
        for name in names:
            if not _agree(features[name][:1], first[name]):
                raise who.fail("each image's features do not depend on the other images stacked with it (stylekit "
                               "batch stacks images; no batch statistics)",
                               f"layer '{name}' of the first of 2 images differs from its features alone")
    return {name: features[name].detach() for name in names}


def _check_truncate(who: _Who, backbone: Backbone, names: tuple[str, ...], shape: tuple[int, int], reference) -> None:
    """Cut after a middle layer: the layers up to it are what they were."""
    kept = frozenset({names[0], names[len(names) // 2]})
    shown = "{" + ", ".join(repr(name) for name in sorted(kept, key=names.index)) + "}"
    who.call(f"truncate({shown})", backbone.truncate, kept)
    with torch.no_grad():
        features = who.call(f"features(images, {shown}) after truncate({shown})", backbone.features,
                            network_input(torch.cat(_images(2, *shape, seed=31)), torch.float32), kept)
    for name in kept:
        if name not in features or not _agree(features[name], reference[name]):
            raise who.fail("truncate(layers) keeps everything the layers it is given need",
                           f"after truncate({shown}), layer '{name}' is missing or differs")


# ---------------------------------------------------------------- optimizers


def _quadratic(target: torch.Tensor, curvature: float) -> Callable[[torch.Tensor], torch.Tensor]:
    """A smooth convex loss of the image, minimal at `target` (inside [0, 1]), whose
    gradient is small in image units: any sane learning rate lowers it."""
    return lambda image: curvature * ((image - target) ** 2).mean()


def check_optimizer(cls: type[Optimizer], params: BaseModel | dict | None = None) -> None:
    """Check the optimizer `cls` with `params` (default: its Params' defaults)."""
    who = _Who(cls, "optimizer", Optimizer)
    params = who.params(params)
    component = who.call(f"{cls.__name__}(params)", cls, params)
    start, target = _images(2, 16, 16, seed=41)
    loss = _quadratic(target, 1.0)
    image = start.clone().requires_grad_(True)
    optimizer = _built_optimizer(who, component, image)
    first = loss(image).item()
    _steps(who, component, optimizer, image, loss, STEPS // 2)
    resumed_image = image.detach().clone().requires_grad_(True)
    resumed = _built_optimizer(who, component, resumed_image)
    who.call("load_state_dict(state_dict()) of the optimizer build returns", resumed.load_state_dict,
             copy.deepcopy(optimizer.state_dict()),
             wants="a checkpoint keeps the optimizer's state_dict() and a resumed run loads it")
    _steps(who, component, optimizer, image, loss, STEPS - STEPS // 2)
    _steps(who, component, resumed, resumed_image, loss, STEPS - STEPS // 2)
    last = loss(image).item()
    if not math.isfinite(last) or not last < first:
        raise who.fail(f"its steps lower a smooth convex loss (the mean squared distance to an image, {STEPS} steps "
                       "with its params)", f"the loss went from {first:.6g} to {last:.6g}")
    if not torch.equal(image.detach(), resumed_image.detach()):
        raise who.fail("an optimizer restored from its state_dict() steps as the original does (a resumed run "
                       "continues the same)", "their images part after the restore - keep all state in self.state")
    _check_state_copies(who, component, optimizer, image)
    if type(component).build_together is not Optimizer.build_together:
        _check_build_together(who, component)


def _built_optimizer(who: _Who, component: Optimizer, image: torch.Tensor) -> torch.optim.Optimizer:
    optimizer = who.call("build(variables)", component.build, [image])
    if not isinstance(optimizer, torch.optim.Optimizer):
        raise who.fail("build(variables) returns a torch.optim.Optimizer", f"it returned {_describe(optimizer)}")
    if not any(p is image for group in optimizer.param_groups for p in group["params"]):
        raise who.fail("build(variables) returns an optimizer over the image it is given (variables[0])",
                       "the image is not among its parameters")
    return optimizer


def _steps(who: _Who, component: Optimizer, optimizer, image: torch.Tensor, loss, count: int) -> None:
    """`count` steps as the engine takes them: step(closure) when `needs_closure`, else the
    gradient first and step(); then the image clamped to [0, 1]."""
    def closure() -> torch.Tensor:
        optimizer.zero_grad(set_to_none=True)
        value = loss(image)
        value.backward()
        return value

    for _ in range(count):
        if component.needs_closure:
            who.call("step(closure)", optimizer.step, closure)
        else:
            closure()
            who.call("step()", optimizer.step, wants="set needs_closure = True if it needs a closure")
        with torch.no_grad():
            image.clamp_(0, 1)
    if not bool(torch.isfinite(image).all()):
        raise who.fail("steps leave the image finite", "it holds nan or inf")


def _image_sized(state: Any, numel: int) -> int:
    """How many tensors of `numel` elements `state` (nested dicts and lists) holds."""
    if isinstance(state, torch.Tensor):
        return int(state.numel() == numel)
    if isinstance(state, dict):
        return sum(_image_sized(value, numel) for value in state.values())
    if isinstance(state, (list, tuple)):
        return sum(_image_sized(value, numel) for value in state)
    return 0


def _check_state_copies(who: _Who, component: Optimizer, optimizer, image: torch.Tensor) -> None:
    copies = who.call("state_copies()", component.state_copies)
    if isinstance(copies, bool) or not isinstance(copies, (int, float)) or not math.isfinite(copies) or copies < 0:
        raise who.fail("state_copies() returns how many image-sized tensors its state holds, a number >= 0",
                       f"it returned {copies!r}")
    held = _image_sized(list(optimizer.state.values()), image.numel())
    if held > copies:
        raise who.fail("state_copies() counts the image-sized tensors its state holds at most (stylekit run "
                       "--dry-run estimates memory with it)",
                       f"after {STEPS} steps its state holds {held}, and state_copies() says {copies:g}")


def _check_build_together(who: _Who, component: Optimizer) -> None:
    """3 images, each with its own loss; image 1 stops after 2 steps (as a diverged one
    does). The stepper must move each image alive as its own optimizer would, and leave
    the stopped one where it is."""
    starts, targets = _images(3, 16, 16, seed=51), _images(3, 16, 16, seed=61)
    losses = [_quadratic(target, curvature) for target, curvature in zip(targets, (1.0, 3.0, 0.3))]
    grouped = [start.clone().requires_grad_(True) for start in starts]
    stepper = who.call("build_together(variables)", component.build_together, grouped)
    if stepper is None:
        return
    if not callable(getattr(stepper, "step", None)):
        raise who.fail("build_together(variables) returns a BatchedStepper (with step(alive)) or None",
                       f"it returned {_describe(stepper)}")
    alone = [start.clone().requires_grad_(True) for start in starts]
    optimizers = [_built_optimizer(who, component, image) for image in alone]
    for step in range(1, STEPS + 1):
        alive = [0, 1, 2] if step <= 2 else [0, 2]
        for k in alive:
            grouped[k].grad = None
            losses[k](grouped[k]).backward()
        held = grouped[1].detach().clone()
        who.call(f"step({alive}) of the stepper build_together returns", stepper.step, alive)
        for k in alive:
            _steps(who, component, optimizers[k], alone[k], losses[k], 1)
        with torch.no_grad():
            for k in alive:
                grouped[k].clamp_(0, 1)
        if 1 not in alive and not torch.equal(grouped[1].detach(), held):
            raise who.fail("the stepper leaves an image not in alive as it is (it stopped)",
                           f"step({alive}) moved image 1")
        for k in alive:
            gap = (grouped[k].detach() - alone[k].detach()).abs().max().item()
            if not gap <= AGREE:  # the images are in [0, 1]
                raise who.fail("build_together's stepper moves each image as the optimizer build returns moves "
                               "it alone", f"at step {step}, image {k} of 3 is {gap:.3g} away from its own "
                               "optimizer's")


# ---------------------------------------------------------------- schedulers


def check_scheduler(cls: type[Scheduler], params: BaseModel | dict | None = None, total_steps: int = 10) -> None:
    """Check the scheduler `cls` with `params` (default: its Params' defaults), over runs of
    `total_steps` steps and of 1, with the SGD and the L-BFGS of torch."""
    who = _Who(cls, "scheduler", Scheduler)
    params = who.params(params)
    component = who.call(f"{cls.__name__}(params)", cls, params)
    for make in (lambda image: torch.optim.SGD([image], lr=0.5),
                 lambda image: torch.optim.LBFGS([image], lr=1.0, max_iter=1)):
        for steps in (total_steps, 1):
            rates = _scheduled_rates(who, component, make, steps)
            if rates is None:
                return  # a constant learning rate
            if steps == total_steps:
                resumed = _scheduled_rates(who, component, make, steps, restart_at=steps // 2)
                if resumed != rates:
                    raise who.fail("a scheduler restored from its state_dict() goes on as the original does (a "
                                   "resumed run continues the same)",
                                   f"rates {rates} uninterrupted, {resumed} restored after {steps // 2} steps")


def _scheduled_rates(who: _Who, component: Scheduler, make, steps: int, restart_at: int | None = None) -> list | None:
    """The learning rates of `steps` steps, as the engine steps them (the optimizer, then
    the scheduler); with `restart_at`, rebuilt there from its state_dict() as a resumed
    run is. None when build gives no scheduler."""
    image = torch.zeros(1, 3, 4, 4, requires_grad=True)
    optimizer = make(image)
    scheduler = who.call(f"build(optimizer, {steps})", component.build, optimizer, steps)
    if scheduler is None:
        return None
    if not callable(getattr(scheduler, "step", None)) or not callable(getattr(scheduler, "state_dict", None)):
        raise who.fail("build(optimizer, total_steps) returns a torch LR scheduler (with step() and state_dict()) "
                       "or None", f"it returned {_describe(scheduler)}")
    rates = []
    for step in range(steps):
        if step == restart_at:  # as a resumed run: both built afresh, then both states loaded
            states = copy.deepcopy((optimizer.state_dict(), scheduler.state_dict()))
            optimizer = make(image)
            scheduler = who.call(f"build(optimizer, {steps})", component.build, optimizer, steps)
            optimizer.load_state_dict(states[0])
            who.call("load_state_dict(state_dict()) of the scheduler", scheduler.load_state_dict, states[1])
        rate = optimizer.param_groups[0]["lr"]
        if not (isinstance(rate, (int, float)) and math.isfinite(rate) and rate >= 0):
            raise who.fail("the learning rate stays a finite number >= 0", f"before step {step + 1} of {steps} it is {rate!r}")
        rates.append(rate)
        image.grad = torch.zeros_like(image)  # a zero gradient: neither optimizer moves, and L-BFGS stops at once
        optimizer.step((lambda: image.sum() * 0) if isinstance(optimizer, torch.optim.LBFGS) else None)
        who.call(f"step() of the scheduler, after optimizer step {step + 1} of {steps}", scheduler.step)
    return rates
