"""The live page of `stylekit video --live`: the frame being stylized (its image, inputs and
loss curves, as `stylekit run --live` shows a run) with the previous frame's output beside it,
so that flicker shows as it happens. Stop ends the video after the step in progress, with
the finished frames kept (a partial video). The page and its server are `stylekit.commands.live`'s."""

from __future__ import annotations

import contextlib

import torch

from stylekit.commands.live import LiveServer, RunCallback, RunState, serve
from stylekit.recipe.plan import Plan
from stylekit.video.frames import FrameStep


class VideoCallback:
    """The per-step callback of a video on the live page: one panel for the frame in
    progress, one for the output before it; each frame's panels replace the last one's."""

    def __init__(self, live: LiveServer, label: str, plan: Plan):
        self.live, self.label, self.plan = live, label, plan
        self.frame: int | None = None
        self.current: RunCallback | None = None
        self.keys: list[str] = []

    def __call__(self, step: FrameStep) -> None:
        if step.frame != self.frame or self.current is None:
            self._new_frame(step)
        self.current(step.step)
        if self.live.stop_requested:
            step.stop()

    def _new_frame(self, step: FrameStep) -> None:
        old, self.frame = self.keys, step.frame
        of = f"/{step.frames}" if step.frames else ""
        passes = f", pass {step.pass_number}/{step.passes}" if step.passes > 1 else ""
        key = f"frame{step.frame}-{step.pass_number}"
        # The first frame runs the recipe's stages; later ones only the last, whose sizes
        # weigh the page's time left.
        self.current = self.live.run(key, f"{self.label}: frame {step.frame + 1}{of}{passes}",
                                     self.plan if step.step.stages == len(self.plan.stages) else None)
        self.keys = [key]
        if step.previous is not None:
            previous_key = f"previous{step.frame}-{step.pass_number}"
            image = step.previous[0].detach().to("cpu", torch.float32, copy=True)
            with self.live.lock:
                self.live.runs[previous_key] = RunState(previous_key, "the output before it", status="finished",
                                                        image=image, image_version=1)
            self.keys.append(previous_key)
        with self.live.lock:
            for gone in old:
                self.live.runs.pop(gone, None)

    def finish(self) -> None:
        for key in self.keys[:1]:
            self.live.finish(key)


@contextlib.contextmanager
def watch_video(label: str, host: str, port: int, plan: Plan):
    """Serve the live page for one video; yields its callback (`FrameStep`s)."""
    with serve(host, port) as live:
        callback = VideoCallback(live, label, plan)
        try:
            yield callback
        finally:
            callback.finish()
