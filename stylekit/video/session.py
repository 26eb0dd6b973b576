"""A clip in, a video out: what `stylekit video` and `stylekit.stylize_video` share. The
frames are stylized by `stylekit.video.frames.stylize_frames` into a work folder beside the
output; once all are done they are encoded (the input's timing and sound kept) and the work
folder removed. A video that does not finish keeps its work folder, to resume from, and its
finished frames as a partial video that plays (`partial_path`).

    OUT                 the stylized video (or folder of frames), written only when complete
    OUT.frames/         the work folder while it is made (kept when it does not finish)
    OUT-stem.partial.mp4   the finished frames of a video that did not finish
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

from stylekit.errors import Problem, UserError
from stylekit.recipe.plan import Plan
from stylekit.run.build import build_flow
from stylekit.video.decode import Clip
from stylekit.video.encode import encode_frame_files
from stylekit.video.frames import FrameDiverged, FrameStep, VideoResult, stylize_frames
from stylekit.video.workdir import STATE, frame_file, remove_work_folder

#: What `stylekit video` writes a video as (by the output's suffix); no suffix: a folder of frames.
VIDEO_SUFFIXES = (".mp4", ".m4v", ".mov", ".mkv")


@dataclass
class ClipResult:
    """What a video run made. `output` is the finished video, or for one that did not finish
    the partial video of its finished frames (None when no frame was finished)."""

    output: Path | None
    status: str  # "finished", "stopped" (by the callback or the live page) or "interrupted" (a signal)
    frames: int  # the clip's frame count
    done: int  # frames finished (all of them when finished)
    seconds: list[float]  # per finished frame
    steps: list[int]
    cuts: list[int]  # frames that began a shot (0 among them)
    notes: list[str] = field(default_factory=list)
    work_dir: Path | None = None  # kept when the video did not finish: resume from it

    @property
    def partial(self) -> bool:
        return self.status != "finished"


def work_dir_for(output: Path) -> Path:
    return output.with_name(output.name + ".frames")


def partial_path(output: Path) -> Path:
    suffix = output.suffix if output.suffix.lower() in VIDEO_SUFFIXES else ".mp4"
    return output.with_name(f"{output.stem if output.suffix else output.name}.partial{suffix}")


def output_problems(clip: Clip, output: Path, resume: bool) -> list[Problem]:
    """What is wrong with writing `clip`'s stylization to `output`, found before any frame runs."""
    problems = []
    suffix = output.suffix.lower()
    if suffix and suffix not in VIDEO_SUFFIXES:
        problems.append(Problem(f"a video output must end in {', '.join(VIDEO_SUFFIXES)} (or have no suffix: a folder "
                                f"of frames), not {output.suffix}", field="--output"))
    if not output.parent.is_dir():
        problems.append(Problem(f"the folder {output.parent} does not exist - create it first", field="--output"))
    source = Path(clip.path).resolve()
    for path, what in ((output, f"{output}"), (work_dir_for(output), f"its work folder {work_dir_for(output)}"),
                       (partial_path(output), f"its partial video {partial_path(output)}")):
        resolved = path.resolve()
        if resolved == source or source in resolved.parents or resolved in source.parents:
            problems.append(Problem(f"{what} would overwrite the input {clip.path} - choose another output",
                                    field="--output"))
    work = work_dir_for(output)
    if not resume and partial_path(output).exists() and not (work / STATE).is_file():
        problems.append(Problem(f"{partial_path(output)} exists and was not left by a video stylekit began here - "
                                "move it, or choose another output", field="--output"))
    return problems


def stylize_clip(plan: Plan, clip: Clip, output: str | Path, callback: Callable[[FrameStep], None] | None = None,
                 resume: bool = False, keep_frames: bool = False) -> ClipResult:
    """Stylize every frame of `clip` with `plan` and write the video to `output` (see the
    module docstring for what is written where). `callback(step)` after every step of every
    frame; its `stop()`, Ctrl-C or SIGTERM end the video after the step in progress, with
    the finished frames kept. Raises `UserError` for bad input, `FrameDiverged` when a
    frame goes non-finite (the finished frames are then kept as a partial video too)."""
    output = Path(output)
    problems = output_problems(clip, output, resume)
    if problems:
        raise UserError(problems)
    provider = build_flow(plan)
    work = work_dir_for(output)

    def encoded(frames: list[Path], path: Path) -> Path:
        return encode_frame_files(frames, path, like=clip, crf=plan.recipe.video.crf)

    identity = {"input": str(Path(clip.path).resolve()), "frames": clip.frame_count, "size": [clip.width, clip.height]}
    try:
        made = stylize_frames(plan, clip.frames(), provider, work, callback, resume, count=clip.frame_count,
                              package=plan.flow.package, frames_dir=Path(clip.path) if clip.files else None,
                              identity=identity)
    except FrameDiverged as exc:
        done = [frame_file(work, 1, index) for index in range(exc.frame)]
        exc.partial = encoded(done, partial_path(output)) if done else None
        raise
    if made.status != "finished":
        partial = encoded(made.paths, partial_path(output)) if made.paths else None
        return _result(made, partial, clip, work)
    written = encoded(made.paths, output)
    partial_path(output).unlink(missing_ok=True)  # a partial video from an earlier try, now whole
    if not keep_frames:
        remove_work_folder(work)
    return _result(made, written, clip, work if keep_frames else None)


def _result(made: VideoResult, output: Path | None, clip: Clip, work: Path | None) -> ClipResult:
    return ClipResult(output, made.status, clip.frame_count, len(made.paths), made.seconds[:len(made.paths)],
                      made.steps[:len(made.paths)], made.cuts, made.notes, work)
