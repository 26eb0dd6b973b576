"""`stylekit run`: stylize a checked plan, showing progress, and write what it made: the
image, its run record, intermediate images and plots. Everything else is `stylize`'s.

Exit statuses: 0 done (or stopped by a callback), 2 bad input, 3 the run failed (diverged,
or its output could not be written: the message says where the image was kept), 130 / 143
interrupted by SIGINT / SIGTERM (image and record written, and the checkpoint where it
could be: the message says what exists).

What is written, in order: the image and its record together (`write_together`: both or
neither), then the checkpoint, the larger file, then the plots. A signal that comes while
the image and record are written waits for them; a failed checkpoint, intermediate image
or plot is a warning, never the end of the run.
"""

from __future__ import annotations

import shlex
import signal
import sys
from pathlib import Path
from typing import Callable, TextIO

import torch

from stylekit import __version__
from stylekit.run import checkpoints
from stylekit.run.stages import run_length
from stylekit.recipe.stage_fit import more_steps_note
from stylekit.recipe.output_checks import path_problems
from stylekit.recipe.devices import dtype_name
from stylekit.errors import Problem, RunFailed, UserError, one_line
from stylekit.files.images import output_size, save_atomic, to_image
from stylekit.files import outputs
from stylekit.files.outputs import describe, keep_elsewhere, not_written, write_image_and_record, write_result, written_for
from stylekit.recipe.plan import Plan, Stage
from stylekit.commands.progress import ProgressDisplay
from stylekit.files.report import plot_losses, strip
from stylekit.run.estimate import estimate, human, pre_run_warnings
from stylekit.run.failures import failure_message
from stylekit.run.session import Result, RunDiverged, StepInfo, run_one
from stylekit.run.signals import signals_to


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
    beside = Beside(output, stream)
    keeper = checkpoints.Keeper(checkpoints.path_for(output), output=output.name, defer_final=True, warn=beside.warn)
    state = checkpoints.load(keeper.path, plan) if resume else None
    saved: list[Path] = []  # the intermediate images written, and their steps
    steps_saved: list[int] = []
    h, w = output_size(plan.images.content, plan.stages[-1].width, plan.stages[-1].height)
    # Paths are shown escaped (one_line): a line break in one would split the line.
    print(f"stylekit {__version__}: {one_line(str(plan.source))} -> {one_line(str(output))} ({w}x{h}, {steps_of(plan)} steps, "
          f"{plan.device.type}, {dtype_name(plan.dtype)})", file=stream, flush=True)
    if note := more_steps_note(plan):
        print(note, file=stream, flush=True)
    for warning in [*pre_run_warnings(plan), *_short_stages(plan)]:
        print(f"warning: {warning}", file=stream, flush=True)
    if state is not None:
        keeper.on_disk = len(state["history"])
        at, ended = state["loop"]["step"], bool(state["loop"].get("settled"))  # its stage may have ended there
        known = run_length(plan, state["stage"], keeper.on_disk - at, at if ended else None)
        to_come = state["stage"] + (2 if ended else 1)  # the first stage (1-based) that may still end sooner
        of = steps_of(plan, known, to_come)
        at_step = f"{keeper.on_disk}/{of}" if of.isdigit() else f"{keeper.on_disk} of {of}"  # "3/5", "3 of at most 64"
        print(f"resuming from {one_line(str(keeper.path))} at step {at_step}", file=stream, flush=True)

    def save_intermediate(info: StepInfo) -> None:
        every = plan.recipe.output.save_every
        if every and info.step % every == 0 and info.step != info.total:
            path = outputs.intermediate_path(output, info.step)
            if beside.write("the intermediate image", path, lambda: save_atomic(to_image(info.image), path, output.name)):
                saved.append(path)
                steps_saved.append(info.step)

    with LateSignals() as late:
        try:
            try:
                result = run_one(plan, callback=_all(stage_lines(plan, stream), display, save_intermediate, *callbacks),
                                 checkpoint=keeper, resume=state)
            finally:
                display.close()  # the bar ends here; the lines below follow it
        except KeyboardInterrupt:  # a second signal: the run ends at once, nothing more is written
            print(f"interrupted - {_left_behind(plan, keeper, saved, steps_saved, command)}", file=stream, flush=True)
            return 130
        except RunDiverged as exc:
            return _diverged(plan, exc, stream)
        except (torch.OutOfMemoryError, MemoryError, RuntimeError) as exc:  # out of memory, or an image too small
            message = failure_message(exc, plan.device, (h, w), plan)
            if message is None:
                raise
            raise UserError(f"{plan.source}: {message}") from None
        return _finish(plan, result, keeper, late, beside, saved, stream, command)


class LateSignals(signals_to):
    """SIGINT and SIGTERM from the end of the run on (during it, `stylize`'s own handlers
    end it after the step): noted, and acted on only once the image and its record are
    written, so that a signal never leaves one without the other or a file half-renamed.
    With `hurry` set, a signal raises KeyboardInterrupt: a second one, which should not
    wait for a large checkpoint."""

    def __init__(self):
        super().__init__(self._noted)
        self.signal: int | None = None
        self.hurry = False

    def _noted(self, signum: int) -> None:
        self.signal = self.signal or signum
        if self.hurry:
            raise KeyboardInterrupt


