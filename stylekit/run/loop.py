"""The step loop over a group of images, each minimizing its own objective, in step with
each other. One image alone is a group of one: `optimize` is `optimize_group` with n = 1,
so a single run, a batch's group and (later) the frames of a video share every step.

Per step and image: the pass (`stylekit.run.passes`), the optimizer's step, the scheduler,
the clamp to [0, 1], the moving average, the row of losses kept, and every `check_every`
steps the check for a non-finite loss, step or image; then `on_step` for each image still
going. An image that diverges stops alone; the others go on.
"""

from __future__ import annotations

import inspect
import time
from typing import Callable

import torch

from stylekit.contract.components import Optimizer, Scheduler
from stylekit.run.engine import Diverged, Loop, LoopOptions, LoopResult, Objective, extend_lowest, gained_little, image_dtype
from stylekit.run.passes import Passes


#: How far outside [0, 1] a pixel may be stepped before the clamp without the run counting
#: as diverged: a million times the image's range is an optimizer that blew up, not a step.
BLOWN_UP = 1e6


def optimize_group(objectives: list[Objective], starts: list[torch.Tensor], optimizer: Optimizer,
                   scheduler: Scheduler, options: LoopOptions, device: torch.device,
                   on_step: Callable[[int, Loop], bool] | None = None, resume: list[dict | None] | None = None,
                   stacked: bool | None = None, step_offset: int | list[int] = 0) -> list[LoopResult | Diverged]:
    """Minimize each objective over its own image, which starts as a copy of its start;
    nothing given is changed. Returns, per image, its `LoopResult`, or the `Diverged` that
    stopped it. `on_step(i, loop)` runs after each step for each image i still going; when
    one returns True, the run ends after this step. `resume[i]` is a `Loop.state()` to
    continue image i from (all at the same step). With `stacked` (default: a group of
    several, off the CPU) the images (of one size) go through the backbone in one pass.
    `options.compile` applies to a group of one, `options.cuda_graph` on CUDA only.
    `step_offset`: the steps of the stages before this one (per image, where a stage ended
    sooner for some: `options.min_gain`), so that the `step` a loss term reads counts over
    all stages. An image whose loss has stopped falling (`options.min_gain`) stops alone,
    its result `settled`."""
    stacked = device.type != "cpu" and len(objectives) > 1 if stacked is None else stacked
    offsets = step_offset if isinstance(step_offset, list) else [step_offset] * len(objectives)
    began = time.perf_counter()
    if device.type == "cuda":
        torch.backends.cudnn.benchmark = True  # same shapes every step: autotuning pays off
    dtype = image_dtype(objectives[0].dtype)
    images = [start.detach().clone().to(device=device, dtype=dtype).requires_grad_(True) for start in starts]
    loops = []
    for image in images:
        torch_optimizer = optimizer.build([image])
        loops.append(Loop(image, image.detach().clone() if options.ema_decay else None, torch_optimizer,
                          scheduler.build(torch_optimizer, options.steps)))
    for loop, state in zip(loops, resume or ()):
        if state is not None:
            loop.restore(state)
    # Stacked images whose learning rate stays constant can share one stepper, when the
    # optimizer offers one (the built-in L-BFGS does): its per-image work runs once for all.
    together = (optimizer.build_together(images)
                if stacked and all(loop.scheduler is None for loop in loops) else None)
    # A stepper written before `step` was given the losses (stylekit 0.1) takes `alive` alone.
    takes_losses = together is not None and len(inspect.signature(together.step).parameters) >= 2
    passes = Passes(objectives, images, loops, options, device, stacked,
                    replayable=together is not None or not optimizer.needs_closure)
    checked = [(loop.output.clone(), loop.step) for loop in loops]  # the latest image known finite, its step
    stepped: list[list[torch.Tensor]] = [[] for _ in loops]  # per image since its check: each step finite?
    diverged: dict[int, Diverged] = {}

    if device.type == "cuda":
        torch.cuda.synchronize()
    setup_seconds = time.perf_counter() - began
    loop_start = time.perf_counter()
    step, stopped = loops[0].step, False
    while step < options.steps and not stopped:
        # An image whose loss stopped falling (options.min_gain) stops alone, as one resumed
        # from a checkpoint kept at the step its stage settled does (`Loop.settled`).
        alive = [i for i in range(len(images)) if i not in diverged and not loops[i].settled]
        if not alive:
            break
        step += 1
        for i in alive:  # the contract's LossTerm.step: one value for every evaluation of this step
            for weighted in objectives[i].terms:
                weighted.term.step = offsets[i] + step
        loop = loops[alive[0]]  # for stylekit.run.blame: the step a failing component was at
        passes.evaluate(alive)
        if together is not None:
            if takes_losses:
                together.step(alive, torch.stack([passes.totals[i] for i in alive]))
            else:
                together.step(alive)
        for i in alive:
            loop = loops[i]
            if together is None:
                closure = passes.closure(i)
                if optimizer.needs_closure:
                    loop.optimizer.step(closure)
                else:
                    closure()
                    loop.optimizer.step()
            if loop.scheduler is not None:
                loop.scheduler.step()
            if options.clamp:
                # Clamping would map an infinite step to 0 or 1, a finite image of noise whose
                # losses are finite: note whether the step was, before the clamp hides it. A
                # finite step far past the image's range hides the same blow-up (a weight of
                # 1e38 under SGD steps by ~1e31): no optimizer that works moves a pixel of a
                # [0, 1] image by BLOWN_UP, so that counts as not finite too (NaN fails < too).
                stepped[i].append((loop.image.detach().abs() < BLOWN_UP).all())
                with torch.no_grad():
                    loop.image.clamp_(0, 1)
            if loop.average is not None:
                loop.average.lerp_(loop.image.detach(), 1 - options.ema_decay)
            loop.step = step
            loop.rows.append(passes.row(i))
            if step % options.check_every == 0 or step == options.steps:
                last_finite, last_step = checked[i]
                bad = first_non_finite(loop.rows[len(loop.rows) - (step - last_step):], loop.output, stepped[i])
                stepped[i] = []
                if bad is not None:
                    labels = [label for label, ok in zip(objectives[i].labels, bad[1]) if not ok]
                    diverged[i] = Diverged(last_step + bad[0] + 1, labels, last_finite, last_step, loop.rows)
                else:
                    checked[i] = (loop.output.clone(), step)
                    if options.min_gain and step < options.steps and _settled(loop, options):
                        loop.settled = True  # on_step sees it: this step is the stage's last
        if on_step is not None:
            # Every image still going sees this step, whichever of them asks to stop.
            stopped = any([on_step(i, loops[i]) for i in alive if i not in diverged])
    if device.type == "cuda":
        torch.cuda.synchronize()
    seconds = time.perf_counter() - loop_start
    passes.release()
    return [diverged.get(i) or LoopResult(loop.output.clone(), loop.rows, loop.step, seconds, setup_seconds, stopped,
                                          loop.settled)
            for i, loop in enumerate(loops)]


