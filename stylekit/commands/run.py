"""`stylekit run`: stylize a checked plan, showing progress, and write what it made: the
image, its run record, intermediate images and plots. Everything else is `stylize`'s.

Exit statuses: 0 done (or stopped by a callback), 2 bad input, 3 the run failed (diverged,
or its output could not be written: the message says where the image was kept), 130 / 143
interrupted by SIGINT / SIGTERM (image, record and checkpoint written).
"""

from __future__ import annotations

import signal
import sys
from pathlib import Path
from typing import Callable, TextIO

import torch

from stylekit import __version__
from stylekit.run import checkpoints
from stylekit.recipe.checks import path_problems
from stylekit.recipe.devices import dtype_name
from stylekit.errors import Problem, RunFailed, UserError, one_line
from stylekit.files.images import output_size, save_atomic, to_image
from stylekit.files.outputs import describe, keep_elsewhere, record_path, write_record, write_result
from stylekit.recipe.plan import Plan
from stylekit.commands.progress import ProgressDisplay
from stylekit.files.report import plot_losses, strip
from stylekit.run.resources import failure_message, pre_run_warnings
from stylekit.run.session import Result, RunDiverged, StepInfo, stylize


def intermediate_path(output: Path, step: int) -> Path:
    return output.with_name(f"{output.stem}.step{step:05d}.png")


def run_plan(plan: Plan, resume: bool = False, stream: TextIO | ProgressDisplay | None = None,
             callbacks: list[Callable[[StepInfo], None]] = (), command: list[str] | None = None) -> int:
    """Run `plan` as the CLI does and return the exit status. `command` is the command line
    that made the plan, to tell how to resume it. The steps show on `stream` as a bar on a
    terminal, plain lines elsewhere; or pass the `ProgressDisplay` to use."""
    stream = stream or sys.stderr  # looked up now, so redirections made by callers apply
    # The runner's own lines go through the display, so that they land above its bar.
    if not isinstance(stream, ProgressDisplay):
        stream = ProgressDisplay(stream, every=plan.recipe.run.progress_every)
    display = stream
    output = plan.output
    checkpoint = checkpoints.path_for(output)
    state = checkpoints.load(checkpoint, plan) if resume else None
    saved: list[Path] = []
    h, w = output_size(plan.images.content, plan.stages[-1].width, plan.stages[-1].height)
    # Paths are shown escaped (one_line): a line break in one would split the line.
    print(f"stylekit {__version__}: {one_line(str(plan.source))} -> {one_line(str(output))} ({w}x{h}, {plan.total_steps} steps, "
          f"{plan.device.type}, {dtype_name(plan.dtype)})", file=stream, flush=True)
    for warning in pre_run_warnings(plan):
        print(f"warning: {warning}", file=stream, flush=True)
    if state is not None:
        done = len(state["history"])
        print(f"resuming from {one_line(str(checkpoint))} at step {done}/{plan.total_steps}", file=stream, flush=True)

    def save_intermediate(info: StepInfo) -> None:
        every = plan.recipe.output.save_every
        if every and info.step % every == 0 and info.step != info.total:
            saved.append(intermediate_path(output, info.step))
            save_atomic(to_image(info.image), saved[-1])

    try:
        try:
            result = stylize(plan, callback=_all(display, stage_lines(plan, stream), save_intermediate, *callbacks),
                             checkpoint=checkpoint, resume=state)
        finally:
            display.close()  # the bar ends here; the lines below follow it
    except RunDiverged as exc:
        return _diverged(plan, exc, stream)
    except (torch.OutOfMemoryError, MemoryError, RuntimeError) as exc:  # out of memory, or an image too small
        message = failure_message(exc, plan.device, (h, w), plan)
        if message is None:
            raise
        raise UserError(f"{plan.source}: {message}") from None
    status = _write(result, output, stream)
    if status:
        return status
    if plan.recipe.output.plot:
        plot_losses(result.history, output.with_name(f"{output.stem}.losses.png"))
        if saved:
            strip([*saved, output], output.with_name(f"{output.stem}.strip.png"))
    seconds = result.record["loop_seconds"]
    if result.status == "interrupted":
        name = signal.Signals(result.signal).name
        print(one_line(f"interrupted ({name}) at step {result.steps_done} of {plan.total_steps}: wrote {output} and "
                       f"{checkpoint} - continue with `{resume_command(plan, command)}`"), file=stream, flush=True)
        return 128 + result.signal
    if result.status == "stopped":
        print(f"stopped at step {result.steps_done} of {plan.total_steps}: wrote {one_line(str(output))}", file=stream,
              flush=True)
        return 0
    checkpoint.unlink(missing_ok=True)  # finished: nothing left to resume
    print(f"wrote {one_line(str(output))} in {seconds:.1f} s ({seconds / max(1, result.steps_done):.3f} s/step)", file=stream, flush=True)
    return 0


