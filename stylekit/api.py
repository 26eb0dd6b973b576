"""stylekit from Python: load a recipe into a checked plan, stylize, save.

    import stylekit
    plan = stylekit.load("recipes/gatys.toml", overrides={"run.steps": 50})
    result = stylekit.stylize(plan, content=my_pil_image)
    result.image            # PIL image: exactly what result.save() writes
    result.save("out.png")

`stylekit run` is these three calls plus a progress display (`stylekit.commands.run`);
`stylekit video` is `stylize_video` plus one (`stylekit.commands.video_run`).
"""

from __future__ import annotations

import os
import re
import sys
from collections.abc import Mapping
from pathlib import Path
from typing import Any, Callable, Iterable

from stylekit.errors import Problem, UserError
from stylekit.files.outputs import checkpoint_output
from stylekit.plugins.registry import Registry, load_registry, warn_broken
from stylekit.recipe.load import load_recipe
from stylekit.recipe.output_checks import path_argument
from stylekit.recipe.overrides import PYTHON, Overrides, parse_key
from stylekit.recipe.plan import MEMORY, Plan
from stylekit.run import checkpoints
from stylekit.run.session import Result, RunDiverged, StepInfo, as_pil, run_one
from stylekit.tools.progress import auto_bar, frame_bar, in_notebook, is_terminal
from stylekit.video.decode import open_clip
from stylekit.video.extra import require_video_extra
from stylekit.video.frames import FrameStep
from stylekit.video.session import ClipResult, stylize_clip

ImageLike = Any  # a path, a PIL image, or a (3, H, W) / (1, 3, H, W) tensor in [0, 1]


#: The common settings that `load` and `stylize` take as keyword arguments, each the same
#: as its override.
SETTINGS = {"steps": ("run", "steps"), "width": ("output", "width"), "strength": ("strength",),
            "seed": ("run", "seed"), "device": ("run", "device")}


def load(source: str | Path | dict, overrides: dict[str, Any] | None = None, *, content: ImageLike = None,
         style: ImageLike | Iterable[ImageLike] = None, registry: Registry | None = None,
         base: str | Path | None = None, label: str | None = None, steps: int | None = None,
         width: int | None = None, strength: float | None = None, seed: int | None = None,
         device: str | None = None) -> Plan:
    """Load and check a recipe: a file path, a TOML text (a str with a line break or an
    `=`), or a dict of the same shape. `overrides` maps dotted keys to values
    (`{"run.steps": 50, "optimizer.params.lr": 0.5}`). `steps`, `width`, `strength`, `seed`
    and `device`, where given (not None), are the overrides run.steps, output.width,
    strength, run.seed and run.device; giving one and its override too is an error. `content` and `style` give images
    in memory (or paths) in place of the recipe's; then the recipe may leave them out.
    Relative paths in the recipe are resolved against `base` (default: the recipe's
    folder; the current folder for a text or a dict). Raises `stylekit.UserError` listing
    every problem. A plugin package that failed to load, which this recipe does not need,
    gives a `stylekit.plugins.registry.BrokenPluginWarning`, once per process."""
    if isinstance(overrides, Overrides):  # from the command line: keeps the flags for messages
        keyed = overrides
    elif overrides is not None and not isinstance(overrides, Mapping):
        raise UserError(Problem(f"must be a dict of dotted keys to values, e.g. {{'run.steps': 50}}, "
                                f"not {type(overrides).__name__}", field="overrides"))
    else:
        # Named in messages as given here (overrides['run.steps']), not as a --set flag.
        keyed = Overrides()
        for k, v in (overrides or {}).items():
            if not _is_key(k):
                raise UserError(Problem(f"keys are dotted field names such as 'run.steps' or 'loss[1].weight', "
                                        f"not {k!r}", field="overrides"))
            # "loss[1].weight" as on the command line, or "loss.1.weight"
            key = parse_key(re.sub(r"\.(\d+)(?=\.|\[|$)", r"[\1]", k), k, PYTHON) if isinstance(k, str) else tuple(k)
            keyed.add(key, v, PYTHON.name(k))
    keyed = _with_settings(keyed, {"steps": steps, "width": width, "strength": strength, "seed": seed, "device": device})
    base = path_argument(base, "base") if base is not None else None
    if label is not None and not isinstance(label, str):
        raise UserError(Problem(f"must be a str (the recipe's name in messages), not {type(label).__name__}", field="label"))
    registry = _registry(registry)
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
    plan = load_recipe(source, registry, keyed, images=images, base=base, label=label)
    warn_broken(registry)  # as `stylekit run` prints them: a plugin the user expects may be missing
    return plan


