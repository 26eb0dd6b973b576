"""Running a loaded recipe: progress display, intermediate images, output and run record."""

from __future__ import annotations

import json
import platform
import sys
import time
from pathlib import Path
from typing import TextIO

import torch

from . import __version__
from .build import build_job
from .devices import dtype_name
from .engine import Progress, Result, run
from .errors import UserError
from .images import save_atomic, to_image, write_text_atomic
from .plugins import Registry
from .recipe import LoadedRecipe


def intermediate_path(output: Path, step: int) -> Path:
    return output.with_name(f"{output.stem}.step{step:05d}.png")


def record_path(output: Path) -> Path:
    return output.with_suffix(".json")


def run_recipe(loaded: LoadedRecipe, registry: Registry, stream: TextIO = sys.stderr) -> Result:
    recipe = loaded.recipe
    started = time.time()
    job = build_job(loaded, registry)
    output = Path(recipe.output.path)
    progress = Progress([wt.label for wt in job.terms])
    every = recipe.run.progress_every
    last_print = {"step": 0, "time": time.perf_counter()}

    def on_step(step: int, image: torch.Tensor) -> None:
        if every and (step % every == 0 or step == 1 or step == job.steps):
            now = time.perf_counter()
            per_step = (now - last_print["time"]) / (step - last_print["step"])
            last_print.update(step=step, time=now)
            terms = "  ".join(f"{k} {v:.4g}" for k, v in progress.latest().items())
            print(f"step {step:>5}/{job.steps}  {terms}  ({per_step:.3f} s/step)", file=stream, flush=True)
        if recipe.output.save_every and step % recipe.output.save_every == 0 and step != job.steps:
            save_atomic(to_image(image), intermediate_path(output, step))

    job.on_step = on_step
    h, w = job.content.shape[-2:]
    print(f"stylekit {__version__}: {loaded.path} -> {output} ({w}x{h}, {job.steps} steps, "
          f"{job.device.type}, {dtype_name(job.dtype)})", file=stream, flush=True)
    last_print["time"] = time.perf_counter()
    try:
        result = run(job, progress)
    except torch.OutOfMemoryError:
        raise UserError(f"{loaded.path}: ran out of memory on {job.device} at {w}x{h} - lower output.width, "
                        "use run.precision = \"bf16\", a smaller L-BFGS history, or fewer/shallower layers") from None
    save_atomic(to_image(result.image), output)
    if recipe.output.record:
        write_text_atomic(json.dumps(run_record(loaded, registry, job, result, started), indent=1), record_path(output))
    print(f"wrote {output} in {result.seconds:.1f} s ({result.seconds / job.steps:.3f} s/step)", file=stream, flush=True)
    return result


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
