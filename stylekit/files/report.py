"""Pictures of a run: the loss curves (log scale, one line per term, like the chapter's
plot of content, style and TV loss by epoch) and a strip of the intermediate images.
Drawn with Pillow, so no plotting library is needed."""

from __future__ import annotations

import math
from pathlib import Path

from PIL import Image, ImageDraw

from stylekit.files.images import save_atomic

COLOURS = [(31, 119, 180), (255, 127, 14), (44, 160, 44), (214, 39, 40), (148, 103, 189), (140, 86, 75), (227, 119, 194)]


def plot_losses(history: list[dict[str, float]], path: Path, size: tuple[int, int] = (640, 400),
                mark: str | None = None) -> None:
    """`mark`: the output image the plot is written for (see `save_atomic`)."""
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
    for i, label in enumerate(labels):
        colour = COLOURS[i % len(COLOURS)]
        points = [xy(s, row[label]) for s, row in enumerate(history) if row[label] > 0]
        if len(points) > 1:
            draw.line(points, fill=colour, width=2)
        draw.line([width - right + 10, top + 16 * i + 6, width - right + 30, top + 16 * i + 6], fill=colour, width=3)
        draw.text((width - right + 36, top + 16 * i), label, fill="black")
    save_atomic(img, path, mark)


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
