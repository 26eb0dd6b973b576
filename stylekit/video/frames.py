"""Stylizing a clip's frames with one recipe, on the one run loop (Ruder, Dosovitskiy & Brox
2016): every frame is a run of `stylekit.run.stages.run_plans`, with the backbone built and
the style targets computed once for all of them (`Reuse`).

The first frame of each shot runs the recipe as it is. Every later frame starts from the
earlier outputs warped into it by optical flow (holes from the content frame,
`stylekit.video.start`), runs at the output's size for `video.steps` steps, and is held to
those outputs by the `temporal` loss term (added at its default weight when the recipe has
none). Flow for the next frame is computed while a frame optimizes (`FlowJobs`). Each
finished frame is written at once into the work folder (`WorkFolder`), so Ctrl-C, a
callback's stop or a crash loses at most the frame in progress, and `resume` goes on from
there. With `video.passes` > 1 the later passes follow (`stylekit.video.multipass`).
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Iterable

import torch
from PIL import Image

from stylekit.contract.flow import FlowProvider
from stylekit.errors import Problem, UserError
from stylekit.files.images import output_size, to_tensor
from stylekit.recipe.plan import Plan
from stylekit.run.build import Reuse
from stylekit.run.result import RunDiverged, StepInfo
from stylekit.run.signals import Stop, signals_to
from stylekit.run.stages import run_plans
from stylekit.video.flowjobs import FlowJobs
from stylekit.video.multipass import later_passes, pass_order
from stylekit.video.start import frame_plan, run_key, traced_share, video_steps, warm_start, warped_earlier, with_temporal
from stylekit.video.workdir import WorkFolder


@dataclass
class FrameStep:
    """What a video's callback sees after every step of every frame."""

    frame: int  # the frame being stylized, from 0 (its file in the work folder is frame:06d.png)
    frames: int | None  # how many frames the clip has, where known
    step: StepInfo  # this frame's run, as a still image's callback sees it
    #: The output of the frame before it in this pass's order, (1, 3, H, W) in [0, 1] on the
    #: CPU (for showing beside the current one); None for the first.
    previous: torch.Tensor | None
    pass_number: int = 1
    passes: int = 1
    _stop: Callable[[], None] = field(repr=False, default=lambda: None)

    def stop(self) -> None:
        """End the video after this step: the frame in progress is dropped, the finished ones kept."""
        self._stop()


@dataclass
class VideoResult:
    """What `stylize_frames` made."""

    #: Every finished frame's image, in the clip's order: its latest pass's.
    paths: list[Path]
    status: str  # "finished", "stopped" (by the callback) or "interrupted" (by a signal)
    seconds: list[float]  # per frame: the seconds spent on it, its flow and its passes together
    steps: list[int]  # per frame: the steps its runs took, passes added
    notes: list[str]  # what the caller should tell the user once (e.g. a temporal term added)
    cuts: list[int]  # the frames that started a shot and ran as a first frame (0 among them)
    work_dir: Path


class FrameDiverged(RunDiverged):
    """A frame's run went non-finite: the video stops there. `frame` is its index (from 0);
    the finished frames before it are kept in the work folder."""

    def __init__(self, frame: int, cause: RunDiverged, work_dir: Path):
        super().__init__(f"frame {frame}: {cause} (the frames finished before it are kept in {work_dir})",
                         cause.step, cause.labels, cause.image, cause.image_step, cause.record)
        self.frame = frame


