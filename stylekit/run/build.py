"""From a checked `Plan` to what the engine runs: a prepared backbone, each stage's images
as tensors, and the objective with its targets computed.

A recipe without stages is one stage; with stages, each starts from the upsampled result of
the one before (or from the content plus the upsampled change the one before made: a stage's
`carry`) and shares one backbone. Nothing here looks a component up again: the plan
carries the classes and their validated params.
"""

from __future__ import annotations

import dataclasses
import hashlib
import traceback
from collections import OrderedDict
from dataclasses import dataclass, field, replace
from typing import Callable

import torch
import torch.nn.functional as F
from PIL import Image

from stylekit.run import colour
from stylekit.plugins import probe
from stylekit.contract.components import Backbone, Optimizer, PreviousOutput, Scheduler, Targets
from stylekit.contract.flow import FlowProvider
from stylekit.run.engine import Objective, WeightedTerm, network_input
from stylekit.errors import TRACEBACK_ENV, PluginError, Problem, UserError
from stylekit.files.images import output_size, style_size, to_tensor
from stylekit.recipe.construct import build_component, build_term
from stylekit.recipe.plan import Plan, Stage


@dataclass(frozen=True)
class StageImages:
    """One stage's inputs as (1, C, H, W) tensors in [0, 1], on the CPU."""

    content: torch.Tensor
    styles: list[torch.Tensor]
    style_weights: list[float]
    masks: list[torch.Tensor] | None
    start: torch.Tensor  # where the synthesized image starts
    #: Applied to the final image (e.g. putting the content's colours back); None: as is.
    postprocess: Callable[[torch.Tensor], torch.Tensor] | None = None
    #: Video only: earlier frames' outputs warped into this frame, at this stage's size.
    previous: list[PreviousOutput] = field(default_factory=list)


def build_backbone(plan: Plan) -> Backbone:
    """The plan's backbone with its weights, cut after the last layer a loss reads, cast once
    to the compute precision and moved to the device: weights never get re-cast in the loop."""
    try:  # built and probed: its advertised layers checked against what it produces
        backbone = probe.probed_backbone(plan.backbone.cls, plan.backbone.params, plan.weights, plan.backbone.package)
    except UserError as exc:  # weights that cannot be had: point at the recipe's field
        raise UserError([probe.located(p, plan.at) for p in exc.problems]) from None
    except PluginError as exc:  # a broken backbone: the plugin's bug, at the recipe's field too
        raise probe.located_error(exc, plan.at) from exc.original
    backbone.truncate(plan.layers)
    backbone.requires_grad_(False).eval()
    backbone.checkpointing = plan.recipe.run.checkpoint
    return backbone.to(device=plan.device, dtype=plan.dtype, memory_format=torch.channels_last)


def stage_images(plan: Plan, stage: Stage, previous: torch.Tensor | None = None) -> StageImages:
    """The stage's images at its size; `previous` is the result of the stage before."""
    inputs, spec = plan.images, plan.recipe.images
    hw = output_size(inputs.content, stage.width, stage.height)
    content = to_tensor(inputs.content, hw)
    styles = [to_tensor(img, style_size(img, hw, spec.style_scale, spec.style_fit)) for img in inputs.styles]
    masks = [mask_tensor(img, hw) for img in inputs.masks] if inputs.masks else None
    postprocess = None
    given, earlier = inputs.start, [previous_at(p, hw) for p in inputs.previous]
    if spec.preserve_colors == "histogram":
        styles = [colour.match_colour_histogram(s, content) for s in styles]
    elif spec.preserve_colors == "luminance":
        original = content
        styles = [colour.luminance_image(s, like=original) for s in styles]
        content = colour.luminance_image(original)
        postprocess = lambda result: colour.combine_luminance(result, original)  # noqa: E731
        # The run optimizes luminance: a video's warm start and earlier outputs (in colour,
        # as written) are compared with it as luminance, or the temporal term would pull colour in.
        given = colour.luminance_image(given) if given is not None else None
        earlier = [replace(p, image=colour.luminance_image(p.image)) for p in earlier]
    if previous is not None and stage.carry == "change":
        before = to_tensor(inputs.content, tuple(previous.shape[-2:]))
        if spec.preserve_colors == "luminance":  # the optimized image is luminance: so is its change
            before = colour.luminance_image(before)
        start = carried_change(previous, content, before)
    else:
        start = initial_image(inputs.init, hw, content, styles, previous, plan.recipe.run.seed, given)
    return StageImages(content, styles, list(inputs.style_weights), masks, start, postprocess, earlier)