class Beside:
    """Writes what a run keeps beside its output but the image and record (intermediate
    images, plots; and the checkpoint's warnings): a failed write is a warning that names
    the file and the free space, said once, and the run goes on."""

    def __init__(self, output: Path, stream):
        self.output, self.stream, self.failed = output, stream, False

    def warn(self, message: str) -> None:
        print(f"warning: {message}", file=self.stream, flush=True)

    def write(self, what: str, path: Path, write: Callable[[], None]) -> bool:
        try:
            write()
        except OSError as exc:
            if not self.failed:
                self.warn(not_written(what, path, exc))
            self.failed = True
            return False
        return True


def _finish(plan: Plan, result: Result, keeper: checkpoints.Keeper, late: LateSignals, beside: Beside,
            saved: list[Path], stream, command: list[str] | None) -> int:
    """Write what the run made, in order (see the module's docstring), and say what exists."""
    output = plan.output
    try:
        write_result(result, output, plan.recipe.output.record)
        failure = None
    except OSError as exc:
        failure = exc
    again = False  # a second signal came before the checkpoint was on disk
    if result.status == "finished":
        keeper.discard()
    elif result.status == "interrupted" and late.signal is not None:
        keeper.discard()
        again = True
    else:
        late.hurry = result.status == "interrupted" or late.signal is not None
        try:
            keeper.flush()
        except KeyboardInterrupt:  # its temporary file is gone; an older checkpoint stays as it was
            keeper.discard()
            again = True
        finally:
            late.hurry = False
    if failure is not None:
        kept = keep_elsewhere(result.image, output.name)
        where = f"the image is kept at {kept}" if kept else "no folder could take the image either"
        resumable = f"; {_checkpoint_state(plan, result, keeper, again, command)}" if result.status != "finished" else ""
        raise RunFailed(f"could not write {output} ({describe(failure)}) - {where}; free space or choose "
                        f"another output path (-o){resumable}")
    if plan.recipe.output.plot and not again:
        beside.write("the loss plot", outputs.losses_plot_path(output),
                     lambda: plot_losses(result.history, outputs.losses_plot_path(output), mark=output.name,
                                         stages=[stage.steps for stage in plan.stages]))
        if saved:
            beside.write("the strip of images", outputs.strip_path(output),
                         lambda: strip([*saved, output], outputs.strip_path(output), mark=output.name))
    seconds = result.record["loop_seconds"]
    say = lambda line: print(one_line(line), file=stream, flush=True)  # noqa: E731  (paths escaped: one line each)
    if result.status == "interrupted":
        name = signal.Signals(result.signal).name
        say(f"interrupted ({name}) at step {result.steps_done} of {steps_of(plan, result.total_steps, result.stage)}: wrote {output}"
            f"{_checkpoint_state(plan, result, keeper, again, command)}")
        return 128 + result.signal
    if result.status == "stopped":
        say(f"stopped at step {result.steps_done} of {steps_of(plan, result.total_steps, result.stage)}: wrote {output}")
    else:
        # Finished: nothing is left to resume. Only stylekit's own checkpoint is removed.
        if written_for(keeper.path) is not None:
            keeper.path.unlink(missing_ok=True)
        say(f"wrote {output} in {seconds:.1f} s ({seconds / max(1, result.steps_done):.3f} s/step)")
    if late.signal is not None:  # it came as the run ended: what was written is complete
        say(f"interrupted ({signal.Signals(late.signal).name}) as the run ended: {output} was written first")
        return 128 + late.signal
    return 0


def _checkpoint_state(plan: Plan, result: Result, keeper: checkpoints.Keeper, again: bool,
                      command: list[str] | None) -> str:
    """What can be resumed after a run that did not finish, for the end of its last line."""
    if keeper.on_disk == result.steps_done:
        return f" and {keeper.path} - continue with `{resume_command(plan, command)}`"
    why = "a second signal came first" if again else \
        f"it could not be written: {keeper.failed.strerror or describe(keeper.failed)}" if keeper.failed else "it was not written"
    if keeper.on_disk is not None:
        return (f"; {keeper.path} holds step {keeper.on_disk} (the checkpoint of step {result.steps_done} is not kept: "
                f"{why}) - continue from step {keeper.on_disk} with `{resume_command(plan, command)}`")
    return f"; no checkpoint is kept ({why}), so the run cannot be continued - run it again to start over"


def _left_behind(plan: Plan, keeper: checkpoints.Keeper, saved: list[Path], steps: list[int],
                 command: list[str] | None) -> str:
    """What exists after a run ended at once by a second signal: never the image, perhaps
    a checkpoint kept every output.checkpoint_every steps and intermediate images."""
    if keeper.on_disk is None and not saved:
        return "nothing was written"
    kept = [f"{plan.output} was not written"]
    if keeper.on_disk is not None:
        kept.append(f"{keeper.path} holds step {keeper.on_disk} of {steps_of(plan)} - continue from there with "
                    f"`{resume_command(plan, command)}`")
    if saved:
        kept.append(f"the intermediate images up to step {steps[-1]} are kept (the last: {saved[-1]})")
    return "; ".join(kept)