def stylize_frames(plan: Plan, frames: Iterable[Image.Image], flow: FlowProvider, work_dir: str | Path,
                   callback: Callable[[FrameStep], None] | None = None, resume: bool = False, *,
                   count: int | None = None, package: str = "?", frames_dir: Path | None = None,
                   identity=None, reuse: Reuse | None = None) -> VideoResult:
    """Stylize `frames` (upright PIL images of one size, in order) with `plan` and write each
    finished frame into `work_dir` (a new or empty folder; with `resume`, the folder of a
    video begun with the same recipe, flow and input, which goes on at its first unfinished
    frame). `flow` is the flow provider, `package` its package (for messages); `frames_dir`
    the folder the frames came from, for providers that read flow files beside them.
    `count`: how many frames there are, where known (default: `len(frames)` if it has one).
    `identity`: what identifies the input to the caller (JSON-able: a path, a size), kept to
    refuse resuming with another; the frames' pixels are checked as they are read too.
    `callback(step)` runs after every step of every frame (`FrameStep`); its `stop()`,
    Ctrl-C or SIGTERM end the video after the step in progress. Raises `FrameDiverged` when
    a frame goes non-finite, `UserError` for bad input or a work folder that does not match."""
    plan, notes = with_temporal(plan)
    folder = WorkFolder(Path(work_dir), run_key(plan, flow, identity), resume)
    if count is None and hasattr(frames, "__len__"):
        count = len(frames)
    video = _Video(plan, folder, callback, count, reuse or Reuse())
    with signals_to(video.stop.request), FlowJobs(flow, package, frames_dir) as jobs:
        video.jobs = jobs
        status = video.first_pass(frames)
        if status == "finished" and plan.recipe.video.passes > 1:
            status = later_passes(video)
    return video.result(status, notes)