def previous_at(previous: PreviousOutput, hw: tuple[int, int]) -> PreviousOutput:
    """An earlier frame's warped output at a stage's size (`hw`). The certainty is resized
    conservatively, as the least over the pixels each new pixel covers: a pixel that blends
    trusted ones with untrusted ones (an occlusion's edge) holds a colour partly wrong, and
    the temporal term must not pull towards it."""
    if tuple(previous.image.shape[-2:]) == tuple(hw):
        return previous
    image = F.interpolate(previous.image.float(), size=hw, mode="bilinear", antialias=True, align_corners=False)
    certainty = -F.adaptive_max_pool2d(-previous.certainty.float(), hw)
    return replace(previous, image=image.clamp(0, 1), certainty=certainty)


def carried_change(previous: torch.Tensor, content: torch.Tensor, content_before: torch.Tensor) -> torch.Tensor:
    """A later stage's start when it carries the change (`StageSpec.carry`): the content at its
    size plus what the stage before changed in the content at its own size, upsampled.

    Upsampling the smaller result itself gives a blurred photo: the detail that the smaller
    stage could not hold (edges, a face's eyes and mouth, a few pixels across) is gone, and the
    few steps at full size redraw it from the style's texture, which bends small shapes. Adding
    only the change keeps that detail from the full-size photo, and the style laid down at the
    smaller size. `content_before` is the content as the stage before saw it, so a stage that
    changed nothing hands on the full-size content exactly."""
    hw = tuple(content.shape[-2:])
    change = F.interpolate(previous.float().cpu() - content_before, size=hw, mode="bicubic", align_corners=False)
    return (content + change).clamp(0, 1)


def mask_tensor(img: Image.Image, hw: tuple[int, int]) -> torch.Tensor:
    """A (1, 1, H, W) mask in [0, 1] from an image's luminance, at the output's size."""
    return to_tensor(img, hw).mean(dim=1, keepdim=True)


def initial_image(init: Image.Image | str, hw: tuple[int, int], content: torch.Tensor, styles: list[torch.Tensor],
                  previous: torch.Tensor | None, seed: int | None = None, given: torch.Tensor | None = None) -> torch.Tensor:
    """Where a stage starts: the stage before's result, else `given` (a video frame's warm
    start), else the recipe's `init`."""
    def resized(image: torch.Tensor) -> torch.Tensor:
        return F.interpolate(image.float().cpu(), size=hw, mode="bicubic", align_corners=False).clamp(0, 1)

    if previous is not None:  # a later stage: the last stage's result, upsampled
        return resized(previous)
    if given is not None:
        return given.float().cpu() if tuple(given.shape[-2:]) == tuple(hw) else resized(given)
    if init == "content":
        return content
    if init == "style":
        return resized(styles[0])
    if init == "noise":
        # Its own generator: the noise depends on the seed alone, not on what drew random
        # numbers before (a backbone's random weights, the items before it in a batch).
        generator = torch.Generator().manual_seed(seed) if seed is not None else None
        return torch.rand(1, 3, *hw, generator=generator)
    return to_tensor(init, hw)


#: How many style images a batch worker keeps decoded (and 4 times as many sets of features).
STYLES_KEPT = 16


class LeastRecentlyUsed(OrderedDict):
    """A dict that keeps only its `size` most recently used entries (read or written)."""

    def __init__(self, size: int):
        super().__init__()
        self.size = size

    def __getitem__(self, key):
        value = super().__getitem__(key)
        self.move_to_end(key)
        return value

    def __setitem__(self, key, value):
        super().__setitem__(key, value)
        self.move_to_end(key)
        while len(self) > self.size:
            self.popitem(last=False)


