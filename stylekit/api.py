"""stylekit from Python: load a recipe into a checked plan, stylize, save.

    import stylekit
    plan = stylekit.load("recipes/gatys.toml", overrides={"run.steps": 50})
    result = stylekit.stylize(plan, content=my_pil_image)
    result.image            # PIL image: exactly what result.save() writes
    result.save("out.png")

`stylekit run` is these three calls plus a progress display (`stylekit.runner`).
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any, Callable, Iterable

from .plan import Plan
from .plugins import Registry
from .session import Result, RunDiverged, StepInfo, as_pil
from .session import stylize as _stylize

ImageLike = Any  # a path, a PIL image, or a (3, H, W) / (1, 3, H, W) tensor in [0, 1]


def load(source: str | Path | dict, overrides: dict[str, Any] | None = None, *, content: ImageLike = None,
         style: ImageLike | Iterable[ImageLike] = None, registry: Registry | None = None,
         base: str | Path | None = None, label: str | None = None) -> Plan:
    """Load and check a recipe: a file path, a TOML text (a str with a line break or an
    `=`), or a dict of the same shape. `overrides` maps dotted keys to values
    (`{"run.steps": 50, "optimizer.params.lr": 0.5}`). `content` and `style` give images
    in memory (or paths) in place of the recipe's; then the recipe may leave them out.
    Relative paths in the recipe are resolved against `base` (default: the recipe's
    folder; the current folder for a text or a dict). Raises `stylekit.UserError` listing
    every problem. A plugin package that failed to load, which this recipe does not need,
    gives a `stylekit.plugins.BrokenPluginWarning`, once per process."""
    from .plugins import load_registry, warn_broken
    from .recipe import load_recipe

    from .overrides import PYTHON, Overrides, parse_key

    if isinstance(overrides, Overrides):  # from the command line: keeps the flags for messages
        keyed = overrides
    else:
        # Named in messages as given here (overrides['run.steps']), not as a --set flag.
        keyed = Overrides()
        for k, v in (overrides or {}).items():
            # "loss[1].weight" as on the command line, or "loss.1.weight"
            key = parse_key(re.sub(r"\.(\d+)(?=\.|\[|$)", r"[\1]", k), k, PYTHON) if isinstance(k, str) else tuple(k)
            keyed.add(key, v, PYTHON.name(k))
    images = {}
    if content is not None:
        images["content"] = as_pil(content)
    if style is not None:
        many = isinstance(style, (list, tuple))
        images["style"] = [as_pil(s) for s in (style if many else [style])]
    registry = registry or load_registry()
    plan = load_recipe(source, registry, keyed, images=images, base=Path(base) if base is not None else None, label=label)
    warn_broken(registry)  # as `stylekit run` prints them: a plugin the user expects may be missing
    return plan


def stylize(recipe: Plan | str | Path | dict, content: ImageLike = None, style: ImageLike | Iterable[ImageLike] = None,
            callback: Callable[[StepInfo], None] | None = None, *, overrides: dict[str, Any] | None = None,
            checkpoint: str | Path | None = None, resume: bool = False, registry: Registry | None = None) -> Result:
    """Stylize and return the `Result`; writes nothing unless `checkpoint` is given.

    `recipe` is a plan from `load`, or anything `load` takes. `content` / `style` replace
    its images. `callback(info)` runs after every step; `info.stop()` ends the run there.
    With `checkpoint` (a file path), the run's state is kept there every
    `output.checkpoint_every` steps and when it stops; `resume=True` continues from it.
    Raises `RunDiverged` (with the last finite image) if a loss goes NaN or infinite.
    """
    from . import checkpoints

    if isinstance(recipe, Plan):
        plan = recipe
        if content is not None or style is not None or overrides:
            # A plan's paths are resolved already: against the current folder they stay as they are.
            plan = load(plan.raw, overrides, content=content if content is not None else plan.images.content,
                        style=style if style is not None else list(plan.images.styles),
                        registry=registry or plan.registry, base=Path.cwd(), label=plan.source)
    else:
        plan = load(recipe, overrides, content=content, style=style, registry=registry)
    path = Path(checkpoint) if checkpoint is not None else None
    if resume and path is None:
        from .errors import UserError

        raise UserError("resume=True needs checkpoint= the file the stopped run kept its state in")
    state = checkpoints.load(path, plan) if resume else None
    return _stylize(plan, callback=callback, checkpoint=path, resume=state)


__all__ = ["Plan", "Result", "RunDiverged", "StepInfo", "load", "stylize"]