def resume_command(plan: Plan, command: list[str] | None) -> str:
    """The same command line with --resume: the checkpoint is only for the same recipe,
    overrides and output."""
    import shlex

    words = list(command) if command else ["run", plan.source]
    return "stylekit " + shlex.join(words + ([] if "--resume" in words else ["--resume"]))


def _all(*callbacks):
    def call(info: StepInfo) -> None:
        for callback in callbacks:
            callback(info)
    return call


def stage_lines(plan: Plan, stream: TextIO) -> Callable[[StepInfo], None]:
    """A line as each stage after the first starts (the steps are the display's)."""
    last = {"stage": 1}

    def show(info: StepInfo) -> None:
        if info.stage != last["stage"]:
            last["stage"] = info.stage
            stage = plan.stages[info.stage - 1]
            print(f"stage {info.stage}/{info.stages}: {stage.width} px wide, {stage.steps} steps", file=stream, flush=True)

    return show


def _write(result: Result, output: Path, stream: TextIO) -> int:
    """Write the image and record; when that fails, keep the image elsewhere and say where."""
    try:
        write_result(result, output, result.plan.recipe.output.record)
        return 0
    except OSError as exc:
        kept = keep_elsewhere(result.image, output.name)
        where = f"the image is kept at {kept}" if kept else "no folder could take the image either"
        raise RunFailed(f"could not write {output} ({describe(exc)}) - {where}; free space or choose "
                        "another output path (-o)") from None


def _diverged(plan: Plan, exc: RunDiverged, stream: TextIO) -> int:
    """Keep the last finite image beside the output (never over it) and say where. Beside
    it, the image and its record are held to the output's own rule (`checks.path_problems`:
    no input overwritten, no file that stylekit did not write replaced); where that refuses,
    or the write fails, the image is kept elsewhere."""
    output = plan.output
    beside = output.with_name(f"{output.stem}.diverged.png")
    record = plan.recipe.output.record
    refused = path_problems(beside, plan.recipe.images, (), lambda loc, message: Problem(message), record=record,
                            what="the last finite image")
    kept = None
    if not refused:
        try:  # the record first, as everywhere: an image beside the output is never left without it
            if record:
                write_record(exc.record, record_path(beside), image=beside)
            save_atomic(exc.image, beside)
            kept = beside
        except OSError:
            pass
    if kept is None:
        kept = keep_elsewhere(exc.image, beside.name)
    where = f"the last finite image (step {exc.image_step}) is kept at {kept}" if kept else "no image could be kept"
    if refused:  # the user's file, not a mistake in the run: say why the image is not beside the output
        where += f" (not beside the output: {refused[0].message})"
    raise RunFailed(f"{plan.source}: {exc} - {output} was not written; {where}")


def dry_run(plan: Plan, stream: TextIO | None = None) -> list:
    """Print the estimated peak memory of each stage; runs nothing and writes nothing."""
    from stylekit.run.memory import estimate, human

    stream = stream or sys.stdout
    estimates = []
    for index, stage in enumerate(plan.stages):
        found = estimate(plan, stage)
        estimates.append(found)
        h, w = output_size(plan.images.content, stage.width, stage.height)
        print(f"stage {index + 1}: {w}x{h}, {stage.steps} steps, {dtype_name(plan.dtype)} on {plan.device}", file=stream)
        print("\n".join(found.lines()), file=stream)
        if plan.device.type == "cuda":
            free, _ = torch.cuda.mem_get_info(plan.device)
            verdict = "fits" if found.total < free else "does NOT fit"
            print(f"  {verdict} in the {human(free)} free on {torch.cuda.get_device_name(plan.device)}", file=stream)
    return estimates
