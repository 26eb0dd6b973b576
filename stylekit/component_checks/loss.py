"""`check_loss`: a loss term's contract, run as the engine runs it."""

from __future__ import annotations

import copy
from typing import Any

import torch
from pydantic import BaseModel

from stylekit.contract.components import Backbone, LossTerm, PreviousOutput, Targets
from stylekit.component_checks.common import _agree, _describe, _images, _largest_gap, _Who
from stylekit.run.engine import network_input
from stylekit.run.together import _together_is_its_own

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
    term's `target_images` names; and, as for a video's later frame, two earlier outputs
    warped into it (nearest first, each certain in its own part), which only a term that
    reads them (`temporal`) looks at: without them such a term is inert by design."""
    images = term.target_images
    height, width = content.shape[-2:]
    near = torch.zeros(1, 1, height, width)
    near[..., : width // 2] = 1
    previous = [PreviousOutput(content.flip(-1), near, 1), PreviousOutput(content.flip(-2), torch.ones_like(near), 2)]
    with torch.no_grad():
        def features(image: torch.Tensor, wanted: bool) -> dict[str, torch.Tensor]:
            if not wanted or not term.layers:
                return {}
            return backbone.features(network_input(image, dtype), frozenset(term.layers))
        return Targets(content_image=content, content=features(content, "content" in images), style_images=[style],
                       styles=[features(style, "style" in images)], style_weights=[1.0], previous=previous)


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
    term.step = 1  # as the engine sets it before the first step's evaluations (LossTerm.step)
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
        term.step = 1
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
