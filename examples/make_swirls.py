"""Paints the example style images: brush strokes along a swirling flow field, in the
manner of a post-impressionist sky. Deterministic; run it to re-create the files.

    python examples/make_swirls.py          # examples/swirls.jpg (blues and yellows)
    python examples/make_swirls.py embers   # examples/embers.jpg (reds and oranges)
"""

import math
import random
import sys
from pathlib import Path

from PIL import Image, ImageDraw, ImageFilter

WIDTH, HEIGHT = 512, 384
PALETTES = {
    "swirls": [(24, 44, 99), (38, 74, 148), (70, 118, 186), (126, 170, 214), (226, 196, 84),
               (240, 224, 150), (28, 60, 52), (200, 120, 40), (16, 24, 48)],
    "embers": [(90, 20, 16), (150, 36, 20), (200, 70, 30), (236, 130, 50), (250, 210, 120),
               (255, 240, 200), (40, 16, 30), (120, 60, 140), (24, 10, 14)],
}
PALETTE = PALETTES["swirls"]
# Centres of the swirls: (x, y, strength); the flow turns around each.
VORTICES = [(140, 110, 1.0), (360, 90, -0.8), (260, 230, 0.9), (430, 300, -1.0), (70, 300, 0.7)]


def flow_angle(x: float, y: float) -> float:
    angle = 0.6 * math.sin(y / 40) + 0.3 * math.cos(x / 55)
    for cx, cy, strength in VORTICES:
        dx, dy = x - cx, y - cy
        r2 = dx * dx + dy * dy + 400
        weight = strength * 9000 / r2
        angle += weight * (math.atan2(dy, dx) + math.pi / 2 - angle) / (1 + abs(weight))
    return angle


def colour(x: float, y: float, rng: random.Random) -> tuple[int, int, int]:
    near = min(math.hypot(x - cx, y - cy) for cx, cy, _ in VORTICES)
    if near < 28:
        base = PALETTE[rng.choice([4, 5, 7])]
    elif y > HEIGHT * 0.78:
        base = PALETTE[rng.choice([6, 8, 1])]
    else:
        base = PALETTE[rng.choice([0, 1, 1, 2, 2, 3, 5])]
    return tuple(max(0, min(255, c + rng.randint(-18, 18))) for c in base)


def main(name: str = "swirls") -> None:
    global PALETTE
    PALETTE = PALETTES[name]
    rng = random.Random(7 if name == "swirls" else 11)
    img = Image.new("RGB", (WIDTH, HEIGHT), PALETTE[1])
    draw = ImageDraw.Draw(img)
    for _ in range(9000):
        x, y = rng.uniform(0, WIDTH), rng.uniform(0, HEIGHT)
        points = [(x, y)]
        for _ in range(rng.randint(4, 9)):
            a = flow_angle(x, y)
            x, y = x + 4 * math.cos(a), y + 4 * math.sin(a)
            points.append((x, y))
        draw.line(points, fill=colour(*points[0], rng), width=rng.randint(2, 5), joint="curve")
    img = img.filter(ImageFilter.SMOOTH)
    img.save(Path(__file__).with_name(f"{name}.jpg"), quality=90)


if __name__ == "__main__":
    main(*sys.argv[1:2])
