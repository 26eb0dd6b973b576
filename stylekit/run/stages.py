"""The stage loop of a run: plans whose stages have the same sizes (one plan, or a batch's
items of one aspect), stage by stage, all images in step through `optimize_group`. Around
each stage: its images and objectives, the per-step callbacks, checkpoints to resume from,
a clean stop, and the status of the run; the first non-finite loss of an image ends that
image's run alone.
"""

from __future__ import annotations

import signal
import time
from pathlib import Path
from typing import Callable

import torch

from stylekit.errors import Problem, UserError
from stylekit.run.blame import attributed
from stylekit.recipe.plan import Plan
from stylekit.run import checkpoints
from stylekit.run.build import Reuse, StageImages, build_backbone, build_objective, build_optimizer, build_scheduler, stage_images
from stylekit.run.engine import Diverged, Loop, LoopOptions, LoopResult, extend_lowest
from stylekit.run.loop import optimize_group
from stylekit.run.result import Result, RunDiverged, StepInfo, diverged, labels_of, make_result
from stylekit.run.signals import Stop, signals_to


def run_plans(plans: list[Plan], callbacks: list[Callable[[StepInfo], None] | None], reuse: Reuse | None = None,
              checkpoint: checkpoints.Keeper | None = None, resume: dict | None = None) -> list[Result | RunDiverged]:
    """Run `plans` in step and return, per plan, its `Result` or the `RunDiverged` that ended
    it. `callbacks[i](info)` runs after every step of plan i; its `info.stop()`, Ctrl-C or
    SIGTERM end all of them after the step in progress. `checkpoint` and `resume` (from
    `checkpoints.load`) are for a single plan. `reuse` keeps the backbone and style features
    between runs of one recipe (a batch)."""
    if plans[0].recipe.run.seed is not None:
        torch.manual_seed(plans[0].recipe.run.seed)
    stop = Stop()
    with signals_to(stop.request):
        return _stages(plans, callbacks, checkpoint, resume, stop, reuse)


def _stages(plans: list[Plan], callbacks, checkpoint: checkpoints.Keeper | None, resume: dict | None, stop: Stop,
            reuse: Reuse | None) -> list[Result | RunDiverged]:
    started = time.time()
    plan = plans[0]  # the recipe the group shares: components, stages, device and options
    backbone = shared_backbone(plan, reuse)
    histories: list[list[list[float]]] = [list(resume["history"]) if resume else [] for _ in plans]
    first_stage = resume["stage"] if resume else 0
    # Per plan: the steps of the stages before (a stage may end before its steps: min_gain).
    # A checkpoint's history holds every step so far, the stage it was kept in last.
    offsets = [len(resume["history"]) - resume["loop"]["step"] if resume else 0 for _ in plans]
    # Per plan: its last stage ran to its end (its steps, or its loss settled), so a stop
    # that came after, for the others of its group, stopped nothing of it.
    completed = [False] * len(plans)
    every = plan.recipe.output.checkpoint_every
    seconds, setup = (resume.get("seconds", 0.0) if resume else 0.0), 0.0
    outcomes: list[LoopResult | RunDiverged | None] = [None] * len(plans)  # per plan: its latest stage's
    inputs: list[StageImages | None] = [None] * len(plans)
    stage_of: list[int] = [first_stage] * len(plans)  # per plan: the index of the stage its inputs are
    totals = [plan.total_steps] * len(plans)  # per plan: its steps in all, as known (`run_length`)
    # Per plan: the steps each stage took (a checkpoint from before min_gain: the stages' steps).
    taken = [list(resume.get("stage_steps") or [s.steps for s in plan.stages[:first_stage]]) if resume else []
             for _ in plans]
    for index in range(first_stage, len(plan.stages)):
        going = [i for i, outcome in enumerate(outcomes) if not isinstance(outcome, RunDiverged)]
        if not going:  # every image of the group diverged
            break
        for i in going:
            inputs[i] = stage_images(plans[i], plans[i].stages[index], outcomes[i].image if outcomes[i] is not None else None)
            stage_of[i] = index
        try:
            objectives = [build_objective(plans[i], backbone, inputs[i], reuse) for i in going]
        except UserError as exc:
            raise _named(plan, exc) from None
        except Exception as exc:  # raised by a plugin's code: name the package, the recipe entry and the step
            raise attributed(exc, plan, offsets[going[0]]) or exc
        options = loop_options(plan, plan.stages[index])
        loop_resume = _loop_resume(resume, plan.stages[index]) if resume and index == first_stage else None
        if loop_resume is not None:
            _check_size(plan, loop_resume["image"], inputs[0].start)
            torch.set_rng_state(resume["rng"])

        def on_step(k: int, loop: Loop, going=going, stage_index=index, stage_offsets=list(offsets),
                    began=time.perf_counter()) -> bool:
            i = going[k]
            plan, images, history = plans[i], inputs[i], histories[i]
            step = stage_offsets[i] + loop.step
            total = run_length(plan, stage_index, stage_offsets[i], loop.step if loop.settled else None)
            if callbacks[i] is not None:
                try:
                    callbacks[i](step_info(plan, stage_index, step, total, seconds + time.perf_counter() - began, loop,
                                           images, stop))
                except KeyboardInterrupt:
                    # A notebook's callback that raises it (or Ctrl-C off the main thread, which
                    # arrives as it) means what a first Ctrl-C means: end the run with the image
                    # of this finished step and keep the checkpoint. A second Ctrl-C, raised by
                    # the handler after the first, still ends the run at once.
                    if stop.requested and stop.signal is not None:
                        raise
                    stop.request(signal.SIGINT)
            due = stop.requested or (every and step % every == 0 and step != total)
            # Off the CPU finiteness is checked every few steps: never keep a state that is not.
            if checkpoint is not None and due and bool(torch.isfinite(loop.output).all()):
                checkpoint.keep(plan, stage_index, loop, history + [r.tolist() for r in loop.rows],
                                seconds + time.perf_counter() - began, final=stop.requested, stage_steps=taken[i])
            return stop.requested

        try:
            ends = optimize_group(objectives, [inputs[i].start for i in going], build_optimizer(plan),
                                  build_scheduler(plan), options, plan.device, on_step=on_step, resume=[loop_resume],
                                  step_offset=[offsets[i] for i in going])
        except UserError as exc:
            raise _named(plan, exc) from None
        except Exception as exc:  # raised by a plugin's code: name the package, the recipe entry and the step
            raise attributed(exc, plan, offsets[going[0]], [wt.term for wt in objectives[0].terms]) or exc
        for i, end in zip(going, ends):
            if isinstance(end, Diverged):
                outcomes[i] = diverged(plans[i], end, inputs[i], offsets[i], histories[i], started)
            else:
                outcomes[i] = end
                histories[i] += [row.tolist() for row in end.rows]
                totals[i] = run_length(plans[i], index, offsets[i], end.steps_done if end.settled else None)
                offsets[i] += end.steps_done
                taken[i].append(end.steps_done)
                completed[i] = index == len(plan.stages) - 1 and (end.settled or end.steps_done == options.steps)
        finished = [end for end in ends if isinstance(end, LoopResult)]
        if finished:  # the images still going took the same time
            seconds, setup = seconds + finished[0].seconds, setup + finished[0].setup_seconds
        if finished and finished[0].stopped:
            break
    ended = "interrupted" if stop.signal is not None else "stopped"
    return [outcome if isinstance(outcome, RunDiverged) else
            make_result(plans[i], inputs[i], outcome.image, histories[i],
                        "finished" if not stop.requested or completed[i] else ended, offsets[i], seconds, setup,
                        started, stop.signal, stage_of[i] + 1, totals[i], taken[i])
            for i, outcome in enumerate(outcomes)]


