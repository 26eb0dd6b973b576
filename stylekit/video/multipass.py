"""Ruder's multi-pass algorithm (Ruder, Dosovitskiy & Brox 2016, section 3.4): after the
first pass, the clip is run again in alternating directions (backward, forward, ...). In
each later pass a frame starts from its own output of the pass before, moved by
`video.blend` towards its neighbour's output of this pass (the frame before it in the pass's
order) warped into it where the flow is certain, and runs `video.steps` steps held to that
neighbour by the temporal loss. Information then flows both ways along the clip, so the end
of a shot no longer differs from its start by the drift of every frame between.

Later passes look one frame back only, in their direction: the long-term offsets of the first
pass would cost two flows each per frame and pass, and a pass's neighbour is already held to
its own. Flows are computed again in each pass (one frame ahead, as in the first): keeping a
clip's flows would take about 15 MB a frame at 720p. The shots found in the first pass are
kept: a frame is never blended with a neighbour across a scene cut.
"""

from __future__ import annotations

from stylekit.files.images import to_image
from stylekit.video.start import blended_start, frame_plan, video_steps, warped_earlier


def pass_order(pass_number: int, count: int) -> list[int]:
    """The frames in the order a pass takes them: the first pass forward, then backward,
    forward, ..."""
    return list(range(count - 1, -1, -1)) if pass_number % 2 == 0 else list(range(count))


def neighbour(order: list[int], position: int, cuts: set[int]) -> int | None:
    """The frame before `order[position]` in the pass, or None: the pass's first frame, or a
    scene cut between the two (the later of them starts a shot)."""
    if position == 0:
        return None
    index, before = order[position], order[position - 1]
    return None if max(index, before) in cuts else before


def later_passes(video) -> str:
    """Run the passes after the first on `video` (`stylekit.video.frames`'s run of one clip),
    from where its work folder stands; the status the video ends with."""
    folder, spec = video.folder, video.spec
    count, cuts, steps = folder.state["count"], set(folder.state["cuts"]), video_steps(video.plan)

    def content(index: int):
        return folder.read_frame(folder.input_path(index))

    while folder.state["pass"] <= spec.passes:
        pass_number = folder.state["pass"]
        order = pass_order(pass_number, count)
        for position in range(folder.state["done"], count):
            if video.stop.requested:
                return "interrupted"
            index, before = order[position], neighbour(order, position, cuts)
            frame, own = content(index), video.output(pass_number - 1, index)
            previous, start = [], own
            if before is not None:
                flows = video.jobs.take(index, frame, {before: content(before)})
                previous = warped_earlier({1: video.output(pass_number, before)}, flows)
                start = blended_start(own, previous[0], spec.blend)
            if position + 1 < count:  # the next frame's flow, while this one runs
                after = neighbour(order, position + 1, cuts)
                if after is not None:
                    video.jobs.submit(order[position + 1], content(order[position + 1]), {after: frame})
            run = frame_plan(video.plan, to_image(frame), start, previous, steps)
            shown = video.output(pass_number, before) if before is not None else None
            status = video.run_frame(index, pass_number, run, shown, cut=False)
            if status != "finished":
                return status
        folder.next_pass(count)
    return "finished"
