"""The stacked pass of stylekit.run.passes recorded as a CUDA graph, with a stand-in for the
GPU: what a graph promises (each replay rewrites the same memory) is imitated on the CPU,
so that the bookkeeping around it (copies of the rows, gradients read where the replay
writes them, which optimizers may use it) is checked here, and only the recording itself
needs a GPU."""

from dataclasses import replace

import pytest
import torch
from torch.multiprocessing.reductions import StorageWeakRef
from torch.utils._python_dispatch import TorchDispatchMode
from torch.utils._pytree import tree_leaves

import stylekit.run.passes
from stylekit.run.loop import optimize_group
from planning import plan_for
from stylekit.run.build import build_backbone, build_objective, build_optimizer, build_scheduler, stage_images
from stylekit.run.stages import loop_options
from stylekit.testing import TINY_LOSSES, pattern, write_recipe


class Reads(TorchDispatchMode):
    """The storages a pass reads that it did not make itself: what a CUDA graph reads at
    every replay, at the addresses it saw while recording. With `recording`, it also
    refuses what a graph cannot record: a tensor made from host values and a value read
    back to the host (a wait)."""

    def __init__(self, recording: bool = False):
        super().__init__()
        self.recording, self.made, self.read = recording, set(), {}

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        if self.recording and func in (torch.ops.aten.lift_fresh.default, torch.ops.aten._local_scalar_dense.default):
            raise RuntimeError(f"{func} while a CUDA graph records")
        for tensor in tree_leaves((args, kwargs)):
            if isinstance(tensor, torch.Tensor) and (at := tensor.untyped_storage().data_ptr()) and at not in self.made:
                self.read.setdefault(at, StorageWeakRef(tensor.untyped_storage()))
        out = func(*args, **(kwargs or {}))
        self.made.update(t.untyped_storage().data_ptr() for t in tree_leaves(out) if isinstance(t, torch.Tensor))
        return out


def imitated_cuda_graph(recorded: list):
    """A stand-in for passes.record_cuda_graph that checks what a real graph would need: the
    recording refuses what a graph cannot record; before each replay, everything the
    recording read must still be alive (a graph holds no references: it would read freed
    memory), and the replay, run again here, must read the very same memory (a graph would
    go on reading the old tensor, not one put in its place); its result and each image's
    gradient are then written into the memory of the recording's, with `.grad` pointing
    there, as a replayed graph does."""

    def record(forward_backward, images):
        recorded.append(len(images))
        for image in images:
            image.grad = None
        recording = Reads(recording=True)
        with recording:
            written = forward_backward()
        grads = [image.grad for image in images]

        def replay():
            gone = [at for at, ref in recording.read.items() if ref.expired()]
            assert not gone, f"{len(gone)} tensors the recorded pass reads were freed"
            for image in images:
                image.grad = None
            again = Reads()
            with again:
                fresh = forward_backward()
            assert set(again.read) == set(recording.read), "a replay would read other memory than was recorded"
            written.copy_(fresh)
            for image, grad in zip(images, grads):
                grad.copy_(image.grad)
                image.grad = grad
            return written
        return replay
    return record


def run_group(tmp_path, body: str, graph: bool, monkeypatch, recorded: list, overflow: int | None = None):
    """The three images' results, eager or with the imitated graph; with `overflow`, that
    image's style term is weighted infinitely, so that it diverges at the first step."""
    recipe = write_recipe(tmp_path, TINY_LOSSES + body)
    for i in range(3):
        pattern(40, 48, "content" if i != 1 else "style").rotate(90 * i).save(tmp_path / f"c{i}.png")
    plans = [plan_for(recipe, **{"images.content": f"c{i}.png", "run.steps": 6, "run.cuda_graph": True}) for i in range(3)]
    torch.manual_seed(0)
    backbone = build_backbone(plans[0])
    inputs = [stage_images(plan, plan.stages[0]) for plan in plans]
    objectives = [build_objective(plan, backbone, images) for plan, images in zip(plans, inputs)]
    if overflow is not None:
        terms = objectives[overflow].terms
        objectives[overflow] = replace(objectives[overflow], terms=tuple(
            replace(wt, weight=float("inf")) if wt.term.name == "gram" else wt for wt in terms))
    with monkeypatch.context() as patch:
        if graph:
            patch.setattr(stylekit.run.passes, "_records_graphs", lambda device: True)
            patch.setattr(stylekit.run.passes, "record_cuda_graph", imitated_cuda_graph(recorded))
        return optimize_group(
            objectives, [images.start for images in inputs], build_optimizer(plans[0]), build_scheduler(plans[0]),
            loop_options(plans[0], plans[0].stages[0]), plans[0].device, stacked=True)


