"""Each step's forward and backward passes over a group's images: the weighted loss terms
evaluated, their sum back-propagated to the pixels, each image's row of losses kept.

An image's own pass is what a single run uses, eager or, on CUDA, recorded once as a graph
and replayed every step (`record_cuda_graph`); a group of one is this. Stacked images (a
group off the CPU, see `stylekit.run.together`) go through the backbone in one pass,
recorded as one graph where their optimizers allow; an optimizer that evaluates an image
again within its step (a line search) gets that image's own pass, eager.
"""

from __future__ import annotations

from typing import Callable

import torch

from stylekit.errors import Problem, UserError
from stylekit.run.engine import Loop, Objective, network_input
from stylekit.run.together import group_values


def _records_graphs(device: torch.device) -> bool:
    # Its own function so that the tests can stand in for a GPU (tests/test_together.py).
    return device.type == "cuda"


def _contiguous_grad(image: torch.Tensor) -> None:
    # The gradient arrives channels_last from the network; optimizers like L-BFGS
    # flatten it with view(), which needs the image's own (contiguous) layout.
    if image.grad is not None and not image.grad.is_contiguous():
        image.grad = image.grad.contiguous()


def _checked_first(objective: Objective, evaluate: Callable[[torch.Tensor], torch.Tensor]):
    """`evaluate`, but its first call (eager, before any recording) checks each term's value
    against the contract: a plugin's wrong shape is named there, once, not checked every step."""
    first = [True]

    def values(pixels: torch.Tensor) -> torch.Tensor:
        if first[0]:
            first[0] = False
            return objective.values(pixels, check=True)
        return evaluate(pixels)
    return values


class Passes:
    """The passes of one stage's group: `images[i]` is minimized under `objectives[i]` and
    stepped by `loops[i].optimizer`. Per step: `evaluate(alive)` (the stacked pass, when
    stacked), then each image's optimizer steps with `closure(i)`, then `row(i)` is that
    image's row to keep: [total, weighted term values...] of its last evaluation."""

    def __init__(self, objectives: list[Objective], images: list[torch.Tensor], loops: list[Loop], options,
                 device: torch.device, stacked: bool, replayable: bool):
        self.objectives, self.images, self.loops, self.device = objectives, images, loops, device
        self.stacked, self.latest = stacked, [None] * len(images)
        graphs = options.cuda_graph and _records_graphs(device)
        # An image's own pass is recorded where it is the step's only pass; stacked, it only
        # evaluates again within a step (a line search), for one image of the group.
        self.own_graphed = graphs and not stacked
        # Not where an optimizer evaluates an image again within a step: that pass is the
        # image's own, eager. `replayable`: every image's step is one evaluation.
        self.stacked_graphed = graphs and stacked and replayable
        # Compiled only for one image (each image's objective would be compiled anew), and
        # only for the loop: the targets were computed once, eagerly.
        compiled = options.compile and len(images) == 1
        self.own = [self._own(i, _checked_first(objective, torch.compile(objective.values, dynamic=False)
                                                if compiled else objective.values))
                    for i, objective in enumerate(objectives)]
        self.groups: dict[tuple[int, ...], Callable[[], torch.Tensor]] = {}  # the alive images -> their pass
        self.totals: dict[int, torch.Tensor] = {}

    def _own(self, i: int, evaluate) -> Callable[[], torch.Tensor]:
        """Image i's own pass, as its optimizer's closure: sets its gradient, returns its total."""
        image, latest = self.images[i], self.latest

        def forward_backward() -> torch.Tensor:
            values = evaluate(image)
            total = values.sum()
            total.backward()
            _contiguous_grad(image)
            latest[i] = torch.cat([total.detach().view(1), values.detach()])
            return total

        if self.own_graphed:
            return record_cuda_graph(forward_backward, [image])
        optimizer = self.loops[i].optimizer

        def eager() -> torch.Tensor:
            optimizer.zero_grad(set_to_none=True)
            return forward_backward()
        return eager

    def _stacked(self, alive: list[int]) -> Callable[[], torch.Tensor]:
        """A function that sets the gradient of the images `alive`, stacked into one
        backbone pass, and returns their rows: (n, 1 + terms), the total, then each term."""
        group = [self.images[i] for i in alive]
        objectives = [self.objectives[i] for i in alive]
        values_of = group_values(objectives, self.device)
        backbone, dtype = objectives[0].backbone, objectives[0].dtype
        layers = frozenset().union(*(objective.layers for objective in objectives))

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

        if self.stacked_graphed:
            return record_cuda_graph(forward_backward, group)

        def eager() -> torch.Tensor:
            for image in group:
                image.grad = None
            return forward_backward()
        return eager

    def evaluate(self, alive: list[int]) -> None:
        """Stacked: each image's total, its row kept, its gradient set, in one pass over the
        images `alive`. An image's own pass runs in its optimizer's step instead."""
        if not self.stacked:
            return
        key = tuple(alive)
        if key not in self.groups:  # a diverged image leaves the group: a pass for the rest
            self.release()
            self.groups[key] = self._stacked(alive)
        table = self.groups[key]()
        if self.stacked_graphed:  # each replay rewrites the same memory: keep a copy (on the device)
            table = table.clone()
        for k, i in enumerate(alive):
            self.latest[i], self.totals[i] = table[k], table[k, 0]

    def closure(self, i: int) -> Callable[[], torch.Tensor]:
        """What image i's optimizer steps with (and what is called before a step without one)."""
        if not self.stacked:
            return self.own[i]
        calls = [0]

        def closure() -> torch.Tensor:
            calls[0] += 1
            if calls[0] == 1:  # the stacked pass already evaluated this point
                return self.totals[i]
            # A line search or max_iter > 1 evaluates again at a new point: this image alone.
            # As in a run of its own, the step's row holds the last evaluation.
            return self.own[i]()
        return closure

    def row(self, i: int) -> torch.Tensor:
        # A replayed graph rewrites the same tensor every step: keep a copy (on the device).
        return self.latest[i].clone() if self.own_graphed else self.latest[i]

    def release(self) -> None:
        # A recorded pass's gradients live in its graph's memory pool: let both go.
        self.groups.clear()
        for image in self.images:
            image.grad = None


