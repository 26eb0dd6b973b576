"""Running plans: `run_one` runs one plan, `run_group` several whose stages have the same
sizes (a batch's items of one aspect). The API's `stylekit.stylize` calls `run_one`. Both are the one stage loop of
`stylekit.run.stages` over a group, of one image or of several.

`run_one` touches no file unless asked to keep a checkpoint: it returns a `Result` that the
caller saves (the CLI does, in `stylekit.commands.run`).
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Callable

import torch
from PIL import Image

from stylekit.errors import Problem, UserError
from stylekit.files.images import UNREADABLE, open_rgb, to_image, unreadable
from stylekit.recipe.plan import Plan
from stylekit.run import checkpoints
from stylekit.run.build import Reuse
from stylekit.run.result import Result, RunDiverged, StepInfo
from stylekit.run.stages import run_plans


def run_one(plan: Plan, callback: Callable[[StepInfo], None] | None = None,
            checkpoint: Path | checkpoints.Keeper | None = None,
            resume: dict | None = None, reuse: Reuse | None = None) -> Result:
    """Run `plan` and return its result. `callback(info)` runs after every step. With
    `checkpoint`, the state is kept there every `output.checkpoint_every` steps and when the
    run is stopped; `resume` (from `checkpoints.load`) continues a run from its state.
    `reuse` keeps the backbone and style features between runs of one recipe (a batch).
    Raises `RunDiverged` when the run goes non-finite."""
    if callback is not None and not callable(callback):  # found now, not after the set-up and one step
        raise UserError(Problem(f"callback must be a function of one argument (a StepInfo), not {type(callback).__name__}"))
    if checkpoint is not None and not isinstance(checkpoint, checkpoints.Keeper):
        checkpoint = checkpoints.Keeper(checkpoint)
    [outcome] = run_plans([plan], [callback], reuse, checkpoint, resume)
    if isinstance(outcome, RunDiverged):
        raise outcome
    return outcome


def run_group(plans: list[Plan], reuse: Reuse | None, callbacks: list | None = None) -> list[Result | RunDiverged]:
    """Run plans whose stages have the same sizes, stage by stage, all images in step.
    Returns per plan a `Result`, or the `RunDiverged` that stopped it; the others go on.
    `callbacks[i](info)` follows plan i as `run_one`'s callback does; `info.stop()`, Ctrl-C
    or SIGTERM end all of them after the step in progress, with status "stopped" or
    "interrupted"."""
    return run_plans(plans, callbacks or [None] * len(plans), reuse)


#: How far past [0, 1] an image tensor may reach and be clamped, not refused (see as_pil).
OVERSHOOT = 0.1


def as_pil(image, what: str = "image") -> Image.Image:
    """An input image given as a path, a PIL image or a (3, H, W) / (1, 3, H, W) tensor in
    [0, 1], as a PIL image: RGB, but for a PIL image, which the recipe converts as it does a
    file's pixels (16-bit scaled, transparency on images.background). Tensors go through the
    same 8 bits as a saved file would. `what` names the argument in messages ("content")."""
    def bad(message: str) -> UserError:
        return UserError(Problem(message, field=what))

    if isinstance(image, Image.Image):
        try:
            image.load()  # a lazily opened file that is truncated fails here, not mid-run
        except UNREADABLE as exc:
            raise bad(unreadable(exc)) from None
        if 0 in image.size:
            raise bad(f"the image is empty ({image.width}x{image.height} pixels)")
        return image
    if isinstance(image, torch.Tensor):
        if image.device.type == "meta" or image.layout != torch.strided:  # no pixels to read as they are
            raise bad(f"a {'meta' if image.device.type == 'meta' else image.layout} tensor holds no pixels to read - "
                      "give a dense tensor with its values (.to_dense(), or one made on the CPU or a GPU)")
        if image.dim() == 3:
            image = image.unsqueeze(0)
        if image.dim() != 4 or image.shape[:2] != (1, 3):
            raise bad(f"an image tensor must be (3, H, W) or (1, 3, H, W), not {tuple(image.shape)}")
        if 0 in image.shape[2:]:
            raise bad(f"the image tensor is empty ({tuple(image.shape)})")
        if not image.is_floating_point():
            raise bad(f"an image tensor must hold floats in [0, 1], not {image.dtype} - for 0..255 pixels, "
                      "pass tensor.float() / 255")
        values = image.detach().float()
        if not torch.isfinite(values).all():
            raise bad("the image tensor holds NaN or infinite values")
        low, high = values.min().item(), values.max().item()
        # A model's or a resampling's overshoot of [0, 1] stays within a few percent and is
        # clamped; further out is another convention (0..255 pixels reach far past 1, a
        # normalized tensor below 0 by a standard deviation), which clamping would turn into
        # another image in silence.
        if low < -OVERSHOOT or high > 1 + OVERSHOOT:
            raise bad(f"an image tensor must hold values in [0, 1], not {low:.4g} to {high:.4g} - divide 0..255 "
                      "pixels by 255; rescale other ranges, or clamp(0, 1)")
        return to_image(image.clamp(0, 1))
    if isinstance(image, (str, os.PathLike)):
        try:
            return open_rgb(str(image))
        except UserError as exc:
            raise bad(exc.problems[0].message) from None
    kind = type(image).__qualname__ if type(image).__module__ == "builtins" else f"{type(image).__module__}.{type(image).__qualname__}"
    hint = " - convert it with PIL.Image.fromarray(array)" if type(image).__module__ == "numpy" else ""
    raise bad(f"an image must be a file path, a PIL image or a (3, H, W) tensor in [0, 1], not {kind}{hint}")


__all__ = ["Result", "RunDiverged", "StepInfo", "as_pil", "run_group", "run_one"]
