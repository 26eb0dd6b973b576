"""`check_backbone`: a backbone's contract, run as the engine runs it."""

from __future__ import annotations

import copy

import torch
from pydantic import BaseModel

from stylekit.contract.components import Backbone
from stylekit.component_checks.common import _agree, _describe, _images, _Who
from stylekit.run.engine import network_input

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