def record_cuda_graph(forward_backward: Callable[[], torch.Tensor], images: list[torch.Tensor]) -> Callable[[], torch.Tensor]:
    """Record one forward and backward pass as a CUDA graph; return a closure that replays it.

    The replay writes what `forward_backward` returned and each image's `.grad` into the
    same memory every time, and the optimizer updates the images in place, so the recorded
    pass always reads the current images. A graph holds no references to what it reads:
    the replay keeps `forward_backward` (and so every tensor its closure holds, such as
    targets made for it) alive, and points each `.grad` back at the memory the graph writes,
    in case something set it to None between steps. Warm-up passes on a side stream come
    first: cuDNN's autotuning and lazy initialisation may not happen during the recording.
    """
    side = torch.cuda.Stream()
    side.wait_stream(torch.cuda.current_stream())
    with torch.cuda.stream(side):
        for _ in range(3):
            for image in images:
                image.grad = None
            forward_backward()
    torch.cuda.current_stream().wait_stream(side)
    for image in images:
        image.grad = None
    graph = torch.cuda.CUDAGraph()
    try:
        with torch.cuda.graph(graph):
            written = forward_backward()
    except RuntimeError as exc:
        first_line = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise UserError(Problem(f"the step could not be recorded as a CUDA graph ({first_line}) - a loss term "
                                "probably waits for the GPU (.item(), torch.linalg.eigh and the like); "
                                "set run.cuda_graph = false", field="run.cuda_graph")) from None

    grads = [image.grad for image in images]

    def replay() -> torch.Tensor:
        for image, grad in zip(images, grads):
            image.grad = grad
        graph.replay()
        return written

    replay.keeps_alive = forward_backward  # what the graph reads (see above)
    return replay
