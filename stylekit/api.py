"""stylekit from Python: load a recipe into a checked plan, stylize, save.

    import stylekit
    plan = stylekit.load("recipes/gatys.toml", overrides={"run.steps": 50})
    result = stylekit.stylize(plan, content=my_pil_image)
    result.image            # PIL image: exactly what result.save() writes
    result.save("out.png")

`stylekit run` is these three calls plus a progress display (`stylekit.commands.run`).
"""

from __future__ import annotations

import os
import re
from collections.abc import Mapping
from pathlib import Path
from typing import Any, Callable, Iterable

from stylekit.errors import Problem, UserError
from stylekit.recipe.plan import Plan
from stylekit.plugins.registry import Registry
from stylekit.run.session import Result, RunDiverged, StepInfo, as_pil
from stylekit.run.session import stylize as _stylize

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
    gives a `stylekit.plugins.registry.BrokenPluginWarning`, once per process."""
    from stylekit.plugins.registry import load_registry, warn_broken
    from stylekit.recipe.load import load_recipe

    from stylekit.recipe.overrides import PYTHON, Overrides, parse_key

    if isinstance(overrides, Overrides):  # from the command line: keeps the flags for messages
        keyed = overrides
    elif overrides is not None and not isinstance(overrides, Mapping):
        raise UserError(Problem(f"must be a dict of dotted keys to values, e.g. {{'run.steps': 50}}, "
                                f"not {type(overrides).__name__}", field="overrides"))
    else:
        # Named in messages as given here (overrides['run.steps']), not as a --set flag.
        keyed = Overrides()
        for k, v in (overrides or {}).items():
            # "loss[1].weight" as on the command line, or "loss.1.weight"
            key = parse_key(re.sub(r"\.(\d+)(?=\.|\[|$)", r"[\1]", k), k, PYTHON) if isinstance(k, str) else tuple(k)
            keyed.add(key, v, PYTHON.name(k))
    images = {}
    many = isinstance(style, (list, tuple))
    styles = list(style) if many else [style] if style is not None else []
    # Files are read by the recipe, as its own are: on its images.background, within its
    # images.max_pixels, and kept from being overwritten by the output; objects in memory as given.
    keyed = _with_image_paths(keyed, content, styles, many)
    if content is not None and not _is_path(content):
        images["content"] = as_pil(content, "content")
    if style is not None and not (styles and all(map(_is_path, styles))):  # [] too: the recipe says it is empty
        images["style"] = [as_pil(s, f"style[{i}]" if many else "style") for i, s in enumerate(styles)]
    registry = registry or load_registry()
    plan = load_recipe(source, registry, keyed, images=images, base=Path(base) if base is not None else None, label=label)
    warn_broken(registry)  # as `stylekit run` prints them: a plugin the user expects may be missing
    return plan


def _is_path(image: ImageLike) -> bool:
    return isinstance(image, (str, os.PathLike))


def _with_image_paths(keyed, content, styles: list, many: bool):
    """`keyed` plus images.content / images.style overrides for images given as paths
    (relative to the current folder), each named in messages as the argument it came from."""
    from stylekit.recipe.overrides import Overrides

    paths = {}
    if _is_path(content):
        paths[("images", "content")] = (str(Path(content).resolve()), f"content={str(content)!r}")
    if styles and all(map(_is_path, styles)):
        shown = [str(s) for s in styles] if many else str(styles[0])
        paths[("images", "style")] = ([str(Path(s).resolve()) for s in styles], f"style={shown!r}")
    if not paths:
        return keyed
    combined = Overrides.of(keyed)
    for key, (value, flag) in paths.items():
        combined.add(key, value, flag)
    return combined


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
    from stylekit.run import checkpoints

    if isinstance(recipe, Plan):
        plan = recipe
        if content is not None or style is not None or overrides:
            from stylekit.recipe.plan import MEMORY

            # A plan's paths are resolved already: against the current folder they stay as they
            # are, and files stay files (so that Result.save knows them as inputs); only
            # images that were given in memory are handed over again.
            spec = plan.recipe.images
            if content is None and spec.content == MEMORY:
                content = plan.images.content
            if style is None and MEMORY in spec.style:
                style = list(plan.images.styles)
            plan = load(plan.raw, overrides, content=content, style=style, registry=registry or plan.registry,
                        base=Path.cwd(), label=plan.source)
    else:
        plan = load(recipe, overrides, content=content, style=style, registry=registry)
    path = Path(checkpoint) if checkpoint is not None else None
    if resume and path is None:
        from stylekit.errors import UserError

        raise UserError("resume=True needs checkpoint= the file the stopped run kept its state in")
    state = checkpoints.load(path, plan) if resume else None
    return _stylize(plan, callback=callback, checkpoint=path, resume=state)


__all__ = ["Plan", "Result", "RunDiverged", "StepInfo", "load", "stylize"]
