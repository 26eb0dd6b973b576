"""The work of `stylekit video` and `stylekit video-metrics` (parsed in
`stylekit.commands.video`): load the recipe with the clip's first frame as its content,
stylize the clip with a progress display, and say what was written."""

from __future__ import annotations

import contextlib
import json
import sys
import time
from pathlib import Path

from stylekit.builtins.flow import DIS
from stylekit.commands.arguments import add_sets, default_recipe, flag_overrides
from stylekit.errors import Problem, UserError, one_line
from stylekit.files.images import open_rgb, output_size, to_tensor, write_text_atomic
from stylekit.plugins.registry import broken_warnings, load_registry
from stylekit.recipe.load import load_recipe
from stylekit.recipe.overrides import Overrides, shell_word
from stylekit.recipe.plan import Plan
from stylekit.recipe.stage_fit import more_steps_note
from stylekit.tools.progress import is_terminal
from stylekit.video.decode import Clip, open_clip
from stylekit.video.frames import FrameDiverged, FrameStep
from stylekit.video.metrics import OFFSETS, frame_figures, provider_flows, warping_errors
from stylekit.video.start import with_temporal
from stylekit.video.session import ClipResult, output_problems, stylize_clip, work_dir_for

def load_plan(args, clip: Clip) -> Plan:
    """The recipe with the command line's overrides, its content the clip's first frame."""
    overrides = Overrides()
    if args.style:
        overrides.add(("images", "style"), [str(Path(p).resolve()) for p in args.style],
                      " ".join(f"--style {p}" for p in args.style))
    malformed = add_sets(flag_overrides(overrides, args), args.set)
    if not any(key[:2] in (("output", "width"), ("output", "height")) or key == ("output",) for key in overrides):
        # A recipe's output size is for still images; a clip is stylized at its own size
        # unless the command line says otherwise.
        overrides.add(("output", "width"), clip.width, f"the clip's width ({clip.width})")
    registry = args.registry or load_registry()
    first = next(iter(clip.frames()))
    try:
        plan = load_recipe(args.recipe, registry, overrides, images={"content": first})
    except UserError as exc:
        raise UserError(malformed + exc.problems) from None
    if malformed:
        raise UserError(malformed)
    for warning in broken_warnings(registry):
        print(warning, file=sys.stderr)
    return plan

class FrameProgress:
    """Per frame and overall: a line per finished frame when piped; on a terminal, one line
    redrawn in place with the frame, its step and the video's time left."""

    def __init__(self, stream, frames: int, quiet: bool):
        self.stream, self.frames, self.quiet = stream, frames, quiet
        self.live = is_terminal(stream)
        self.began = time.monotonic()
        self.frame_began: dict[int, float] = {}
        self.last_draw = 0.0
        self.finished: list[float] = []  # seconds of each frame finished in this process

    def __call__(self, step: FrameStep) -> None:
        if self.quiet:
            return
        info = step.step
        now = time.monotonic()
        self.frame_began.setdefault(step.frame, now)
        if info.step == info.total:
            self.finished.append(now - self.frame_began[step.frame])
            self._line(f"frame {step.frame + 1}/{self.frames}: {info.total} steps, "
                       f"{now - self.frame_began[step.frame]:.1f} s{self._left(step)}", final=True)
        elif self.live and now - self.last_draw > 0.5:
            self.last_draw = now
            self._line(f"frame {step.frame + 1}/{self.frames}  step {info.step}/{info.total}{self._left(step)}")

    def _left(self, step: FrameStep) -> str:
        # The first frame runs the whole recipe; later ones far fewer steps: the time left
        # is judged from the frames after the first, once there are some.
        later = self.finished[1:] or self.finished
        if not later:
            return ""
        left = (self.frames - step.frame - 1) * sum(later) / len(later)
        return f"  (video: about {left / 60:.0f} min left)" if left >= 90 else f"  (video: about {left:.0f} s left)"

    def _line(self, text: str, final: bool = False) -> None:
        if self.live:
            self.stream.write("\r\033[K" + text + ("\n" if final else ""))
        elif final:
            self.stream.write(text + "\n")
        self.stream.flush()

    def note(self, text: str) -> None:
        if not self.quiet:
            self.stream.write(("\r\033[K" if self.live else "") + text + "\n")
            self.stream.flush()

