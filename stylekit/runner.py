"""Running a loaded recipe: progress display, intermediate images, output and run record."""

from __future__ import annotations

import dataclasses
import json
import platform
import sys
import time
from pathlib import Path
from typing import TextIO

import torch

from . import __version__
from .build import build_job, stages_of
from .devices import dtype_name
from .engine import Progress, Result, run
from .errors import UserError
from .images import save_atomic, to_image, write_text_atomic
from .plugins import Registry
from .recipe import LoadedRecipe
from .report import plot_losses, strip
from .resources import failure_message, pre_run_warnings


def intermediate_path(output: Path, step: int) -> Path:
    return output.with_name(f"{output.stem}.step{step:05d}.png")


def record_path(output: Path) -> Path:
    return output.with_suffix(".json")


def run_recipe(loaded: LoadedRecipe, registry: Registry, stream: TextIO | None = None) -> Result:
    recipe = loaded.recipe
    stream = stream or sys.stderr  # looked up now, so redirections made by callers apply
    started = time.time()
    output = Path(recipe.output.path)
    stages = stages_of(loaded)
    total_steps = sum(stage.steps for stage in stages)
    first = build_job(loaded, registry, stages[0])
    progress = Progress([wt.label for wt in first.terms])
    every = recipe.run.progress_every
    last_print = {"step": 0, "time": time.perf_counter()}
    offset = [0]  # steps done in earlier stages
    saved: list[Path] = []

    def on_step(stage_step: int, image: torch.Tensor) -> None:
        step = offset[0] + stage_step
        if every and (step % every == 0 or step == 1 or step == total_steps):
            now = time.perf_counter()
            per_step = (now - last_print["time"]) / (step - last_print["step"])
            last_print.update(step=step, time=now)
            terms = "  ".join(f"{k} {v:.4g}" for k, v in progress.latest().items())
            print(f"step {step:>5}/{total_steps}  {terms}  ({per_step:.3f} s/step)", file=stream, flush=True)
        if recipe.output.save_every and step % recipe.output.save_every == 0 and step != total_steps:
            saved.append(intermediate_path(output, step))
            save_atomic(to_image(image), saved[-1])

    h, w = first.content.shape[-2:]
    print(f"stylekit {__version__}: {loaded.path} -> {output} ({w}x{h}, {total_steps} steps, "
          f"{first.device.type}, {dtype_name(first.dtype)})", file=stream, flush=True)
    for warning in pre_run_warnings(first, stages):
        print(f"warning: {warning}", file=stream, flush=True)
    job, result, seconds, setup = first, None, 0.0, 0.0
    last_print["time"] = time.perf_counter()
    try:
        for index, stage in enumerate(stages):
            if index:
                job = build_job(loaded, registry, stage, previous=result.image, backbone=job.backbone)
                print(f"stage {index + 1}/{len(stages)}: {stage.width} px wide, {stage.steps} steps", file=stream, flush=True)
            job.on_step = on_step
            result = run(job, progress)
            offset[0] += stage.steps
            seconds, setup = seconds + result.seconds, setup + result.setup_seconds
    except UserError as exc:  # raised during the run (a plugin, the graph recording): name the recipe
        raise UserError([dataclasses.replace(p, file=p.file or str(loaded.path)) for p in exc.problems]) from None
    except (torch.OutOfMemoryError, MemoryError, RuntimeError) as exc:  # out of memory, or an image too small
        message = failure_message(exc, job.device, tuple(job.content.shape[-2:]))
        if message is None:
            raise
        raise UserError(f"{loaded.path}: {message}") from None
    result.seconds, result.setup_seconds = seconds, setup
    final = job.postprocess(result.image) if job.postprocess else result.image
    save_atomic(to_image(final), output)
    if recipe.output.record:
        write_text_atomic(json.dumps(run_record(loaded, registry, job, result, started), indent=1), record_path(output))
    if recipe.output.plot:
        plot_losses(result.history, output.with_name(f"{output.stem}.losses.png"))
        if saved:
            strip([*saved, output], output.with_name(f"{output.stem}.strip.png"))
    print(f"wrote {output} in {result.seconds:.1f} s ({result.seconds / total_steps:.3f} s/step)", file=stream, flush=True)
    return result


def dry_run(loaded: LoadedRecipe, registry: Registry, stream: TextIO | None = None) -> list:
    """Print the estimated peak memory of each stage; runs nothing and writes nothing."""
    from .memory import estimate, human

    stream = stream or sys.stdout
    backbone, estimates = None, []
    for index, stage in enumerate(stages_of(loaded)):
        job = build_job(loaded, registry, stage, backbone=backbone)
        backbone = job.backbone
        h, w = job.content.shape[-2:]
        found = estimate(job)
        estimates.append(found)
        print(f"stage {index + 1}: {w}x{h}, {stage.steps} steps, {dtype_name(job.dtype)} on {job.device}", file=stream)
        print("\n".join(found.lines()), file=stream)
        if job.device.type == "cuda":
            free, _ = torch.cuda.mem_get_info(job.device)
            verdict = "fits" if found.total < free else "does NOT fit"
            print(f"  {verdict} in the {human(free)} free on {torch.cuda.get_device_name(job.device)}", file=stream)
    return estimates


def run_record(loaded: LoadedRecipe, registry: Registry, job, result: Result, started: float) -> dict:
    return {
        "recipe_file": str(loaded.path),
        "recipe": loaded.raw,
        "versions": {
            "stylekit": __version__,
            "torch": torch.__version__,
            "python": platform.python_version(),
            "plugins": {p.package: p.version for p in registry.plugins},
        },
        "device": str(job.device),
        "device_name": torch.cuda.get_device_name(job.device) if job.device.type == "cuda" else platform.processor() or platform.machine(),
        "precision": dtype_name(job.dtype),
        "size": list(job.content.shape[-2:]),
        "started": time.strftime("%Y-%m-%dT%H:%M:%S%z", time.localtime(started)),
        "setup_seconds": result.setup_seconds,
        "loop_seconds": result.seconds,
        "seconds_per_step": result.seconds / max(1, len(result.history)),
        "losses": result.history,
    }
