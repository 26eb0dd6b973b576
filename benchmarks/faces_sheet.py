"""Faces at strength 1 (issue 23; docs/quality.md, "Faces at strength 1"): the default recipe on the
four portrait pairs (examples/astronaut.jpg and examples/grace_hopper.jpg, each with Starry Night
and Picasso's seated nude), each output judged by ../shared/bench/judge.py, and one contact sheet:
per portrait a row of the photo and its two outputs, each with its face (the box in FACES)
enlarged under it, so that the eyes, nose, mouth and chin can be judged side by side.

    python benchmarks/faces_sheet.py --width 300 --out bench-out/faces \\
        --sheet docs/images/faces-strength1.jpg

An output already in --out is judged and drawn as it is, not made again (delete it to remake it);
--set KEY=VALUE (repeatable) is passed to every run, e.g. --set 'run.precision="fp32"' with
another --out.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from PIL import Image

from quality_common import EXAMPLES, IMAGES, ROOT, Pair, check_size, judge_cached, output_size, progress, timed
from quality_sheets import SHEET_MAX_BYTES, face_box, figure_lines, tile

PORTRAITS = ("astronaut", "grace_hopper")
#: Both in the public domain (../shared/data/images/README.md), so their outputs may be shown.
PAINTINGS = ("starry_night", "seated-nude")
TILE_WIDTH = 240


def make(pair: Pair, out: Path, width: int, sets: list[str], threads: int, recipe: str = "recipes/gatys.toml") -> dict:
    """`recipe`'s output of `pair` in `out` (made unless it is there), and its figures."""
    image = out / f"{pair.name}.png"
    size = output_size(pair.content, width)
    row = {"pair": pair.name, "image": str(image)}
    if image.exists():
        progress(f"{pair.name}: kept {image}")
    else:
        progress(f"{pair.name}: running {recipe} at {size}")
        cmd = [sys.executable, "-m", "stylekit", "run", recipe, "--content", str(pair.content),
               "--style", str(pair.style), "--width", str(width), "-o", str(image), "-q"]
        row.update(timed(cmd + [arg for s in sets for arg in ("--set", s)], out / f"{pair.name}.log", threads))
    check_size(image, size, "stylekit")
    row["judge"] = judge_cached(image, pair)
    return row


def sheet(rows: dict[str, dict], width: int, path: Path) -> None:
    """One row per portrait: the photo, then its output with each painting, each tile with its face
    enlarged under it; a JPEG under SHEET_MAX_BYTES."""
    cards = []
    for content in PORTRAITS:
        photo = EXAMPLES / f"{content}.jpg"
        size = output_size(photo, width)
        face = face_box(content, size.w, size.h)
        cards.append([tile(photo, (size.w, size.h), TILE_WIDTH, face, f"photo: {content}", [])])
        for style in PAINTINGS:
            row = rows[f"{content}+{style}"]
            cards[-1].append(tile(Path(row["image"]), (size.w, size.h), TILE_WIDTH, face, f"default, style: {style}",
                                  figure_lines(row["judge"])))
    row_h = [max(card.height for card in line) for line in cards]
    columns = max(len(line) for line in cards)
    picture = Image.new("RGB", (columns * (TILE_WIDTH + 4) - 4, sum(row_h) + 4 * (len(cards) - 1)), "white")
    top = 0
    for line, height in zip(cards, row_h):
        for i, card in enumerate(line):
            picture.paste(card, (i * (TILE_WIDTH + 4), top))
        top += height + 4
    path.parent.mkdir(parents=True, exist_ok=True)
    for quality in (85, 75, 65, 55, 45):
        picture.save(path, quality=quality, optimize=True)
        if path.stat().st_size < SHEET_MAX_BYTES:
            break


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--width", type=int, default=300)
    parser.add_argument("--out", type=Path, default=ROOT / "bench-out" / "faces")
    parser.add_argument("--sheet", type=Path, help="the contact sheet (default: OUT/faces-strength1.jpg)")
    parser.add_argument("--set", dest="sets", action="append", default=[], metavar="KEY=VALUE")
    parser.add_argument("--threads", type=int, default=1, help="OMP_NUM_THREADS of each run (default 1)")
    parser.add_argument("--recipe", default="recipes/gatys.toml", help="the recipe run (default: %(default)s)")
    args = parser.parse_args()
    missing = [p for p in [EXAMPLES / f"{c}.jpg" for c in PORTRAITS] + [IMAGES / f"{s}.jpg" for s in PAINTINGS]
               if not p.exists()]
    if missing:
        print(f"faces_sheet.py: missing {', '.join(map(str, missing))} - the paintings are read from "
              f"{IMAGES} (see its README.md)", file=sys.stderr)
        sys.exit(2)
    args.out.mkdir(parents=True, exist_ok=True)
    rows = {}
    for content in PORTRAITS:
        for style in PAINTINGS:
            pair = Pair(EXAMPLES / f"{content}.jpg", IMAGES / f"{style}.jpg")
            rows[pair.name] = make(pair, args.out, args.width, args.sets, args.threads, args.recipe)
    target = args.sheet or args.out / "faces-strength1.jpg"
    sheet(rows, args.width, target)
    (args.out / "faces.json").write_text(json.dumps(rows, indent=1))
    print("| pair | wall s | content | structure | Gram style | SWD style |\n|---|---|---|---|---|---|")
    for name, row in rows.items():
        j, wall = row["judge"], f"{row['wall_s']:.1f}" if "wall_s" in row else "(kept)"
        print(f"| {name} | {wall} | {j['content_dist']:.3f} | {j['structure']:.3f} | {j['style_dist']:.3f} | "
              f"{j['style_swd']:.3f} |")
    progress(f"sheet: {target} ({target.stat().st_size // 1000} KB)")


if __name__ == "__main__":
    main()