def _with_settings(keyed, given: dict[str, Any]):
    """`keyed` plus the settings given as keyword arguments, each named in messages as the
    argument (`steps=0`). One that an override sets too, or a table that holds it, is refused:
    which of the two was meant cannot be told."""
    given = {name: value for name, value in given.items() if value is not None}
    if not given:
        return keyed
    combined = Overrides.of(keyed)
    for name, value in given.items():
        key = SETTINGS[name]
        clash = next((k for k in keyed if k[:len(key)] == key or key[:len(k)] == k), None)
        if clash is not None:
            shown = keyed.flags.get(clash) or ".".join(map(str, clash))
            raise UserError(Problem(f"{name}={value!r} and {shown} both set {'.'.join(key)} - give one of them",
                                    field=name))
        combined.add(key, value, f"{name}={value!r}")
    return combined


def _is_path(image: ImageLike) -> bool:
    return isinstance(image, (str, os.PathLike))


def _is_key(key) -> bool:
    """A key of `overrides`: a dotted name, or (as the command line makes them) a non-empty
    tuple of field names and list indexes."""
    if isinstance(key, str):
        return True
    return isinstance(key, tuple) and bool(key) and all(
        isinstance(part, str) or isinstance(part, int) and not isinstance(part, bool) for part in key)


def _registry(registry) -> Registry | None:
    if registry is not None and not isinstance(registry, Registry):
        raise UserError(Problem(f"must be a stylekit Registry (stylekit.plugins.registry.load_registry(), or "
                                f"stylekit.testing.tiny_registry()), not {type(registry).__name__}", field="registry"))
    return registry


def _with_image_paths(keyed, content, styles: list, many: bool):
    """`keyed` plus images.content / images.style overrides for images given as paths
    (relative to the current folder), each named in messages as the argument it came from."""
    paths = {}
    if _is_path(content):
        path = path_argument(content, "content")
        paths[("images", "content")] = (str(path.resolve()), f"content={str(content)!r}")
    if styles and all(map(_is_path, styles)):
        shown = [str(s) for s in styles] if many else str(styles[0])
        given = [path_argument(s, f"style[{i}]" if many else "style") for i, s in enumerate(styles)]
        paths[("images", "style")] = ([str(p.resolve()) for p in given], f"style={shown!r}")
    if not paths:
        return keyed
    combined = Overrides.of(keyed)
    for key, (value, flag) in paths.items():
        combined.add(key, value, flag)
    return combined


def stylize(recipe: Plan | str | Path | dict, content: ImageLike = None, style: ImageLike | Iterable[ImageLike] = None,
            callback: Callable[[StepInfo], None] | None = None, *, overrides: dict[str, Any] | None = None,
            checkpoint: str | Path | None = None, resume: bool = False, registry: Registry | None = None,
            steps: int | None = None, width: int | None = None, strength: float | None = None,
            seed: int | None = None, device: str | None = None, progress: bool | None = None) -> Result:
    """Stylize and return the `Result`; writes nothing unless `checkpoint` is given.

    `recipe` is a plan from `load`, or anything `load` takes. `content` / `style` replace
    its images. `steps`, `width`, `strength`, `seed` and `device` are as `load`'s, applied
    to the plan as its overrides would be. `callback(info)` runs after every step; `info.stop()` ends the run there.
    With `checkpoint` (a file path), the run's state is kept there every
    `output.checkpoint_every` steps and when it stops; `resume=True` continues from it.
    Raises `RunDiverged` (with the last finite image) if a loss goes NaN or infinite.
    `progress`: a bar redrawn in place (tqdm.auto: a widget in Jupyter with ipywidgets) with
    steps, stage, time left and the loss terms; None (default) shows it in a notebook or
    when stderr is a terminal, not when it is piped (so that logs stay clean).
    """
    registry = _registry(registry)
    if progress is not None and not isinstance(progress, bool):
        raise UserError(Problem(f"must be True, False or None (on in a notebook or a terminal), "
                                f"not {type(progress).__name__}", field="progress"))
    path = path_argument(checkpoint, "checkpoint") if checkpoint is not None else None
    if resume and path is None:
        raise UserError("resume=True needs checkpoint= the file the stopped run kept its state in")
    if path is not None:
        _check_checkpoint_path(path, resume)
    settings = {"steps": steps, "width": width, "strength": strength, "seed": seed, "device": device}
    if isinstance(recipe, Plan):
        plan = recipe
        if content is not None or style is not None or overrides or any(v is not None for v in settings.values()):
            # A plan's paths are resolved already: against the current folder they stay as they
            # are, and files stay files (so that Result.save knows them as inputs); only
            # images that were given in memory are handed over again.
            spec = plan.recipe.images
            if content is None and spec.content == MEMORY:
                content = plan.images.content
            if style is None and MEMORY in spec.style:
                style = list(plan.images.styles)
            plan = load(plan.raw, overrides, content=content, style=style, registry=registry or plan.registry,
                        base=Path.cwd(), label=plan.source, **settings)
    else:
        plan = load(recipe, overrides, content=content, style=style, registry=registry, **settings)
    state = checkpoints.load(path, plan) if resume else None
    if progress is None:
        progress = in_notebook() or is_terminal(sys.stderr)
    if not progress or callback is not None and not callable(callback):  # run_one refuses the latter
        return run_one(plan, callback=callback, checkpoint=path, resume=state)
    bar = auto_bar()

    def shown(info: StepInfo) -> None:
        bar(info)  # first: a callback that stops the run or raises leaves the bar at its step
        if callback is not None:
            callback(info)

    try:
        return run_one(plan, callback=shown, checkpoint=path, resume=state)
    finally:
        bar.close()


