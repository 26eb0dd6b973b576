"""From a validated recipe to engine `Job`s: build components, load and size images.

A recipe without stages is one job; with stages, one job per stage, each starting from the
upsampled result of the one before, and sharing one backbone.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F

from . import colour
from .components import Backbone
from .devices import resolve_device, resolve_precision
from .engine import Job, WeightedTerm
from .errors import UserError
from .images import open_rgb, output_size, style_size, to_tensor
from .plugins import Registry
from .recipe import LoadedRecipe


@dataclass
class Stage:
    width: int | None
    height: int | None
    steps: int


def stages_of(loaded: LoadedRecipe) -> list[Stage]:
    recipe = loaded.recipe
    if recipe.stage:
        return [Stage(s.width, s.height, s.steps) for s in recipe.stage]
    return [Stage(recipe.output.width, recipe.output.height, recipe.run.steps)]


def build_backbone(loaded: LoadedRecipe, registry: Registry) -> Backbone:
    recipe = loaded.recipe
    backbone_cls = registry.get("backbone", recipe.backbone.name)
    try:
        return backbone_cls(loaded.backbone_params, recipe.backbone.weights)
    except UserError as exc:  # weights that cannot be had: point at the recipe's field
        raise UserError([loaded.at(("backbone", "weights"), p.message) for p in exc.problems]) from None


def build_job(loaded: LoadedRecipe, registry: Registry, stage: Stage | None = None,
              previous: torch.Tensor | None = None, backbone: Backbone | None = None) -> Job:
    """The job for `stage` (default: the recipe's only or first stage)."""
    recipe = loaded.recipe
    stage = stage or stages_of(loaded)[0]
    if recipe.run.seed is not None:
        torch.manual_seed(recipe.run.seed)
    device = resolve_device(recipe.run.device)
    dtype = resolve_precision(recipe.run.precision, device)

    images = recipe.images
    content_img = open_rgb(images.content, images)
    hw = output_size(content_img, stage.width, stage.height)
    content = to_tensor(content_img, hw)
    styles = []
    for path in images.style:
        img = open_rgb(path, images)
        styles.append(to_tensor(img, style_size(img, hw, images.style_scale, images.style_fit)))
    raw_weights = images.style_weights or [1.0] * len(styles)
    style_weights = [w / sum(raw_weights) for w in raw_weights]

    masks = [mask_tensor(path, hw, images) for path in images.style_masks] if images.style_masks else None
    postprocess = None
    if images.preserve_colors == "histogram":
        styles = [colour.match_colour_histogram(s, content) for s in styles]
    elif images.preserve_colors == "luminance":
        original = content
        styles = [colour.luminance_image(s, like=original) for s in styles]
        content = colour.luminance_image(original)
        postprocess = lambda result: colour.combine_luminance(result, original)  # noqa: E731

    init = initial_image(images.init, hw, content, styles, previous, images)
    backbone = backbone or build_backbone(loaded, registry)
    if recipe.run.checkpoint and not backbone.supports_checkpointing:
        raise UserError(loaded.at(("run", "checkpoint"), f"backbone '{backbone.name}' does not support checkpointing - set it to false"))
    terms = []
    seen: dict[str, int] = {}
    for spec, params in zip(recipe.loss, loaded.loss_params):
        cls = registry.get("loss", spec.name)
        seen[spec.name] = seen.get(spec.name, 0) + 1
        label = spec.name if seen[spec.name] == 1 else f"{spec.name}#{seen[spec.name]}"
        layers = spec.layer_table(cls.default_layers) if cls.reads_features else {}
        terms.append(WeightedTerm(label, cls(params, layers), spec.weight))
    optimizer = registry.get("optimizer", recipe.optimizer.name)(loaded.optimizer_params)
    scheduler = registry.get("scheduler", recipe.scheduler.name)(loaded.scheduler_params)
    return Job(backbone=backbone, terms=terms, optimizer=optimizer, scheduler=scheduler,
               content=content, styles=styles, style_weights=style_weights, style_masks=masks,
               steps=stage.steps, device=device, dtype=dtype, clamp=recipe.run.clamp,
               checkpoint=recipe.run.checkpoint, compile=recipe.run.compile, cuda_graph=recipe.run.cuda_graph,
               init=init, ema_decay=recipe.run.ema_decay, postprocess=postprocess)


def mask_tensor(path: str, hw: tuple[int, int], spec=None) -> torch.Tensor:
    """A (1, 1, H, W) mask in [0, 1] from an image's luminance, at the output's size."""
    return to_tensor(open_rgb(path, spec), hw).mean(dim=1, keepdim=True)


def initial_image(init: str, hw: tuple[int, int], content: torch.Tensor, styles: list[torch.Tensor],
                  previous: torch.Tensor | None, spec=None) -> torch.Tensor | None:
    """Where the image starts; None means the content image (the engine's default)."""
    def resized(image: torch.Tensor) -> torch.Tensor:
        return F.interpolate(image.float().cpu(), size=hw, mode="bicubic", align_corners=False).clamp(0, 1)

    if previous is not None:  # a later stage: the last stage's result, upsampled
        return resized(previous)
    if init == "content":
        return None
    if init == "style":
        return resized(styles[0])
    if init == "noise":
        return torch.rand(1, 3, *hw)
    return to_tensor(open_rgb(init, spec), hw)
