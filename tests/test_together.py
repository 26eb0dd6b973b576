"""The stacked pass of stylekit.together recorded as a CUDA graph, with a stand-in for the
GPU: what a graph promises (each replay rewrites the same memory) is imitated on the CPU,
so that the bookkeeping around it (copies of the rows, gradients read where the replay
writes them, which optimizers may use it) is checked here, and only the recording itself
needs a GPU."""

import pytest
import torch
from torch.utils._python_dispatch import TorchDispatchMode

import stylekit.together
from planning import plan_for
from stylekit.build import build_backbone, build_objective, build_optimizer, build_scheduler, stage_images
from stylekit.session import loop_options
from stylekit.testing import TINY_LOSSES, pattern, write_recipe


class LikeARecording(TorchDispatchMode):
    """What a CUDA graph cannot record: a tensor made from host values (its copy would read
    memory that is gone at replay) and a value read back to the host (a wait)."""

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        if func in (torch.ops.aten.lift_fresh.default, torch.ops.aten._local_scalar_dense.default):
            raise RuntimeError(f"{func} while a CUDA graph records")
        return func(*args, **(kwargs or {}))


def imitated_cuda_graph(recorded: list):
    """A stand-in for engine.record_cuda_graph: the recording refuses what a CUDA graph
    cannot record, and a replay runs the pass again, then writes its result and each
    image's gradient into the memory of the recording's, and leaves `.grad` pointing
    there, as a replayed CUDA graph does."""

    def record(forward_backward, images):
        recorded.append(len(images))
        for image in images:
            image.grad = None
        with LikeARecording():
            written = forward_backward()
        grads = [image.grad for image in images]

        def replay():
            for image in images:
                image.grad = None
            fresh = forward_backward()
            written.copy_(fresh)
            for image, grad in zip(images, grads):
                grad.copy_(image.grad)
                image.grad = grad
            return written
        return replay
    return record


def run_group(tmp_path, body: str, graph: bool, monkeypatch, recorded: list):
    recipe = write_recipe(tmp_path, TINY_LOSSES + body)
    for i in range(3):
        pattern(40, 48, "content" if i != 1 else "style").rotate(90 * i).save(tmp_path / f"c{i}.png")
    plans = [plan_for(recipe, **{"images.content": f"c{i}.png", "run.steps": 6, "run.cuda_graph": True}) for i in range(3)]
    torch.manual_seed(0)
    backbone = build_backbone(plans[0])
    inputs = [stage_images(plan, plan.stages[0]) for plan in plans]
    objectives = [build_objective(plan, backbone, images) for plan, images in zip(plans, inputs)]
    with monkeypatch.context() as patch:
        if graph:
            patch.setattr(stylekit.together, "_records_graphs", lambda device: True)
            patch.setattr(stylekit.together, "record_cuda_graph", imitated_cuda_graph(recorded))
        return stylekit.together.optimize_together(
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