def _check_checkpoint_path(path: Path, resume: bool) -> None:
    """The checkpoint's path, checked before the run as `stylekit run` checks its own: a
    folder, or (when not resuming from it) a file that stylekit did not write, is refused
    rather than found when the first checkpoint is written, or replaced."""
    if path.is_dir():
        raise UserError(Problem(f"{path} is a folder - give a file name in it, e.g. {path / 'run.checkpoint.pt'}",
                                field="checkpoint"))
    if not resume and (path.exists() or path.is_symlink()) and checkpoint_output(path) is None:
        raise UserError(Problem(f"{path} is a file that stylekit did not write, which the run's checkpoint would "
                                "replace - give another path, or move it away", field="checkpoint"))


__all__ = ["Plan", "Result", "RunDiverged", "StepInfo", "load", "stylize"]


def stylize_video(recipe: Plan | str | Path | dict, input: str | Path, output: str | Path,
                  callback: Callable[[FrameStep], None] | None = None, *, style: ImageLike | Iterable[ImageLike] = None,
                  overrides: dict[str, Any] | None = None, resume: bool = False, keep_frames: bool = False,
                  registry: Registry | None = None, steps: int | None = None, width: int | None = None,
                  strength: float | None = None, seed: int | None = None, device: str | None = None,
                  progress: bool | None = None) -> ClipResult:
    """Stylize the clip at `input` (a video file or a folder of frames) with temporal
    consistency and write `output` (.mp4, .m4v, .mov or .mkv; no suffix: a folder of frames),
    as `stylekit video` does (docs/video.md). Needs the extra: pip install 'stylekit[video]'.

    `recipe`, `style`, `overrides` and the settings are as `stylize`'s; the clip is stylized
    at its own size unless `width` (or an output.width/height override) says otherwise.
    `callback(step)` runs after every step of every frame (a `FrameStep`: the frame, the
    frame's `StepInfo`, the previous output); `step.stop()` ends the video after it, with
    the finished frames kept in the work folder (OUT.frames) and written as a partial video;
    `resume=True` goes on from there. `progress`: a bar over the frames (as `stylize`'s).
    Returns a `ClipResult`; raises `FrameDiverged` when a frame goes non-finite."""
    require_video_extra()
    clip = open_clip(path_argument(input, "input"))
    first = next(iter(clip.frames()))
    plan = recipe if isinstance(recipe, Plan) else None
    keyed = dict(overrides or {})
    sized = width is not None or any(str(k).startswith(("output.width", "output.height")) for k in keyed)
    plan = load(plan.raw if plan else recipe, keyed, content=first, style=style, registry=registry or (plan and plan.registry),
                base=Path.cwd() if plan else None, label=plan.source if plan else None, steps=steps,
                width=width if sized else clip.width, strength=strength, seed=seed, device=device)
    if progress is None:
        progress = in_notebook() or is_terminal(sys.stderr)
    if not progress:
        return stylize_clip(plan, clip, path_argument(output, "output"), callback, resume, keep_frames)
    bar = frame_bar(clip.frame_count)

    def shown(step: FrameStep) -> None:
        bar(step)
        if callback is not None:
            callback(step)

    try:
        return stylize_clip(plan, clip, path_argument(output, "output"), shown, resume, keep_frames)
    finally:
        bar.close()
