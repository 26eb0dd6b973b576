"""Pictures of the controls for docs/controls.md: each control run on the example images
(examples/chelsea.jpg + examples/swirls.jpg) at a small size, composed into one grid.

    python benchmarks/gallery.py --width 256 --steps 80 --out docs/images

Writes OUT/controls.jpg (the grid), and OUT/losses.png and OUT/strip.jpg (the loss plot
and the strip of intermediate images of the first run).
"""

import argparse
import subprocess
import sys
from pathlib import Path

from PIL import Image, ImageDraw

ROOT = Path(__file__).resolve().parent.parent
VARIANTS = [  # (caption, stylekit run arguments)
    ("gatys.toml", []),
    ("preserve_colors = luminance", ["--set", "images.preserve_colors=luminance"]),
    ("preserve_colors = histogram", ["--set", "images.preserve_colors=histogram"]),
    ("style_scale = 0.5", ["--set", "images.style_scale=0.5"]),
    ("style_scale = 2", ["--set", "images.style_scale=2.0"]),
    ("style masks: left only", ["--set", "images.style_masks=['masks/left.png']"]),
    ("two styles, weights 1:1", ["--style", "examples/swirls.jpg", "--style", "examples/embers.jpg"]),
    ("masks: swirls left, embers right", ["--style", "examples/swirls.jpg", "--style", "examples/embers.jpg",
                                          "--set", "images.style_masks=['masks/left.png', 'masks/right.png']"]),
    ("init = noise", ["--set", "images.init=noise"]),
    # The steps of the two stages add up to --steps, which every run is given.
    ("stages 128 -> W", ["--set", "stage=[{width=128, steps=COARSE}, {width=WIDTH, steps=FINE}]"]),
    ("stage[1].carry = image", ["--set", 'stage[1].carry="image"']),
    ("ema_decay = 0.9", ["--set", "run.ema_decay=0.9"]),
]


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--width", type=int, default=256)
    parser.add_argument("--steps", type=int, default=80)
    parser.add_argument("--out", default="docs/images")
    args = parser.parse_args()
    out = Path(args.out).resolve()
    work = ROOT / "bench-out" / "gallery"
    (work / "masks").mkdir(parents=True, exist_ok=True)
    with Image.open(ROOT / "examples" / "chelsea.jpg") as content:
        mask = Image.new("L", content.size, 0)
    mask.paste(255, (0, 0, mask.width // 2, mask.height))
    mask.save(work / "masks" / "left.png")
    Image.eval(mask, lambda v: 255 - v).save(work / "masks" / "right.png")

    tiles = []
    for i, (caption, extra) in enumerate(VARIANTS):
        extra = [a.replace("COARSE", str(args.steps - args.steps // 3)).replace("FINE", str(args.steps // 3))
                 .replace("WIDTH", str(args.width))
                 .replace("masks/", str(work / "masks") + "/") for a in extra]
        target = work / f"v{i}.png"
        cmd = [str(Path(sys.executable).parent / "stylekit"), "run", "recipes/gatys.toml", "-o", str(target),
               "--set", f"output.width={args.width}", "--steps", str(args.steps), "--set", "run.progress_every=0", *extra]
        if i == 0:
            cmd += ["--set", "output.plot=true", "--set", f"output.save_every={max(1, args.steps // 6)}"]
        print(" ".join(cmd), flush=True)
        subprocess.run(cmd, check=True, cwd=ROOT)
        tiles.append((caption, Image.open(target).convert("RGB")))

    w, h = tiles[0][1].size
    cols = 3
    rows = (len(tiles) + cols - 1) // cols
    grid = Image.new("RGB", (cols * (w + 6), rows * (h + 22)), "white")
    draw = ImageDraw.Draw(grid)
    for i, (caption, tile) in enumerate(tiles):
        x, y = (i % cols) * (w + 6), (i // cols) * (h + 22)
        grid.paste(tile.resize((w, h)), (x, y + 18))
        draw.text((x + 2, y + 3), caption, fill="black")
    out.mkdir(parents=True, exist_ok=True)
    grid.save(out / "controls.jpg", quality=85)
    Image.open(work / "v0.losses.png").save(out / "losses.png")
    Image.open(work / "v0.strip.png").convert("RGB").save(out / "strip.jpg", quality=85)


if __name__ == "__main__":
    main()
