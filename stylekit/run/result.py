"""What a run gives back: the `StepInfo` a per-step callback sees, the `Result` of a finished
or stopped run, the `RunDiverged` of one that went non-finite, and the run record (.json)
that each of them carries: what ran, with which components and params, where, and the loss
of every step.
"""

from __future__ import annotations

import io
import math
import platform
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

import torch
from PIL import Image

from stylekit import __version__
from stylekit.errors import Problem, RunFailed, UserError
from stylekit.files.images import to_image
from stylekit.files.outputs import write_result
from stylekit.plugins.registry import BUILTIN_PACKAGE
from stylekit.recipe.devices import dtype_name
from stylekit.recipe.output_checks import path_argument, save_problems
from stylekit.recipe.plan import Plan
from stylekit.run.build import StageImages
from stylekit.run.engine import Diverged


@dataclass
class StepInfo:
    """What a per-step callback sees. Reading `losses` waits for the device: read it only
    when you show it.

    The losses jump at the first step of a stage after the first: the stage starts from the
    previous stage's image upsampled to a larger size, whose features miss the detail that
    the new size's content and style targets hold, and terms that sum over pixels grow with
    their number. Compare losses within a stage (`stage` tells them apart), not across."""

    stage: int  # 1-based
    stages: int
    step: int  # 1-based, counted over all stages
    #: The run's steps as far as known: the stages' steps, less those a stage whose loss
    #: settled (`[[stage]] min_gain`) left untaken; at the run's last step, `step == total`.
    total: int
    seconds: float  # optimization time so far, set-up excluded
    image: torch.Tensor  # the current output (1, 3, H, W) in [0, 1]; do not change it
    content: torch.Tensor  # this stage's content image
    styles: list[torch.Tensor]  # this stage's style images
    _losses: Callable[[], dict[str, float]] = field(repr=False, default=dict)
    #: When this step ended its stage before its steps (`[[stage]] min_gain`): how much the
    #: stage's last `gain_steps` steps lowered its lowest loss, as a fraction; else None.
    settled_gain: float | None = None
    _stop: Callable[[], None] = field(repr=False, default=lambda: None)

    @property
    def losses(self) -> dict[str, float]:
        """{'total': ..., label: weighted value, ...} at this step."""
        return self._losses()

    def stop(self) -> None:
        """End the run after this step, as Ctrl-C does: the result is the current image."""
        self._stop()


@dataclass
class Result:
    """A finished or stopped run. `image` is exactly what `save` writes."""

    tensor: torch.Tensor  # (1, 3, H, W) on the CPU, in [0, 1], on the 8-bit grid of the saved image
    history: list[dict[str, float | None]]  # per step: {'total': ..., label: ...}
    record: dict
    status: str  # "finished", "stopped" (by the callback) or "interrupted" (by a signal)
    steps_done: int
    signal: int | None = None  # the signal that interrupted the run
    plan: Plan | None = field(default=None, repr=False)
    # 1-based: the stage the image is from. A run stopped before its last stage returns that
    # stage's image, at that stage's (smaller) size, not the recipe's output size.
    stage: int = 1
    stages: int = 1
    #: The steps the run takes in all, as known when it ended: the stages' steps, less those
    #: a stage whose loss settled (`[[stage]] min_gain`) left untaken; None: the plan's.
    total_steps: int | None = None

    @property
    def image(self) -> Image.Image:
        return to_image(self.tensor)

    def __repr__(self) -> str:
        # The dataclass repr would print the whole tensor and history (kilobytes in a
        # notebook cell); a line that says how the run ended is what the cell needs.
        height, width = self.tensor.shape[-2:]
        seconds = self.record.get("loop_seconds")
        spent = f", {seconds:.1f} s" if isinstance(seconds, (int, float)) else ""
        at = f" (stage {self.stage} of {self.stages})" if self.stage < self.stages else ""
        total = self.total_steps if self.total_steps is not None else self.record.get("steps", "?")
        return (f"<Result {self.status}: {self.steps_done}/{total} steps, "
                f"{width}x{height}{at}{spent}>")

    def _repr_png_(self) -> bytes:
        """The image as PNG bytes: a notebook shows a Result as its image."""
        buffer = io.BytesIO()
        self.image.save(buffer, format="PNG")
        return buffer.getvalue()

    def save(self, path: str | Path | None = None, record: bool | None = None) -> Path:
        """Write the image (atomically) to `path`, default the recipe's output, and the run
        record beside it as .json unless `record` is False (default: the recipe's
        output.record). Refuses, as `stylekit run` does, a path that would overwrite an input
        image, a .json that is not a run record or is the record of another image (x.json
        of an x.png, when saving x.jpg), a folder, or a format it does not write."""
        path = path_argument(path, "Result.save path") if path is not None else self.plan.output
        if record is not None and not isinstance(record, bool):
            raise UserError(Problem(f"must be True, False or None, not {type(record).__name__}", field="Result.save record"))
        record = self.plan.recipe.output.record if record is None else record
        problems = save_problems(path, self.plan, record)
        if problems:  # as `stylekit run` refuses them: an input, a folder, a .json it did not write
            raise UserError(problems)
        return write_result(self, path, record)