def resume_command(plan: Plan, command: list[str] | None) -> str:
    """The same command line with --resume: the checkpoint is only for the same recipe,
    overrides and output."""
    words = list(command) if command else ["run", plan.source]
    return "stylekit " + shlex.join(words + ([] if "--resume" in words else ["--resume"]))


def _all(*callbacks):
    def call(info: StepInfo) -> None:
        for callback in callbacks:
            callback(info)
    return call


def _short_stages(plan: Plan) -> list[str]:
    """Where [[stage]] min_gain does nothing, said: a stage with no more steps than its
    gain_steps takes them all (as the recipe's stages do when --steps shares out fewer), and
    gain_steps without min_gain is never read."""
    said = []
    for i, stage in enumerate(plan.stages, 1):
        if stage.min_gain and stage.steps <= stage.gain_steps:
            said.append(f"stage {i}: min_gain cannot end it sooner - it has {stage.steps} steps, no more than its "
                        f"gain_steps ({stage.gain_steps}); give it more steps or fewer gain_steps")
        elif not stage.min_gain and stage.gain_steps != Stage.gain_steps:
            said.append(f"stage {i}: gain_steps does nothing without min_gain - set min_gain (0.02: the stage ends "
                        "once gain_steps steps lower the loss by less than 2%) or leave gain_steps out")
    return said


def steps_of(plan: Plan, total: int | None = None, stage: int = 1) -> str:
    """'70', or 'at most 170' where a stage from the `stage`-th (1-based) on may end sooner
    (`[[stage]] min_gain`). `total`: the steps as known (default: the plan's)."""
    may_end_sooner = any(s.min_gain for s in plan.stages[stage - 1:])
    return f"{'at most ' if may_end_sooner else ''}{plan.total_steps if total is None else total}"


def stage_lines(plan: Plan, stream: TextIO) -> Callable[[StepInfo], None]:
    """A line as each stage starts, the first too (the steps are the display's); a run of one
    stage has none, as it has no stages to tell apart. A resumed run's first line is the
    stage it resumes in."""
    last = {"stage": None}

    def show(info: StepInfo) -> None:
        if info.stage != last["stage"] and info.stages > 1:
            last["stage"] = info.stage
            stage = plan.stages[info.stage - 1]
            steps = (f"at most {stage.steps} steps (fewer once {stage.gain_steps} steps lower the loss by less than "
                     f"{stage.min_gain:.0%})" if stage.min_gain else f"{stage.steps} steps")
            print(f"stage {info.stage}/{info.stages}: {stage.width} px wide, {steps}", file=stream, flush=True)
        if info.settled_gain is not None:
            stage = plan.stages[info.stage - 1]
            print(f"stage {info.stage}/{info.stages} ended at step {info.step} of the run: its last {stage.gain_steps} "
                  f"steps lowered the loss by {info.settled_gain:.2%}, less than min_gain ({stage.min_gain:.0%}); "
                  f"{info.total} steps in all", file=stream, flush=True)

    return show


def _diverged(plan: Plan, exc: RunDiverged, stream: TextIO) -> int:
    """Keep the last finite image beside the output (never over it) and say where. Beside
    it, the image and its record are held to the output's own rule (`checks.path_problems`:
    no input overwritten, no file that stylekit did not write replaced); where that refuses,
    or the write fails, the image is kept elsewhere."""
    output = plan.output
    beside = outputs.diverged_path(output)
    record = plan.recipe.output.record
    refused = path_problems(beside, plan.recipe.images, (), lambda loc, message: Problem(message), record=record,
                            what="the last finite image")
    if not refused and (beside.exists() or beside.is_symlink()):
        owner = written_for(beside)  # stylekit's own, of this output or of one no longer there
        if owner is None or owner not in ("", output.name) and (beside.parent / owner).is_file():
            refused = [Problem(f"{beside} is a file that stylekit did not write for {output.name}")]
    kept = None
    if not refused:
        try:  # both or neither: an image beside the output is never left without its record
            write_image_and_record(exc.image, exc.record if record else None, beside, mark=output.name)
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
    stream = stream or sys.stdout
    estimates = []
    if note := more_steps_note(plan):
        print(note, file=stream)
    for index, stage in enumerate(plan.stages):
        found = estimate(plan, stage)
        estimates.append(found)
        h, w = output_size(plan.images.content, stage.width, stage.height)
        print(f"stage {index + 1}: {w}x{h}, {'at most ' if stage.min_gain else ''}{stage.steps} steps, "
              f"{dtype_name(plan.dtype)} on {plan.device}", file=stream)
        print("\n".join(found.lines()), file=stream)
        if plan.device.type == "cuda":
            free, _ = torch.cuda.mem_get_info(plan.device)
            verdict = "fits" if found.total < free else "does NOT fit"
            print(f"  {verdict} in the {human(free)} free on {torch.cuda.get_device_name(plan.device)}", file=stream)
    return estimates