@dataclass
class Reuse:
    """What one process keeps between runs of one recipe (a batch): the backbone, style
    images decoded (`stylekit.recipe.load.load_recipe`'s `decoded`) and their features at each
    size, which do not change from item to item. Only the most recently used styles are
    kept: a batch may pair its photos with thousands of styles, and VGG-19's features of one
    512 px style take 40 to 90 MB of the device (bf16 or fp32). One dropped is computed again
    when needed: one decode and one backbone pass, against the hundreds of passes of an item."""

    backbone: Backbone | None = None
    style_images: dict = field(default_factory=lambda: LeastRecentlyUsed(STYLES_KEPT))
    # A style has features per size: one per stage, and per content shape (its size follows the output's).
    style_features: dict = field(default_factory=lambda: LeastRecentlyUsed(4 * STYLES_KEPT))


def build_objective(plan: Plan, backbone: Backbone, images: StageImages, reuse: Reuse | None = None) -> Objective:
    """New loss terms for the stage, each holding its targets, computed once without
    gradients from only the features it reads (`LossTerm.target_images`)."""
    terms = [WeightedTerm(loss.label, build_term(loss, plan.at), loss.weight, loss.choice.package, loss.entry)
             for loss in plan.losses]
    with torch.no_grad():
        targets = compute_targets(backbone, [wt.term for wt in terms], images, plan.device, plan.dtype,
                                  reuse.style_features if reuse is not None else None)
        for wt in terms:
            wt.term.to(plan.device)
            wt.term.prepare(targets)
    return Objective(backbone, tuple(terms), plan.dtype)


def compute_targets(backbone: Backbone, terms: list, images: StageImages, device: torch.device,
                    dtype: torch.dtype, style_cache: dict | None = None) -> Targets:
    """The features each term's `prepare` reads; style features come from `style_cache`
    (keyed by the image's pixels and the layers) when it has them."""
    content = images.content.to(device)
    styles = [s.to(device) for s in images.styles]

    def layers_read_from(image: str) -> frozenset[str]:
        return frozenset(name for t in terms if image in t.target_images for name in t.layers)

    def features(image: torch.Tensor, layers: frozenset[str]) -> dict[str, torch.Tensor]:
        return backbone.features(network_input(image, dtype), layers) if layers else {}

    return Targets(
        content_image=content,
        content=features(content, layers_read_from("content")),
        style_images=styles,
        styles=[cached(style_cache, s, layers_read_from("style"), features) for s in styles],
        style_weights=list(images.style_weights),
        style_masks=[m.to(device) for m in images.masks] if images.masks else None,
        previous=[replace(p, image=p.image.to(device), certainty=p.certainty.to(device)) for p in images.previous],
    )


def cached(cache: dict | None, image: torch.Tensor, layers: frozenset[str], compute) -> dict[str, torch.Tensor]:
    if cache is None:
        return compute(image, layers)
    key = (hashlib.sha1(image.float().cpu().numpy().tobytes()).hexdigest(), tuple(image.shape), tuple(sorted(layers)))
    if key not in cache:
        cache[key] = compute(image, layers)
    return cache[key]


def build_optimizer(plan: Plan) -> Optimizer:
    return build_component("optimizer", plan.optimizer, plan.at)


def build_scheduler(plan: Plan) -> Scheduler:
    return build_component("scheduler", plan.scheduler, plan.at)


def build_flow(plan: Plan) -> FlowProvider:
    """The plan's flow provider, set to the run's device; a video builds it once, a still
    image never. A UserError it raises (OpenCV missing, a weights file it cannot read) is at
    the recipe's `[flow]`; any other exception is its plugin's bug, named."""
    try:
        provider = build_component("flow", plan.flow, plan.at)
    except UserError:
        raise
    except Exception as exc:
        first = (str(exc).strip().splitlines() or [""])[0]
        message = (f"flow '{plan.flow.name}' of package '{plan.flow.package}' failed to build ({type(exc).__name__}"
                   f"{': ' + first if first else ''}) - a bug in {plan.flow.package}, or params it does not handle; "
                   f"{TRACEBACK_ENV}=1 or --traceback shows the traceback")
        problem = Problem(message, file=plan.source, field="flow") if plan.at is None else plan.at(("flow",), message)
        raise PluginError(dataclasses.replace(problem, details="".join(traceback.format_exception(exc))), exc,
                          plan.flow.package, "flow", plan.flow.name) from exc
    provider.device = plan.device
    return provider