def run_video(args) -> int:
    if args.recipe is None:
        args.recipe, which = default_recipe(_DefaultArgs(args))
        if not args.quiet:
            print(which, file=sys.stderr)
    clip = open_clip(args.input)
    plan, notes = with_temporal(load_plan(args, clip))
    output = Path(args.output)
    problems = output_problems(clip, output, args.resume)
    if problems:  # before a line that says the video begins
        raise UserError(problems)
    stream = sys.stderr
    progress = FrameProgress(stream, clip.frame_count, args.quiet)
    last = plan.stages[-1]
    h, w = output_size(plan.images.content, last.width, last.height)  # the content is the clip's first frame
    progress.note(f"stylekit video: {one_line(str(args.input))} ({clip.frame_count} frames, {clip.fps:.4g} fps) -> "
                  f"{one_line(str(output))} ({w}x{h}, {plan.device.type})")
    if args.resume:
        progress.note(f"resuming from {one_line(str(work_dir_for(output)))}")
    for note in [*notes, *filter(None, [more_steps_note(plan, "a shot's first frame takes")])]:
        progress.note(f"note: {note}")
    callbacks = [progress]
    try:
        with contextlib.ExitStack() as stack:
            if args.live:
                from stylekit.commands.video_live import watch_video  # deferred: the live page only when asked

                callbacks.append(stack.enter_context(watch_video(Path(str(plan.source)).name, args.live_host,
                                                                 args.live_port, plan)))
            result = stylize_clip(plan, clip, output, _each(callbacks), resume=args.resume, keep_frames=args.keep_frames)
    except FrameDiverged as exc:
        partial = getattr(exc, "partial", None)
        kept = f"; the {exc.frame} frames before it are in {one_line(str(partial))}" if partial else ""
        print(f"error: {one_line(str(exc))}{kept}", file=stream)
        return 3
    return _said(args, result, output, progress)

def _each(callbacks):
    def callback(step: FrameStep) -> None:
        for each in callbacks:
            each(step)
    return callback

class _DefaultArgs:
    """What `default_recipe` reads of a `stylekit run`'s arguments, from a video's."""

    def __init__(self, args):
        self.content, self.style, self.output, self.set = args.input, args.style, args.output, args.set

def _said(args, result: ClipResult, output: Path, progress: FrameProgress) -> int:
    seconds = result.seconds[1:] or result.seconds
    pace = f", {sum(seconds) / len(seconds):.1f} s a frame after the first" if len(result.seconds) > 1 else ""
    cuts = [c for c in result.cuts if c]
    shots = f", scene cuts at frames {', '.join(str(c) for c in cuts)}" if cuts else ""
    if result.status == "finished":
        progress.note(f"wrote {one_line(str(result.output))} ({result.done} frames{pace}{shots})")
        return 0
    resume = "stylekit " + " ".join(map(shell_word, args.argv)) + ("" if args.resume else " --resume")
    where = (f"the {result.done} finished frames are in {one_line(str(result.output))}" if result.output
             else "no frame was finished")
    progress.note(f"{result.status} at frame {result.done + 1}/{result.frames} - {where}; the work folder "
                  f"{one_line(str(result.work_dir or work_dir_for(output)))} is kept: to go on, run {resume}")
    return 0 if result.status == "stopped" else 130

def measure(args) -> int:
    """`stylekit video-metrics`: the warping error at 1 and 10 frames, graded with the
    input's DIS flow (plain DIS, without the matched motions, whatever the video's recipe used,
    so that a stylization is not graded by the flow it was held to); with --style, each
    frame's content and style distances."""
    stylized, source = open_clip(args.output), open_clip(args.input)
    if stylized.frame_count != source.frame_count:
        raise UserError(Problem(f"{args.output} has {stylized.frame_count} frames but {args.input} has "
                                f"{source.frame_count} - give the clip it was made from", field="--input"))
    size = (stylized.height, stylized.width)
    outputs = [to_tensor(frame, size) for frame in stylized.frames()]
    inputs = [to_tensor(frame, size) for frame in source.frames()]
    flows = provider_flows(inputs, DIS(DIS.Params(preset=args.preset, matches=False)))
    figures = {"frames": len(outputs), "preset": args.preset, "warping_error": {}, "input_warping_error": {}}
    for error in warping_errors(outputs, flows, OFFSETS):
        figures["warping_error"][str(error.offset)] = error.mean
    for error in warping_errors(inputs, flows, OFFSETS):
        figures["input_warping_error"][str(error.offset)] = error.mean
    if args.style:
        figures.update(frame_figures(outputs, inputs, open_rgb(args.style)))
    for k, value in figures["warping_error"].items():
        own = figures["input_warping_error"][k]
        print(f"warping error at {k} frame{'s' if k != '1' else ''}: {value:.5f} (the input's own: {own:.5f}, "
              f"ratio {value / own if own else float('inf'):.2f})")
    if args.style:
        print(f"content distance per frame: mean {_mean(figures['content']):.3f}, max {max(figures['content']):.3f}")
        print(f"style distance per frame: mean {_mean(figures['style']):.3f}, max {max(figures['style']):.3f}")
    if args.json:
        write_text_atomic(json.dumps(figures, indent=1), Path(args.json))
    return 0

def _mean(values: list[float]) -> float:
    return sum(values) / len(values)
