"""Several images optimized together: one backbone pass over the stacked images per step,
and everything else per image, so that each comes out as it would alone.

The backbone has no layer that mixes the images of a batch (no batch normalization), so
stacking them changes nothing but the cost of the pass, and in exact arithmetic nothing at
all. In floating point the convolution kernels that oneDNN (CPU) and cuDNN (GPU) choose
depend on the batch size, so a stacked image's gradient differs from its own run's in the
last bits (about 1e-8 here), and Adam, whose step is about lr x sign(gradient) where the
gradient is near zero, turns that into differences of 1e-4 within a few steps. A CPU gains
almost nothing from stacking (it is busy either way), so on a CPU each image gets its own
pass and comes out exactly as alone; on a GPU, where one image leaves most of it idle, the
images are stacked (`stacked=True`). Each image keeps its own loss
terms (its content targets), its own optimizer and scheduler (L-BFGS history, step count
and convergence are per image, as they must be: one L-BFGS over the whole batch would
couple the images through its dot products) and its own divergence check. A loss term
whose class offers `LossTerm.together` (the built-in ones) is evaluated once for the whole
group, each image against its own targets; any other is called once per image on that
image's slice of the features, so every plugin term works here unchanged.

Stepping one torch optimizer per image is cheap for Adam but not for L-BFGS, whose
two-loop recursion is hundreds of small kernels per image and step. Where the images are
stacked and the learning rate is constant, an optimizer may offer one stepper for the whole
group (`Optimizer.build_together`; the built-in L-BFGS does, see batched_lbfgs.py), which
keeps every image's state apart but runs each kernel once for all of them.
"""

from __future__ import annotations

import time
from typing import Callable

import torch

from stylekit.contract.components import Optimizer, Scheduler
from stylekit.run.engine import (Diverged, Loop, LoopOptions, LoopResult, Objective, first_non_finite, image_dtype, network_input,
                     record_cuda_graph)


def _records_graphs(device: torch.device) -> bool:
    # Its own function so that the tests can stand in for a GPU (tests/test_together.py).
    return device.type == "cuda"


def _contiguous_grad(image: torch.Tensor) -> None:
    # The gradient arrives channels_last from the network; L-BFGS flattens it with view().
    if image.grad is not None and not image.grad.is_contiguous():
        image.grad = image.grad.contiguous()


def _slice_by_slice(terms: list):
    """The fallback for a term that offers no `together`: each image's term on its own slice."""
    def values(features: dict[str, torch.Tensor], images: torch.Tensor) -> torch.Tensor:
        return torch.stack([term({name: value[k:k + 1] for name, value in features.items()}, images[k:k + 1])
                            for k, term in enumerate(terms)])
    return values


def _together_is_its_own(cls: type) -> bool:
    """Whether `cls.together` evaluates what `cls.forward` computes: not so for a subclass
    that changes `forward` or `prepare` (a plugin's variant of a built-in term) but inherits
    its parent's `together`, which knows only the parent's."""
    def defining(name: str) -> type:
        return next(base for base in cls.__mro__ if name in vars(base))
    home = defining("together")
    return all(issubclass(home, defining(name)) for name in ("forward", "prepare"))


def group_values(objectives: list[Objective], device: torch.device, together: bool = True):
    """One function from the stacked features and images of `objectives`' images (in that
    order) to their weighted term values, an (n images, n terms) tensor: per term, all
    images at once where the term class offers `LossTerm.together` (and `together` is
    true: False is for benchmarks/group_step.py), else slice by slice.
    The objectives come from one recipe, so term j is the same component for every image."""
    columns = []
    for j in range(len(objectives[0].terms)):
        weighted = [objective.terms[j] for objective in objectives]
        terms = [wt.term for wt in weighted]
        kinds = {type(term) for term in terms}
        values = type(terms[0]).together(terms) if together and len(kinds) == 1 and _together_is_its_own(
            type(terms[0])) else None
        if values is None:
            values = _slice_by_slice(terms)
        # Made on the device here, not in the pass: a copy from the host cannot be recorded
        # in a CUDA graph.
        columns.append((values, torch.tensor([wt.weight for wt in weighted], device=device)))

    def evaluate(features: dict[str, torch.Tensor], images: torch.Tensor) -> torch.Tensor:
        return torch.stack([values(features, images) * weights for values, weights in columns], 1)
    return evaluate


