"""The fifth kind of component: a flow provider, which says where each pixel of one video
frame moves to in another (optical flow). `stylekit video` asks one for the flow between
neighbouring frames (both ways), and stylekit's core turns a pair of flows into a certainty
mask (`stylekit.video.warp.certainty`); a provider computes flow and nothing else.

Registered by the `register_flow_providers` hook, chosen by a recipe's `[flow]` table.
"""

from __future__ import annotations

from abc import abstractmethod
from dataclasses import dataclass
from pathlib import Path
from typing import ClassVar

import torch
from pydantic import BaseModel

from stylekit.contract.components import Component


@dataclass(frozen=True)
class FramePair:
    """Which frames a flow is asked for: from frame `source` to frame `target` (indices in
    the video, from 0), and the folder of the input's frames when the input is a folder
    (None for a video file). A provider that reads precomputed flow finds its file by these."""

    source: int
    target: int
    frames_dir: Path | None = None


class FlowProvider(Component):
    """Computes optical flow between two frames.

    `__init__` receives the validated `Params` (kept as `self.params`); `flow` is called
    twice per frame pair (forward and backward), on the CPU, with float32 images. A provider
    that runs a network may move the frames to `self.device`, which stylekit sets to the
    run's device before the first call.
    """

    kind = "flow"
    #: Set by stylekit before the first `flow` call: the run's device.
    device: torch.device = torch.device("cpu")

    def __init__(self, params: BaseModel):
        """Keeps the validated `Params` as `self.params`."""
        self.params = params

    @abstractmethod
    def flow(self, source: torch.Tensor, target: torch.Tensor, pair: FramePair) -> torch.Tensor:
        """The flow from `source` to `target` (each (1, 3, H, W), RGB in [0, 1], float32, on
        the CPU): a (1, 2, H, W) float32 tensor whose channels are, for each pixel (x, y) of
        `source`, how far it moves in `target` along x (to the right) and along y (down), in
        pixels. So `target` at (x + u, y + v) shows what `source` shows at (x, y). Values
        must be finite; stylekit checks them and names the provider when they are not."""

    #: Whether `flow` reads files beside the frames rather than computing from pixels.
    reads_files: ClassVar[bool] = False
    #: Params added in a later version of the provider, each with the value that computes
    #: what the provider computed before it: at that value a param is left out of a video's
    #: work-folder key, so that a video begun before the param existed resumes.
    params_added_later: ClassVar[dict] = {}