@pytest.mark.parametrize("body, graphed", [
    ('[optimizer]\nname = "lbfgs"\n', True),  # one BatchedLBFGS for the group
    ('[optimizer]\nname = "adam"\n[scheduler]\nname = "cosine"\n', True),  # per-image Adam, no closure
    ('[optimizer]\nname = "lbfgs"\n[optimizer.params]\nline_search = "strong_wolfe"\n', False),
])
def test_a_recorded_stacked_pass_gives_the_eager_one_s_images_and_rows(tmp_path, monkeypatch, body, graphed):
    """Recorded once per stage for the whole group, replayed every step: the same images
    and per-step rows as the eager stacked pass, bit for bit. A line search evaluates an
    image again inside the step, on its own, so its group is never recorded."""
    eager = run_group(tmp_path, body, False, monkeypatch, [])
    recorded = []
    replayed = run_group(tmp_path, body, True, monkeypatch, recorded)
    assert recorded == ([3] if graphed else [])
    for a, b in zip(eager, replayed, strict=True):
        assert torch.equal(a.image, b.image)
        assert torch.equal(torch.stack(a.rows), torch.stack(b.rows)), "each step's row is kept, not overwritten"
        assert len(b.rows) == 6


def test_an_image_that_diverges_leaves_the_recorded_group_and_the_rest_go_on_as_eager(tmp_path, monkeypatch):
    """The group is recorded again without the image that went non-finite; the other two
    come out as from the eager pass, which drops it the same way."""
    from stylekit.run.engine import Diverged

    body = '[optimizer]\nname = "lbfgs"\n'
    eager = run_group(tmp_path, body, False, monkeypatch, [], overflow=1)
    recorded = []
    replayed = run_group(tmp_path, body, True, monkeypatch, recorded, overflow=1)
    assert recorded == [3, 2]
    assert isinstance(eager[1], Diverged) and isinstance(replayed[1], Diverged) and replayed[1].step == 1
    for k in (0, 2):
        assert torch.equal(eager[k].image, replayed[k].image) and len(replayed[k].rows) == 6


@pytest.mark.parametrize("body", ['[optimizer]\nname = "adam"\n',
                                  '[optimizer]\nname = "lbfgs"\n[optimizer.params]\nline_search = "strong_wolfe"\n'])
def test_a_group_of_one_records_its_own_pass_and_gives_the_eager_image_and_rows(tmp_path, monkeypatch, body):
    """A single run (a group of one, not stacked) records its own pass once and replays it
    for every evaluation, a line search's included: the same image and rows as eager."""
    from stylekit.run.loop import optimize

    plan = plan_for(write_recipe(tmp_path, TINY_LOSSES + body), **{"run.steps": 5, "run.cuda_graph": True})
    torch.manual_seed(0)
    images = stage_images(plan, plan.stages[0])
    objective = build_objective(plan, build_backbone(plan), images)
    args = (objective, images.start, build_optimizer(plan), build_scheduler(plan), loop_options(plan, plan.stages[0]),
            plan.device)
    eager, recorded = optimize(*args), []
    with monkeypatch.context() as patch:
        patch.setattr(stylekit.run.passes, "_records_graphs", lambda device: True)
        patch.setattr(stylekit.run.passes, "record_cuda_graph", imitated_cuda_graph(recorded))
        replayed = optimize(*args)
    assert recorded == [1]
    assert torch.equal(eager.image, replayed.image) and torch.equal(torch.stack(eager.rows), torch.stack(replayed.rows))
