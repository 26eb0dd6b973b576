"""One run of a plan: its stages in turn, the per-step callback, a clean stop on SIGINT or
SIGTERM, checkpoints to resume from, and the first non-finite loss caught.

`stylize` touches no file unless asked to keep a checkpoint: it returns a `Result` that the
caller saves (the CLI does, in `stylekit.commands.run`).
"""

from __future__ import annotations

import math
import os
import platform
import signal
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

import torch
from PIL import Image

from stylekit import __version__
from stylekit.run import checkpoints
from stylekit.plugins.blame import attributed
from stylekit.run.build import Reuse, StageImages, build_backbone, build_objective, build_optimizer, build_scheduler, stage_images
from stylekit.recipe.devices import dtype_name
from stylekit.run.engine import Diverged, Loop, LoopOptions, optimize
from stylekit.errors import Problem, RunFailed, UserError
from stylekit.files.images import to_image
from stylekit.recipe.plan import Plan


@dataclass
class StepInfo:
    """What a per-step callback sees. Reading `losses` waits for the device: read it only
    when you show it."""

    stage: int  # 1-based
    stages: int
    step: int  # 1-based, counted over all stages
    total: int
    seconds: float  # optimization time so far, set-up excluded
    image: torch.Tensor  # the current output (1, 3, H, W) in [0, 1]; do not change it
    content: torch.Tensor  # this stage's content image
    styles: list[torch.Tensor]  # this stage's style images
    _losses: Callable[[], dict[str, float]] = field(repr=False, default=dict)
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

    @property
    def image(self) -> Image.Image:
        return to_image(self.tensor)

    def save(self, path: str | Path | None = None, record: bool | None = None) -> Path:
        """Write the image (atomically) to `path`, default the recipe's output, and the run
        record beside it as .json unless `record` is False (default: the recipe's
        output.record). Refuses, as `stylekit run` does, a path that would overwrite an input
        image, a .json that is not a run record or is the record of another image (x.json
        of an x.png, when saving x.jpg), a folder, or a format it does not write."""
        from stylekit.recipe.checks import path_argument, save_problems
        from stylekit.files.outputs import write_result

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


class Stop:
    """Why a run should end early: set by the callback's `stop()` or by a signal."""

    def __init__(self):
        self.requested = False
        self.signal: int | None = None

    def request(self, signum: int | None = None) -> None:
        if signum is not None and self.requested and self.signal is not None:
            raise KeyboardInterrupt  # a second Ctrl-C: the user wants out now
        self.requested, self.signal = True, signum if signum is not None else self.signal


def stylize(plan: Plan, callback: Callable[[StepInfo], None] | None = None,
            checkpoint: Path | checkpoints.Keeper | None = None, resume: dict | None = None,
            reuse: Reuse | None = None) -> Result:
    """Run `plan` and return its result. `callback(info)` runs after every step. With
    `checkpoint` (a path, or a `checkpoints.Keeper` that says how), the state is kept there
    every `output.checkpoint_every` steps and when the run is stopped; `resume` (from
    `checkpoints.load`) continues a run from its state. `reuse` keeps the backbone and
    style features between runs of one recipe (a batch)."""
    if callback is not None and not callable(callback):  # found now, not after the set-up and one step
        raise UserError(Problem(f"callback must be a function of one argument (a StepInfo), not {type(callback).__name__}"))
    if checkpoint is not None and not isinstance(checkpoint, checkpoints.Keeper):
        checkpoint = checkpoints.Keeper(checkpoint)
    if plan.recipe.run.seed is not None:
        torch.manual_seed(plan.recipe.run.seed)
    stop = Stop()
    with signals_to(stop):
        return _run(plan, callback, checkpoint, resume, stop, reuse)


def _run(plan: Plan, callback, checkpoint: checkpoints.Keeper | None, resume: dict | None, stop: Stop,
         reuse: Reuse | None) -> Result:
    started = time.time()
    backbone = shared_backbone(plan, reuse)
    history: list[list[float]] = list(resume["history"]) if resume else []
    first_stage = resume["stage"] if resume else 0
    offset = sum(stage.steps for stage in plan.stages[:first_stage])
    every = plan.recipe.output.checkpoint_every
    seconds, setup = (resume.get("seconds", 0.0) if resume else 0.0), 0.0
    previous: torch.Tensor | None = None
    images: StageImages | None = None
    outcome = None
    for index in range(first_stage, len(plan.stages)):
        stage = plan.stages[index]
        images = stage_images(plan, stage, previous)
        try:
            objective = build_objective(plan, backbone, images, reuse)
        except UserError as exc:
            raise _named(plan, exc) from None
        except Exception as exc:  # raised by a plugin's code: name the package, the recipe entry and the step
            raise attributed(exc, plan, offset) or exc
        options = loop_options(plan, stage)
        loop_resume = resume["loop"] if resume and index == first_stage else None
        if loop_resume is not None:
            _check_size(plan, loop_resume["image"], images.start)
            torch.set_rng_state(resume["rng"])

        def on_step(loop: Loop, stage_index=index, stage_offset=offset, images=images, began=time.perf_counter()) -> bool:
            step = stage_offset + loop.step
            if callback is not None:
                callback(step_info(plan, stage_index, step, seconds + time.perf_counter() - began, loop, images, stop))
            due = stop.requested or (every and step % every == 0 and step != plan.total_steps)
            # Off the CPU finiteness is checked every few steps: never keep a state that is not.
            if checkpoint is not None and due and bool(torch.isfinite(loop.output).all()):
                checkpoint.keep(plan, stage_index, loop, history + [r.tolist() for r in loop.rows],
                                seconds + time.perf_counter() - began, final=stop.requested)
            return stop.requested

        try:
            outcome = optimize(objective, images.start, build_optimizer(plan), build_scheduler(plan), options,
                               plan.device, on_step=on_step, resume=loop_resume)
        except Diverged as exc:
            raise diverged(plan, exc, images, offset, history, started) from None
        except UserError as exc:
            raise _named(plan, exc) from None
        except Exception as exc:  # raised by a plugin's code: name the package, the recipe entry and the step
            raise attributed(exc, plan, offset, [wt.term for wt in objective.terms]) or exc
        history += [row.tolist() for row in outcome.rows]
        seconds, setup = seconds + outcome.seconds, setup + outcome.setup_seconds
        offset += outcome.steps_done
        if outcome.stopped:
            break
        previous = outcome.image
    if not stop.requested or offset == plan.total_steps:  # a stop at the last step stopped nothing
        status = "finished"
    else:
        status = "interrupted" if stop.signal is not None else "stopped"
    return make_result(plan, images, outcome.image, history, status, offset, seconds, setup, started, stop.signal)


