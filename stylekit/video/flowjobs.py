"""Optical flow for the next frame, computed while the current one is optimized.

One worker thread asks the flow provider for each pair a frame needs (to each earlier frame
it looks back to, and back), checks what it returns and turns each pair into a certainty
(`stylekit.video.warp.certainty`). OpenCV and torch release the GIL while they compute, so
the flow of frame t + 1 costs the optimization of frame t little; a frame whose flow is not
ready waits for it.
"""

from __future__ import annotations

from concurrent.futures import Future, ThreadPoolExecutor
from pathlib import Path

import torch

from stylekit.contract.flow import FlowProvider, FramePair
from stylekit.errors import PluginError, Problem, UserError
from stylekit.video.start import Flows
from stylekit.video.warp import certainty


def checked_flow(provider: FlowProvider, source: torch.Tensor, target: torch.Tensor, pair: FramePair,
                 package: str) -> torch.Tensor:
    """The provider's flow from `source` to `target`, refused, naming the provider and its
    package, unless it is a finite (1, 2, H, W) float tensor of the frames' size. What it
    raises is its own fault, named the same way, but a `UserError` (bad input it refuses:
    a missing or wrong flow file), which stays one."""
    name = getattr(provider, "name", type(provider).__name__)
    try:
        flow = provider.flow(source, target, pair)
    except UserError:
        raise
    except Exception as exc:
        problem = Problem(f"flow provider '{name}' of package '{package}' failed for frames {pair.source} -> "
                          f"{pair.target} ({type(exc).__name__}: {exc})", field="flow")
        raise PluginError(problem, exc, package, "flow", name) from exc
    height, width = source.shape[-2:]
    wanted = f"a finite (1, 2, {height}, {width}) float tensor"
    fault = None
    if not isinstance(flow, torch.Tensor) or not flow.is_floating_point():
        fault = f"returned {type(flow).__name__ if not isinstance(flow, torch.Tensor) else flow.dtype}"
    elif tuple(flow.shape) != (1, 2, height, width):
        fault = f"returned a flow of shape {tuple(flow.shape)}"
    elif not bool(torch.isfinite(flow).all()):
        fault = "returned a flow with NaN or infinite values"
    if fault is None:
        return flow.detach().float().cpu()
    problem = Problem(f"flow provider '{name}' of package '{package}' {fault} for frames {pair.source} -> "
                      f"{pair.target}, where the contract wants {wanted} - a bug in the provider, or frames it "
                      "cannot handle; try another flow provider", field="flow")
    raise PluginError(problem, None, package, "flow", name)


class FlowJobs:
    """Flows between frames, computed one frame ahead on a worker thread. A context manager:
    on leaving, work not started is dropped (an interrupted video does not wait for it)."""

    def __init__(self, provider: FlowProvider, package: str = "?", frames_dir: Path | None = None):
        self.provider, self.package, self.frames_dir = provider, package, frames_dir
        self.worker = ThreadPoolExecutor(max_workers=1, thread_name_prefix="stylekit-flow")
        self.pending: dict[tuple[int, tuple[int, ...]], Future] = {}

    def __enter__(self):
        return self

    def __exit__(self, *exc_info):
        self.worker.shutdown(wait=False, cancel_futures=True)

    def submit(self, index: int, frame: torch.Tensor, earlier: dict[int, torch.Tensor]) -> None:
        """Start computing frame `index`'s flows to each frame in `earlier` (frame -> image):
        keyed by the distance to it, in either direction."""
        key = (index, tuple(sorted(earlier)))
        if key not in self.pending:
            self.pending[key] = self.worker.submit(self._compute, index, frame, dict(earlier))

    def take(self, index: int, frame: torch.Tensor, earlier: dict[int, torch.Tensor]) -> Flows:
        """Frame `index`'s flows (offset |index - other| -> (flow to the other frame, its
        certainty)): the ones submitted, waited for, or computed now. Raises what the
        provider's check raised."""
        self.submit(index, frame, earlier)
        return self.pending.pop((index, tuple(sorted(earlier)))).result()

    def _compute(self, index: int, frame: torch.Tensor, earlier: dict[int, torch.Tensor]) -> Flows:
        flows = {}
        for other, image in sorted(earlier.items(), key=lambda item: abs(index - item[0])):
            there = checked_flow(self.provider, frame, image, FramePair(index, other, self.frames_dir), self.package)
            back = checked_flow(self.provider, image, frame, FramePair(other, index, self.frames_dir), self.package)
            flows[abs(index - other)] = (there, certainty(there, back))
        return flows