def run_length(plan: Plan, stage_index: int, offset: int, settled_at: int | None = None) -> int:
    """The steps the run takes, as far as known in stage `stage_index` (after `offset` steps
    of the stages before): the stages' steps, less what a stage whose loss settled (min_gain)
    left untaken (`settled_at`: the step the stage ended at). So the last step of a run is
    always its total."""
    stage = plan.stages[stage_index]
    own = stage.steps if settled_at is None else settled_at
    return offset + own + sum(s.steps for s in plan.stages[stage_index + 1:])


def step_info(plan: Plan, stage_index: int, step: int, total: int, seconds: float, loop: Loop, images: StageImages,
              stop: Stop) -> StepInfo:
    """What a callback sees after `step` (counted over all stages) of `plan`, which takes
    `total` steps as far as known (`run_length`)."""
    labels = labels_of(plan)
    window = plan.stages[stage_index].gain_steps
    gain = (1 - loop.lowest[-1] / loop.lowest[-1 - window]) if loop.settled and loop.lowest[-1 - window] else None
    return StepInfo(stage=stage_index + 1, stages=len(plan.stages), step=step, total=total, seconds=seconds,
                    image=loop.output, content=images.content, styles=images.styles,
                    _losses=lambda: dict(zip(labels, loop.rows[-1].tolist())), _stop=stop.request,
                    settled_gain=gain)


def shared_backbone(plan: Plan, reuse: Reuse | None):
    if reuse is None:
        return build_backbone(plan)
    if reuse.backbone is None:
        reuse.backbone = build_backbone(plan)
    return reuse.backbone


def loop_options(plan: Plan, stage) -> LoopOptions:
    run = plan.recipe.run
    return LoopOptions(steps=stage.steps, clamp=run.clamp, ema_decay=run.ema_decay, compile=run.compile,
                       cuda_graph=run.cuda_graph, check_every=1 if plan.device.type == "cpu" else 10,
                       min_gain=stage.min_gain, gain_steps=stage.gain_steps)


def _loop_resume(resume: dict, stage) -> dict:
    """The loop state to continue a stage from; with `min_gain`, the lowest loss so far at
    each of its steps before the checkpoint, from the checkpoint's history, so that a
    resumed stage ends where an uninterrupted one would."""
    state = resume["loop"]
    if not stage.min_gain or not state["step"]:
        return state
    lowest: list[float] = []
    extend_lowest(lowest, [row[0] for row in resume["history"][-state["step"]:]])
    return {**state, "lowest": lowest}


def _check_size(plan: Plan, kept: torch.Tensor, start: torch.Tensor) -> None:
    if kept.shape != start.shape:
        (h, w), (h0, w0) = kept.shape[-2:], start.shape[-2:]
        raise UserError(Problem(f"the checkpoint's image is {w}x{h} but this run's is {w0}x{h0} at that stage - resume "
                                "with the size the run was started with, or run without --resume", file=plan.source))


def _named(plan: Plan, exc: UserError) -> UserError:
    """A UserError raised during the run (by a plugin, the graph recording), naming the recipe."""
    return UserError([p if p.file else Problem(p.message, plan.source, p.line, p.field) for p in exc.problems])