def optimize_together(objectives: list[Objective], starts: list[torch.Tensor], optimizer: Optimizer,
                      scheduler: Scheduler, options: LoopOptions, device: torch.device,
                      stop=None, stacked: bool | None = None, on_step=None) -> list[LoopResult | Diverged]:
    """Minimize each objective over its own image, in step with each other; with `stacked`
    (default: off the CPU) all images (of one size) go through the backbone in one pass.
    Returns, per image, its `LoopResult`, or the `Diverged` that stopped it; a diverged
    image stops alone. `on_step(i, loop)` runs after each step for each image still going.
    `options.cuda_graph` records the stacked pass on CUDA (see `graphed` below);
    `options.compile` is not used here."""
    stacked = device.type != "cpu" if stacked is None else stacked
    began = time.perf_counter()
    if device.type == "cuda":
        torch.backends.cudnn.benchmark = True  # same shapes every step: autotuning pays off
    backbone, dtype = objectives[0].backbone, objectives[0].dtype
    layers = frozenset().union(*(objective.layers for objective in objectives))
    images = [start.detach().clone().to(device=device, dtype=image_dtype(dtype)).requires_grad_(True) for start in starts]
    loops = []
    for image in images:
        torch_optimizer = optimizer.build([image])
        loops.append(Loop(image, image.detach().clone() if options.ema_decay else None, torch_optimizer,
                          scheduler.build(torch_optimizer, options.steps)))
    # Stacked images whose learning rate stays constant can share one stepper, when the
    # optimizer offers one (the built-in L-BFGS does): its per-image work runs once for all.
    together = (optimizer.build_together(images)
                if stacked and all(loop.scheduler is None for loop in loops) else None)
    stopped: dict[int, Diverged] = {}
    checked = [(loop.output.clone(), 0) for loop in loops]
    # A CUDA graph replays the stacked pass without launching its thousands of kernels one
    # by one, as `optimize` does for one image. Not where an optimizer evaluates an image
    # again within a step (a line search): that pass is the image's own, eager.
    graphed = (stacked and options.cuda_graph and _records_graphs(device)
               and (together is not None or not optimizer.needs_closure))
    passes: dict[tuple[int, ...], Callable[[], torch.Tensor]] = {}  # the alive images -> their pass

    def stacked_pass(alive: list[int]) -> Callable[[], torch.Tensor]:
        """A function that sets the gradient of the images `alive`, stacked into one
        backbone pass, and returns their rows: (n, 1 + terms), the total, then each term."""
        group = [images[i] for i in alive]
        values_of = group_values([objectives[i] for i in alive], device)

        def forward_backward() -> torch.Tensor:
            batch = torch.cat(group)
            features = backbone.features(network_input(batch, dtype), layers)
            table = values_of(features, batch)
            del features
            totals = table.sum(1)
            totals.sum().backward()
            for image in group:
                _contiguous_grad(image)
            return torch.cat([totals.detach().unsqueeze(1), table.detach()], 1)

        if graphed:
            return record_cuda_graph(forward_backward, group)

        def eager() -> torch.Tensor:
            for image in group:
                image.grad = None
            return forward_backward()
        return eager

    def release_gradients() -> None:
        # A recorded pass's gradients live in its graph's memory pool: let both go.
        passes.clear()
        for image in images:
            image.grad = None

    def evaluate(alive: list[int]) -> dict[int, torch.Tensor]:
        """Each image's total, its row kept, its gradient set: one pass over the stacked
        images, or one pass each."""
        if stacked:
            key = tuple(alive)
            if key not in passes:  # a diverged image leaves the group: a pass for the rest
                release_gradients()
                passes[key] = stacked_pass(alive)
            rows = passes[key]()
            if graphed:  # each replay rewrites the same memory: keep a copy (on the device)
                rows = rows.clone()
            for k, i in enumerate(alive):
                loops[i].rows.append(rows[k])
            return {i: rows[k, 0] for k, i in enumerate(alive)}
        totals = {}
        for i in alive:
            images[i].grad = None
            values = objectives[i].values(images[i])
            totals[i] = values.sum()
            totals[i].backward()
            _contiguous_grad(images[i])
            loops[i].rows.append(torch.cat([totals[i].detach().view(1), values.detach()]))
        return {i: total.detach() for i, total in totals.items()}

    def closure_for(i: int, total: torch.Tensor):
        calls = [0]

        def closure() -> torch.Tensor:
            calls[0] += 1
            if calls[0] == 1:  # the batched pass already evaluated this point
                return total
            # A line search or max_iter > 1 evaluates again at a new point: this image alone.
            # As in a run of its own, the step's row holds the last evaluation.
            loops[i].optimizer.zero_grad(set_to_none=True)
            values = objectives[i].values(images[i])
            again = values.sum()
            again.backward()
            _contiguous_grad(images[i])
            loops[i].rows[-1] = torch.cat([again.detach().view(1), values.detach()])
            return again
        return closure

    setup_seconds = time.perf_counter() - began
    loop_start = time.perf_counter()
    for step in range(1, options.steps + 1):
        alive = [i for i in range(len(images)) if i not in stopped]
        if not alive or (stop is not None and stop.requested):
            break
        totals = evaluate(alive)
        if together is not None:
            together.step(alive)
        for i in alive:
            loop = loops[i]
            if together is None:
                if optimizer.needs_closure:
                    loop.optimizer.step(closure_for(i, totals[i]))
                else:
                    loop.optimizer.step()
            if loop.scheduler is not None:
                loop.scheduler.step()
            if options.clamp:
                with torch.no_grad():
                    images[i].clamp_(0, 1)
            if loop.average is not None:
                loop.average.lerp_(images[i].detach(), 1 - options.ema_decay)
            loop.step = step
            if step % options.check_every == 0 or step == options.steps:
                last_finite, last_step = checked[i]
                bad = first_non_finite(loop.rows[last_step:], loop.output)
                if bad is not None:
                    labels = [label for label, ok in zip(objectives[i].labels, bad[1]) if not ok]
                    stopped[i] = Diverged(last_step + bad[0] + 1, labels, last_finite, last_step, loop.rows)
                else:
                    checked[i] = (loop.output.clone(), step)
        if on_step is not None:
            for i in alive:
                if i not in stopped:
                    on_step(i, loops[i])
    if device.type == "cuda":
        torch.cuda.synchronize()
    seconds = time.perf_counter() - loop_start
    release_gradients()
    return [stopped.get(i) or LoopResult(loop.output.clone(), loop.rows, loop.step, seconds, setup_seconds)
            for i, loop in enumerate(loops)]


