"""From a validated recipe to an engine `Job`: build components, load and size images."""

from __future__ import annotations

import torch

from .devices import resolve_device, resolve_precision
from .engine import Job, WeightedTerm
from .errors import UserError
from .images import open_rgb, output_size, style_size, to_tensor
from .plugins import Registry
from .recipe import LoadedRecipe


def build_job(loaded: LoadedRecipe, registry: Registry) -> Job:
    recipe = loaded.recipe
    if recipe.run.seed is not None:
        torch.manual_seed(recipe.run.seed)
    device = resolve_device(recipe.run.device)
    dtype = resolve_precision(recipe.run.precision, device)

    content_img = open_rgb(recipe.images.content)
    hw = output_size(content_img, recipe.output.width, recipe.output.height)
    content = to_tensor(content_img, hw)
    styles = []
    for path in recipe.images.style:
        img = open_rgb(path)
        styles.append(to_tensor(img, style_size(img, hw, recipe.images.style_scale, recipe.images.style_fit)))
    raw_weights = recipe.images.style_weights or [1.0] * len(styles)
    style_weights = [w / sum(raw_weights) for w in raw_weights]

    backbone_cls = registry.get("backbone", recipe.backbone.name)
    try:
        backbone = backbone_cls(loaded.backbone_params, recipe.backbone.weights)
    except UserError as exc:  # weights that cannot be had: point at the recipe's field
        raise UserError([loaded.at(("backbone", "weights"), p.message) for p in exc.problems]) from None
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
               content=content, styles=styles, style_weights=style_weights,
               steps=recipe.run.steps, device=device, dtype=dtype, clamp=recipe.run.clamp)
