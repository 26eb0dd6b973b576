"""Pictures of a run: the loss curves (log scale, one line per term, like the chapter's
plot of content, style and TV loss by epoch) and a strip of the intermediate images.
Drawn with Pillow, so no plotting library is needed."""

from __future__ import annotations

import math
from pathlib import Path

from PIL import Image, ImageDraw

from stylekit.files.images import save_atomic

STAGE_LINE = (110, 110, 110)
COLOURS = [(31, 119, 180), (255, 127, 14), (44, 160, 44), (214, 39, 40), (148, 103, 189), (140, 86, 75), (227, 119, 194)]


def plot_losses(history: list[dict[str, float]], path: Path, size: tuple[int, int] = (640, 400),
                mark: str | None = None, stages: list[int] = ()) -> None:
    """`mark`: the output image the plot is written for (see `save_atomic`). `stages`: the
    steps of each stage; with more than one, a labelled line marks where each stage begins
    and the curves break there: the losses jump at the start of a stage (a new size: new
    targets, an upsampled image), which a line joining the two would draw as a climb."""
    width, height = size
    left, right, top, bottom = 60, 130, 20, 40
    img = Image.new("RGB", size, "white")
    draw = ImageDraw.Draw(img)
    labels = list(history[0]) if history else []
    values = [v for row in history for v in row.values() if v > 0]
    if not values:
        save_atomic(img, path, mark)
        return
    lo, hi = math.log10(min(values)), math.log10(max(values))
    hi = hi if hi > lo else lo + 1
    steps = len(history)

    def xy(step: int, value: float) -> tuple[float, float]:
        x = left + (width - left - right) * (step / max(1, steps - 1))
        y = top + (height - top - bottom) * (1 - (math.log10(value) - lo) / (hi - lo))
        return x, y

    draw.rectangle([left, top, width - right, height - bottom], outline="black")
    for decade in range(math.floor(lo), math.ceil(hi) + 1):
        if lo <= decade <= hi:
            y = xy(0, 10.0 ** decade)[1]
            draw.line([left - 4, y, left, y], fill="black")
            draw.text((4, y - 6), f"1e{decade}", fill="black")
    draw.text((left, height - bottom + 8), "step 1", fill="black")
    draw.text((width - right - 50, height - bottom + 8), f"step {steps}", fill="black")
    spans = _spans(stages, steps)
    _mark_stages(draw, spans, lambda step: xy(step, 10.0 ** lo)[0], top, height - bottom)
    for i, label in enumerate(labels):
        colour = COLOURS[i % len(COLOURS)]
        for start, end in spans:
            points = [xy(s, history[s][label]) for s in range(start, end) if history[s][label] > 0]
            if len(points) > 1:
                draw.line(points, fill=colour, width=2)
        draw.line([width - right + 10, top + 16 * i + 6, width - right + 30, top + 16 * i + 6], fill=colour, width=3)
        draw.text((width - right + 36, top + 16 * i), label, fill="black")
    save_atomic(img, path, mark)


def _spans(stages: list[int], steps: int) -> list[tuple[int, int]]:
    """Each stage's steps as (first, past the last) indexes in a history of `steps` rows, of
    the stages it reaches (a run stopped early ends in an earlier one); one span for all
    when the stages are not given."""
    spans, start = [], 0
    for count in stages:
        if start >= steps:
            break
        spans.append((start, min(start + count, steps)))
        start += count
    return spans if len(spans) > 1 else [(0, steps)]


def _mark_stages(draw: ImageDraw.ImageDraw, spans: list[tuple[int, int]], x_of, top: float, bottom: float) -> None:
    """A dashed line between the last step of a stage and the first of the next, each
    stage's number at its start; nothing for a run of one stage."""
    if len(spans) < 2:
        return
    for number, (start, _) in enumerate(spans, 1):
        x = x_of(start - 0.5) if start else x_of(0)
        if start:
            for y in range(int(top), int(bottom), 8):
                draw.line([x, y, x, min(y + 4, bottom)], fill=STAGE_LINE)
        draw.text((x + 4, top + 4), f"stage {number}", fill=STAGE_LINE)


def strip(paths: list[Path], path: Path, height: int = 128, mark: str | None = None) -> None:
    """The intermediate images side by side, each `height` pixels high; `mark` as for `plot_losses`."""
    frames = []
    for p in paths:
        with Image.open(p) as img:
            frames.append(img.convert("RGB").resize((max(1, round(img.width * height / img.height)), height)))
    if not frames:
        return
    out = Image.new("RGB", (sum(f.width for f in frames), height), "white")
    x = 0
    for frame in frames:
        out.paste(frame, (x, 0))
        x += frame.width
    save_atomic(out, path, mark)