class RunDiverged(RunFailed):
    """A loss or the image went non-finite. `image` is the last finite image (as a PIL
    image, colours put back as for a result), `step` the first step that was not finite."""

    def __init__(self, message: str, step: int, labels: list[str], image: Image.Image, image_step: int, record: dict):
        super().__init__(message)
        self.step, self.labels, self.image, self.image_step, self.record = step, labels, image, image_step, record


def labels_of(plan: Plan) -> list[str]:
    return ["total", *(loss.label for loss in plan.losses)]


def make_result(plan: Plan, images: StageImages, image: torch.Tensor, history: list[list[float]], status: str,
                steps_done: int, seconds: float, setup: float, started: float, signum: int | None = None,
                stage: int = 1, total_steps: int | None = None, stage_steps: list[int] | None = None) -> Result:
    """The result of a run that ended with `image` in the stage `images` belong to, the
    `stage`-th (1-based) of the plan's."""
    tensor = quantized(images.postprocess(image) if images.postprocess else image)
    rows = [_strict(dict(zip(labels_of(plan), row))) for row in history]
    record = run_record(plan, rows, status, steps_done, seconds, setup, started, tensor, stage, stage_steps)
    return Result(tensor, rows, record, status, steps_done, signum, plan, stage, len(plan.stages), total_steps)


def quantized(image: torch.Tensor) -> torch.Tensor:
    """The image on the 8-bit grid it is saved on, so that what is returned is what is saved."""
    return torch.round(image.detach().float().clamp(0, 1).cpu() * 255) / 255


def _strict(value):
    """Run records are strict JSON: a non-finite number, anywhere in it, becomes null."""
    if isinstance(value, float):
        return value if math.isfinite(value) else None
    if isinstance(value, dict):
        return {k: _strict(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_strict(v) for v in value]
    return value


def diverged(plan: Plan, exc: Diverged, images: StageImages, offset: int, history: list, started: float) -> RunDiverged:
    packages = {loss.label: loss.choice.package for loss in plan.losses}
    terms = ", ".join(f"{label} (package {packages[label]})" for label in exc.labels) or "the image"
    step = offset + exc.step
    image = exc.last_finite
    if images.postprocess is not None:
        image = images.postprocess(image)
    what = "went non-finite (NaN or infinity)" if exc.labels else "went non-finite or was stepped far past [0, 1]"
    causes = "lower the learning rate (optimizer.params.lr) or the loss weights"
    first = exc.labels[0] if exc.labels else None
    if first is not None and packages[first] != BUILTIN_PACKAGE:
        # A plugin's term that goes non-finite first may be the plugin's bug (a log of 0, a
        # division by a norm that reached 0) rather than a step too long: say so before the
        # usual causes, so that its author is not sent to tune the learning rate.
        causes = (f"the term '{first}' of package '{packages[first]}' produced it first: a bug there is likely "
                  f"(its author may need to look at its forward()); if not, {causes}")
    message = f"the run diverged: {terms} {what} at step {step} of {'at most ' if any(s.min_gain for s in plan.stages) else ''}{plan.total_steps} - {causes}"
    rows = [_strict(dict(zip(labels_of(plan), row))) for row in history + [r.tolist() for r in exc.rows]]
    record = run_record(plan, rows, "diverged", offset + exc.last_finite_step, 0.0, 0.0, started, quantized(image))
    record["diverged_at_step"], record["non_finite"] = step, exc.labels or ["image"]
    return RunDiverged(message, step, exc.labels, to_image(image), offset + exc.last_finite_step, record)


def run_record(plan: Plan, rows: list[dict], status: str, steps_done: int, seconds: float, setup: float,
               started: float, image: torch.Tensor, stage: int | None = None,
               stage_steps: list[int] | None = None) -> dict:
    device = plan.device
    return _strict({
        "status": status,
        "steps_done": steps_done,
        "steps": plan.total_steps,
        "recipe_file": plan.source,
        "recipe": plan.raw,
        "resolved": resolved_components(plan),
        "versions": {"stylekit": __version__, "torch": torch.__version__, "python": platform.python_version(),
                     "plugins": dict(plan.plugin_versions)},
        "device": str(device),
        "device_name": torch.cuda.get_device_name(device) if device.type == "cuda" else platform.processor() or platform.machine(),
        "precision": dtype_name(plan.dtype),
        "size": list(image.shape[-2:]),
        # The stage the image is from (1-based) and of how many: "size" is that stage's.
        **({"stage": stage, "stages": len(plan.stages)} if stage is not None else {}),
        # The steps each stage run took: fewer than its steps where it ended sooner (min_gain).
        **({"stage_steps": list(stage_steps)} if stage_steps else {}),
        "started": time.strftime("%Y-%m-%dT%H:%M:%S%z", time.localtime(started)),
        "setup_seconds": setup,
        "loop_seconds": seconds,
        "seconds_per_step": seconds / max(1, steps_done),
        "losses": rows,
    })


def resolved_components(plan: Plan) -> dict:
    """Each component as the run used it: its package and every param with the value it
    took, defaults included (the recipe's `params` tables hold only what was written)."""
    def described(choice) -> dict:
        return {"name": choice.name, "package": choice.package, "params": choice.params.model_dump(mode="json")}

    return {"backbone": {**described(plan.backbone), "weights": plan.weights},
            "loss": [{**described(loss.choice), "weight": loss.weight, "layers": dict(loss.layers)} for loss in plan.losses],
            "optimizer": described(plan.optimizer), "scheduler": described(plan.scheduler)}