def stylize_together(plans: list, reuse, callbacks: list | None = None) -> list:
    """Run plans whose stages have the same sizes (a batch's items of one aspect), stage by
    stage, all images in step. Returns per plan a `Result`, or the `RunDiverged` that
    stopped it; the others go on. `callbacks[i](info)` follows plan i as `stylize`'s
    callback does; `info.stop()`, Ctrl-C or SIGTERM end all of them after the step in
    progress, with status "stopped" or "interrupted"."""
    from stylekit.run.build import build_objective, build_optimizer, build_scheduler, stage_images
    from stylekit.run.session import Stop, diverged, loop_options, make_result, shared_backbone, signals_to, step_info

    first = plans[0]
    if first.recipe.run.seed is not None:
        torch.manual_seed(first.recipe.run.seed)
    started = time.time()
    stop = Stop()
    with signals_to(stop):
        backbone = shared_backbone(first, reuse)
        outcomes: list = [None] * len(plans)
        histories: list[list] = [[] for _ in plans]
        stage_inputs: list = [None] * len(plans)
        seconds = setup = 0.0
        done = 0
        for stage_index, stage in enumerate(first.stages):
            going = [i for i, outcome in enumerate(outcomes) if not isinstance(outcome, Exception)]
            if not going:  # every image of the group diverged
                break
            for i in going:
                previous = outcomes[i].image if outcomes[i] is not None else None
                stage_inputs[i] = stage_images(plans[i], plans[i].stages[stage_index], previous)
            objectives = [build_objective(plans[i], backbone, stage_inputs[i], reuse) for i in going]

            def follow(k: int, loop, going=going, began=time.perf_counter(), stage_index=stage_index, done=done) -> None:
                i = going[k]
                if callbacks is not None and callbacks[i] is not None:
                    callbacks[i](step_info(plans[i], stage_index, done + loop.step, seconds + time.perf_counter() - began,
                                           loop, stage_inputs[i], stop))

            ends = optimize_together(objectives, [stage_inputs[i].start for i in going], build_optimizer(first),
                                     build_scheduler(first), loop_options(first, stage), first.device, stop,
                                     on_step=follow)
            for i, end in zip(going, ends):
                if isinstance(end, Diverged):
                    outcomes[i] = diverged(plans[i], end, stage_inputs[i], done, histories[i], started)
                else:
                    outcomes[i] = end
                    histories[i] += [row.tolist() for row in end.rows]
            finished = [e for e in ends if isinstance(e, LoopResult)]
            if finished:
                seconds, setup = seconds + finished[0].seconds, setup + finished[0].setup_seconds
                done += finished[0].steps_done
            if stop.requested:
                break
    if not stop.requested or done == first.total_steps:
        status = "finished"
    else:
        status = "interrupted" if stop.signal is not None else "stopped"
    return [outcome if isinstance(outcome, Exception) else
            make_result(plans[i], stage_inputs[i], outcome.image, histories[i], status, done, seconds, setup, started,
                        stop.signal)
            for i, outcome in enumerate(outcomes)]
