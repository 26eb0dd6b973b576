"""Optical flow for the next frame, computed while the current one is optimized.

One worker thread asks the flow provider for each pair a frame needs (to each earlier frame
it looks back to, and back), checks what it returns (`stylekit.video.flows.checked_flow`,
which names the provider) and turns each pair into a certainty
(`stylekit.video.warp.certainty`). OpenCV and torch release the GIL while they compute, so
the flow of frame t + 1 costs the optimization of frame t little; a frame whose flow is not
ready waits for it.
"""

from __future__ import annotations

from concurrent.futures import Future, ThreadPoolExecutor
from pathlib import Path

import torch

from stylekit.contract.flow import FlowProvider, FramePair
from stylekit.video.flows import checked_flow
from stylekit.video.start import Flows
from stylekit.video.warp import certainty


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