def _settled(loop: Loop, options: LoopOptions) -> bool:
    """Has the image's loss stopped falling (`gained_little`)? Reads the rows since the last
    check (finite, just checked): on a GPU that is one wait every `check_every` steps."""
    missing = loop.step - len(loop.lowest)
    if missing > 0:
        extend_lowest(loop.lowest, torch.stack(loop.rows[len(loop.rows) - missing:])[:, 0].tolist())  # one transfer
    return gained_little(loop.lowest, options.gain_steps, options.min_gain)


def optimize(objective: Objective, start: torch.Tensor, optimizer: Optimizer, scheduler: Scheduler,
             options: LoopOptions, device: torch.device, on_step: Callable[[Loop], bool] | None = None,
             resume: dict | None = None) -> LoopResult:
    """Minimize `objective` over the pixels of an image that starts as `start`: a group of
    one. `on_step(loop)` runs after every step; returning True ends the run there. `resume`
    is a `Loop.state()` to continue from. Raises `Diverged` when it goes non-finite."""
    [outcome] = optimize_group([objective], [start], optimizer, scheduler, options, device,
                               on_step=None if on_step is None else lambda _, loop: on_step(loop), resume=[resume])
    if isinstance(outcome, Diverged):
        raise outcome
    return outcome


def first_non_finite(rows: list[torch.Tensor], image: torch.Tensor,
                     stepped: list[torch.Tensor] = ()) -> tuple[int, list[bool]] | None:
    """(index among `rows`, per-term finiteness) of the first step with a non-finite loss or,
    `stepped` (per row, whether its step was finite before the clamp; empty: not known), a
    non-finite step; (last index, all True) when only the image went non-finite; None when
    all is finite. A step's row holds the losses evaluated before its update."""
    if not rows:
        return None
    finite = torch.isfinite(torch.stack(rows))
    rows_ok = finite.all(dim=1)
    steps_ok = torch.stack(list(stepped)) if stepped else torch.ones_like(rows_ok)
    if bool(rows_ok.all() & steps_ok.all() & torch.isfinite(image).all()):  # one wait for the device
        return None
    every_term = [True] * (finite.shape[1] - 1)
    for index, (row_ok, step_ok) in enumerate(zip(rows_ok.tolist(), steps_ok.tolist())):
        if not row_ok:
            return index, finite[index, 1:].tolist()
        if not step_ok:
            return index, every_term
    return len(rows) - 1, every_term