class _Video:
    """One video's run: what its passes share."""

    def __init__(self, plan: Plan, folder: WorkFolder, callback, count: int | None, reuse: Reuse):
        self.plan, self.folder, self.callback, self.count, self.reuse = plan, folder, callback, count, reuse
        self.spec = plan.recipe.video
        self.stop = Stop()  # a signal between two frames' runs (during one, the run's own takes it)
        self.asked = False  # a callback's stop()
        self.jobs: FlowJobs | None = None
        self.hw: tuple[int, int] | None = None
        self.anchor = 0  # the frame the first pass holds the current shot's later frames to
        self.outputs: dict[tuple[int, int], torch.Tensor] = {}  # (pass, frame) -> output, the recent ones

    def first_pass(self, frames: Iterable[Image.Image]) -> str:
        folder, spec = self.folder, self.spec
        iterator = iter(frames)
        image = next(iterator, None)
        if image is None:
            raise UserError(Problem("the clip has no frames - give a video or a folder with at least one frame",
                                    field="frames"))
        last = self.plan.stages[-1]
        size, self.hw = image.size, output_size(image, last.width, last.height)
        if folder.state["pass"] > 1:  # resuming a later pass: the input is checked by its first frame
            folder.check_frame(0, image)
            return "finished"
        done, reach = folder.state["done"], max(spec.offsets)
        cuts, anchors = set(folder.state["cuts"]), set(folder.state.get("anchors", ()))
        shot = self.anchor = 0  # the shot's first frame, and the frame its later ones are held to
        contents: dict[int, torch.Tensor] = {}
        index = 0
        while image is not None:
            if image.size != size:
                raise UserError(Problem(f"frame {index} is {image.width}x{image.height}, frame 0 {size[0]}x{size[1]} "
                                        "- a clip's frames must all have one size", field="frames"))
            folder.check_frame(index, image)
            if index < done:  # finished before: only its place in the shots matters
                shot = index if index in cuts else shot
                self.anchor = index if index in cuts | anchors else self.anchor
            if index not in contents and (index >= done - reach or index == self.anchor):
                contents[index] = to_tensor(image, self.hw)  # earlier ones are not looked back to
            following = next(iterator, None)  # read ahead: its flow is computed while this frame runs
            if index >= done:
                if self.stop.requested:
                    return "interrupted"
                earlier = self.earlier(index, shot, contents)
                flows = self.jobs.take(index, contents[index], earlier) if earlier else {}
                held = spec.anchor and self.anchor in earlier
                previous = warped_earlier({k: self.output(1, index - k) for k in flows}, flows,
                                          index - self.anchor if held else None, spec.offsets)
                cut = not previous or traced_share(previous) < spec.scene_cut
                # An anchor that can no longer be traced (the camera has moved on) passes to this frame.
                renew = not cut and held and float(flows[index - self.anchor][1].mean()) < spec.scene_cut
                if cut:
                    shot, previous = index, []
                if following is not None:
                    contents[index + 1] = to_tensor(following, self.hw)
                    self.jobs.submit(index + 1, contents[index + 1],
                                     self.earlier(index + 1, shot, contents, index if cut or renew else self.anchor))
                if spec.passes > 1:  # the later passes read the frames again, in both directions
                    folder.write_frame(folder.input_path(index), contents[index])
                run = frame_plan(self.plan, image) if cut else frame_plan(
                    self.plan, image, warm_start(previous, contents[index]), previous, video_steps(self.plan))
                status = self.run_frame(index, 1, run, self.output(1, index - 1) if index > 0 else None, cut, renew)
                if status != "finished":
                    return status
                self.anchor = index if cut or renew else self.anchor
            for old in [k for k in contents if k <= index - reach and k != self.anchor]:
                del contents[old]
            index, image = index + 1, following
        if index < done:
            raise UserError(Problem(f"{folder.path} holds {done} finished frames, but the input has {index} - resume "
                                    "with the same input, or start over in another folder", field="work folder"))
        folder.next_pass(index)
        return "finished"

    def earlier(self, index: int, shot: int, contents: dict[int, torch.Tensor], anchor: int | None = None) -> dict:
        """The frames frame `index` looks back to (frame -> content): those `video.offsets`
        back within its shot, and the shot's anchor (`video.anchor`) where it is not one of them."""
        anchor = self.anchor if anchor is None else anchor
        found = {index - k: contents[index - k] for k in self.spec.offsets if index - k >= shot}
        if self.spec.anchor and shot <= anchor < index and anchor not in found:
            found[anchor] = contents[anchor]
        return found

    def output(self, pass_number: int, index: int) -> torch.Tensor:
        """A finished frame's output, as written (uint8, read back as such on resume)."""
        key = (pass_number, index)
        if key not in self.outputs:
            self.outputs[key] = self.folder.read_frame(self.folder.frame_path(pass_number, index))
        return self.outputs[key]

    def run_frame(self, index: int, pass_number: int, plan: Plan, previous: torch.Tensor | None, cut: bool,
                  anchor: bool = False) -> str:
        """Run one frame's plan and keep its output (`anchor`: it becomes its shot's anchor);
        the status the video goes on with."""
        began = time.perf_counter()

        def stop(info: StepInfo) -> None:
            self.asked = True
            info.stop()

        def on_step(info: StepInfo) -> None:
            self.callback(FrameStep(index, self.count, info, previous, pass_number, self.spec.passes,
                                    _stop=lambda: stop(info)))

        [outcome] = run_plans([plan], [on_step if self.callback is not None else None], self.reuse)
        if isinstance(outcome, RunDiverged):
            raise FrameDiverged(index, outcome, self.folder.path)
        if outcome.status != "finished":
            return outcome.status
        self.folder.write_frame(self.folder.frame_path(pass_number, index), outcome.tensor)
        self.outputs[(pass_number, index)] = outcome.tensor
        for key in [k for k in self.outputs if abs(k[1] - index) > max(self.spec.offsets) or k[0] < pass_number - 1]:
            if key != (1, self.anchor):  # read by every frame of its shot
                del self.outputs[key]
        self.folder.finished(index, time.perf_counter() - began, outcome.steps_done, cut, anchor)
        # A signal at the frame's last step stops nothing of the frame; the video ends after it.
        if outcome.signal is not None or self.stop.requested:
            return "interrupted"
        return "stopped" if self.asked else "finished"

    def result(self, status: str, notes: list[str]) -> VideoResult:
        state, folder = self.folder.state, self.folder
        pass_number, done, count = state["pass"], state["done"], state["count"]
        if count is None:  # the first pass is not through: its finished frames
            paths = [folder.frame_path(1, i) for i in range(done)]
        else:
            current = set(pass_order(pass_number, count)[:done]) if pass_number <= self.spec.passes else set(range(count))
            latest = min(pass_number, self.spec.passes)
            paths = [folder.frame_path(latest if i in current else latest - 1, i) for i in range(count)]
        return VideoResult(paths, status, list(state["seconds"]), list(state["steps"]), notes, sorted(state["cuts"]),
                           folder.path)