def step_info(plan: Plan, stage_index: int, step: int, seconds: float, loop: Loop, images: StageImages,
              stop: Stop) -> StepInfo:
    """What a callback sees after `step` (counted over all stages) of `plan`."""
    labels = labels_of(plan)
    return StepInfo(stage=stage_index + 1, stages=len(plan.stages), step=step, total=plan.total_steps, seconds=seconds,
                    image=loop.output, content=images.content, styles=images.styles,
                    _losses=lambda: dict(zip(labels, loop.rows[-1].tolist())), _stop=stop.request)


def shared_backbone(plan: Plan, reuse: Reuse | None):
    if reuse is None:
        return build_backbone(plan)
    if reuse.backbone is None:
        reuse.backbone = build_backbone(plan)
    return reuse.backbone


def labels_of(plan: Plan) -> list[str]:
    return ["total", *(loss.label for loss in plan.losses)]


def loop_options(plan: Plan, stage) -> LoopOptions:
    run = plan.recipe.run
    return LoopOptions(steps=stage.steps, clamp=run.clamp, ema_decay=run.ema_decay, compile=run.compile,
                       cuda_graph=run.cuda_graph, check_every=1 if plan.device.type == "cpu" else 10)


def make_result(plan: Plan, images: StageImages, image: torch.Tensor, history: list[list[float]], status: str,
                steps_done: int, seconds: float, setup: float, started: float, signum: int | None = None) -> Result:
    """The result of a run that ended with `image` in the stage `images` belong to."""
    tensor = quantized(images.postprocess(image) if images.postprocess else image)
    rows = [_strict(dict(zip(labels_of(plan), row))) for row in history]
    record = run_record(plan, rows, status, steps_done, seconds, setup, started, tensor)
    return Result(tensor, rows, record, status, steps_done, signum, plan)


def _check_size(plan: Plan, kept: torch.Tensor, start: torch.Tensor) -> None:
    if kept.shape != start.shape:
        (h, w), (h0, w0) = kept.shape[-2:], start.shape[-2:]
        raise UserError(Problem(f"the checkpoint's image is {w}x{h} but this run's is {w0}x{h0} at that stage - resume "
                                "with the size the run was started with, or run without --resume", file=plan.source))


def _named(plan: Plan, exc: UserError) -> UserError:
    """A UserError raised during the run (by a plugin, the graph recording), naming the recipe."""
    return UserError([p if p.file else Problem(p.message, plan.source, p.line, p.field) for p in exc.problems])


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
    message = (f"the run diverged: {terms} went non-finite (NaN or infinity) at step {step} of {plan.total_steps} - "
               "lower the learning rate (optimizer.params.lr) or the loss weights")
    rows = [_strict(dict(zip(labels_of(plan), row))) for row in history + [r.tolist() for r in exc.rows]]
    record = run_record(plan, rows, "diverged", offset + exc.last_finite_step, 0.0, 0.0, started, quantized(image))
    record["diverged_at_step"], record["non_finite"] = step, exc.labels or ["image"]
    return RunDiverged(message, step, exc.labels, to_image(image), offset + exc.last_finite_step, record)


class signals_to:
    """While active, SIGINT and SIGTERM ask `stop` to end the run after the step in
    progress (a second Ctrl-C ends it at once). Signal handlers can only be set from the
    main thread; elsewhere (a notebook's worker thread, a server) nothing changes."""

    SIGNALS = (signal.SIGINT, signal.SIGTERM)

    def __init__(self, stop: Stop):
        self.stop, self.previous = stop, {}

    def __enter__(self):
        if threading.current_thread() is threading.main_thread():
            for signum in self.SIGNALS:
                self.previous[signum] = signal.signal(signum, lambda s, _frame: self.stop.request(s))
        return self

    def __exit__(self, *exc_info):
        for signum, handler in self.previous.items():
            signal.signal(signum, handler)


def run_record(plan: Plan, rows: list[dict], status: str, steps_done: int, seconds: float, setup: float,
               started: float, image: torch.Tensor) -> dict:
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


#: How far past [0, 1] an image tensor may reach and be clamped, not refused (see as_pil).
OVERSHOOT = 0.1


def as_pil(image, what: str = "image") -> Image.Image:
    """An input image given as a path, a PIL image or a (3, H, W) / (1, 3, H, W) tensor in
    [0, 1], as a PIL image: RGB, but for a PIL image, which the recipe converts as it does a
    file's pixels (16-bit scaled, transparency on images.background). Tensors go through the
    same 8 bits as a saved file would. `what` names the argument in messages ("content")."""
    from stylekit.files.images import UNREADABLE, open_rgb, unreadable

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


__all__ = ["Result", "RunDiverged", "StepInfo", "as_pil", "stylize"]
