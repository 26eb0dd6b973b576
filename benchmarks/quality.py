"""Quality benchmark: the chapter loop against stylekit's recipes on every content x style pair.

For each pair, in one invocation on one machine:
  chapter  ../shared/bench/seed_reference.py (the chapter's Adam loop, 500 steps), cached per
           pair, size and machine, because it takes 10 to 20 minutes a pair and does not change
           when a recipe does; rerun only with --rerun-chapter
  recipes  `stylekit run RECIPE` for each recipe (and each --sweep value), each in its own
           process, timed as a whole (start-up and model loading included)
then scores every output with ../shared/bench/judge.py (content_dist, structure, style_dist,
style_swd; lower is better) and writes OUT/quality.md (a table per pair), OUT/results.json and
a contact sheet per pair, OUT/sheets/<pair>.jpg.

The chapter loop's wall time in the ratios is an ESTIMATE made in this invocation: the cached
runs were made two at a time while other work loaded the machine, so their times are not
comparable with the recipe runs made now. A short probe (seed_reference.py with --probe-steps
steps, same size and threads as the recipes, once per size: the cost of a step does not depend
on the images) gives the median step time; x 500 is the loop's estimated wall time. That
counts the loop only, not the process's start-up, while a recipe's wall time counts its whole
process, so the ratio is, if anything, strict on the recipes. The cached run's own loop time
(total_s) is shown beside it for reference.

Reproduce (the full table; minutes per pair once the chapter cache is filled):

    python benchmarks/quality.py --width 450 --out bench-out/quality

Fill the chapter cache only, or run a subset, a sweep, or a quick smoke of the plumbing:

    python benchmarks/quality.py --only-chapter
    python benchmarks/quality.py --pairs rainier+autumn-oak,tubingen+seated-nude \\
        --recipes recipes/gatys.toml --sweep strength=0.5,1,2
    python benchmarks/quality.py --width 96 --pairs chelsea+autumn-oak --chapter-steps 5 \\
        --probe-steps 3 --out bench-out/quality-smoke

Cache: bench-out/chapter-cache/<machine>/<content>+<style>-<W>x<H>.{png,json,log} (with
-<N>steps before the suffix when --chapter-steps is not 500, so a smoke never stands in for a
real run); <machine> is the CPU's model name, its widest vector ISA and its CPU count, e.g.
AMD-EPYC-avx2-2cpu. A run writes .partial.png/.partial.json and renames them when done.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import re
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import NoReturn

from PIL import Image, ImageDraw, ImageFont

ROOT = Path(__file__).resolve().parent.parent
SHARED = ROOT.parent / "shared"
IMAGES = SHARED / "data" / "images"
SEED = SHARED / "bench" / "seed_reference.py"
JUDGE = SHARED / "bench" / "judge.py"
DEFAULT_CONTENTS = [IMAGES / "rainier.jpg", IMAGES / "tubingen.jpg", ROOT / "examples" / "chelsea.jpg"]
DEFAULT_STYLES = [IMAGES / f"{name}.jpg" for name in ("autumn-oak", "starry_night", "seated-nude", "frida_kahlo")]
DEFAULT_RECIPES = ["recipes/gatys.toml", "recipes/paper.toml", "recipes/fast.toml"]
#: Paintings under copyright: their pictures are never drawn into a contact sheet.
NOT_SHOWN = {"frida_kahlo"}
CHAPTER_STEPS = 500
FIGURES = ("content_dist", "structure", "style_dist", "style_swd")
FIGURE_NAMES = {"content_dist": "content", "structure": "structure", "style_dist": "Gram style", "style_swd": "SWD style"}
#: A recipe passes on a pair when it is at or below the chapter on every figure in at most
#: this fraction of the chapter loop's wall time (issue 14).
TIME_FRACTION = 0.1
#: A chapter run without its .json whose log changed this recently is still going elsewhere.
FOREIGN_RUN_QUIET_S = 300
SHEET_MAX_BYTES = 200_000
SHEET_TILE_WIDTH, SHEET_COLUMNS = 240, 5


@dataclass(frozen=True)
class Pair:
    content: Path
    style: Path

    @property
    def name(self) -> str:
        return f"{self.content.stem}+{self.style.stem}"


@dataclass(frozen=True)
class Entry:
    """One table row per pair: a recipe with its own --set values."""
    label: str
    recipe: Path
    sets: tuple[str, ...] = ()


@dataclass
class Size:
    w: int
    h: int

    def __str__(self) -> str:
        return f"{self.w}x{self.h}"


# ---- the machine -----------------------------------------------------------------------

def machine_key(model: str, flags: set[str], cpus: int) -> str:
    """'AMD-EPYC-avx2-2cpu': the CPU model (spaces as '-'), its widest vector ISA, its CPU count.
    Chapter runs are cached under it: their step time and (in principle) their rounding depend
    on all three."""
    name = re.sub(r"[^A-Za-z0-9.()+_-]+", "-", model.strip()).strip("-") or "unknown-cpu"
    if any(f.startswith("amx") for f in flags):
        isa = "amx"
    else:
        isa = next((f for f in ("avx512_bf16", "avx512f", "avx2") if f in flags), "other")
    return f"{name}-{isa}-{cpus}cpu"


def this_machine() -> str:
    model, flags = "", set()
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            key, _, value = line.partition(":")
            if key.strip() == "model name" and not model:
                model = value
            elif key.strip() == "flags" and not flags:
                flags = set(value.split())
    except OSError:  # not Linux: the model from the platform module, no flags
        import platform
        model = platform.processor()
    return machine_key(model, flags, os.cpu_count() or 1)


# ---- what to run -----------------------------------------------------------------------

def bad_input(message: str) -> NoReturn:
    print(f"quality.py: {message}", file=sys.stderr)
    sys.exit(2)


def output_size(content: Path, width: int) -> Size:
    """The chapter's size for this photo: `width`, and the height from its aspect, as
    `stylekit run` sizes it (stylekit's own reading of the photo, EXIF orientation applied)."""
    from stylekit.files.images import open_rgb, output_size as stylekit_size

    height, _ = stylekit_size(open_rgb(str(content)), width, None)
    return Size(width, height)


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
        recipe = Path(path).resolve()  # from the current folder, as stylekit's own paths are
        if not recipe.exists():
            bad_input(f"--recipes: {path} does not exist - give recipe files, e.g. recipes/gatys.toml")
        for variant in variants:
            name = label or recipe.stem
            if variant:
                key, _, value = variant[0].partition("=")
                name += f" {key.split('.')[-1]}={value}"  # 'gatys strength=0.5'
            entries.append(Entry(name, recipe, tuple(common_sets) + variant))
    return entries


def thread_env(threads: int) -> dict[str, str]:
    """The environment that gives a torch child process `threads` intra-op threads (stylekit has
    no thread setting; torch reads OMP_NUM_THREADS at start-up)."""
    return {**os.environ, "OMP_NUM_THREADS": str(threads), "MKL_NUM_THREADS": str(threads)}


def timed(cmd: list[str], log: Path, threads: int) -> dict:
    """Run `cmd` with its output in `log`: whole-process wall time and the child's peak RSS."""
    start = time.perf_counter()
    with open(log, "w") as handle:
        proc = subprocess.Popen(cmd, stdout=handle, stderr=subprocess.STDOUT, cwd=ROOT, env=thread_env(threads))
        _, status, usage = os.wait4(proc.pid, 0)
    wall = time.perf_counter() - start
    if status != 0:
        sys.exit(f"quality.py: failed ({os.waitstatus_to_exitcode(status)}): {' '.join(map(str, cmd))}\n  see {log}")
    return {"wall_s": round(wall, 2), "peak_rss_mb": round(usage.ru_maxrss / 1024), "command": " ".join(map(str, cmd))}


def progress(text: str) -> None:
    print(f"[{time.strftime('%H:%M:%S')}] {text}", flush=True)


# ---- the chapter loop ------------------------------------------------------------------

def chapter_base(cache: Path, pair: Pair, size: Size, steps: int) -> Path:
    """The cache's file name without suffix; a run of other than 500 steps is kept apart."""
    tail = "" if steps == CHAPTER_STEPS else f"-{steps}steps"
    return cache / f"{pair.name}-{size}{tail}"


def seed_command(pair: Pair, size: Size, steps: int, threads: int, png: Path, record: Path) -> list[str]:
    return [sys.executable, str(SEED), str(pair.content), str(pair.style), str(png), "--h", str(size.h),
            "--w", str(size.w), "--steps", str(steps), "--threads", str(threads), "--json", str(record)]


def wait_for_foreign_run(base: Path) -> None:
    """Another process (e.g. a background job filling the cache) is making this run: wait for it
    rather than run it twice on a machine with two cores."""
    log = base.with_suffix(".log")  # seed_reference.py writes its files only at the end
    while not base.with_suffix(".json").exists() and log.exists() \
            and time.time() - log.stat().st_mtime < FOREIGN_RUN_QUIET_S:
        last = log.read_text().strip().splitlines()[-1:] or ["(no output yet)"]
        progress(f"waiting: {base.name} is being run by another process ({last[0]})")
        time.sleep(60)


def chapter_run(pair: Pair, size: Size, steps: int, threads: int, cache: Path, rerun: bool) -> dict:
    """The cached chapter run of this pair and size, made now if missing or asked for."""
    base = chapter_base(cache, pair, size, steps)
    png, record = base.with_suffix(".png"), base.with_suffix(".json")
    if not rerun:
        wait_for_foreign_run(base)
    if rerun or not (png.exists() and record.exists()):
        cache.mkdir(parents=True, exist_ok=True)
        progress(f"chapter {pair.name} {size}: running {steps} steps with {threads} thread(s) "
                 f"(10 to 20 min at 450 px on a 2-core CPU), log {base.with_suffix('.log')}")
        partial_png, partial_json = base.with_suffix(".partial.png"), base.with_suffix(".partial.json")
        run = timed(seed_command(pair, size, steps, threads, partial_png, partial_json), base.with_suffix(".log"), threads)
        partial_png.rename(png)
        partial_json.rename(record)
        progress(f"chapter {pair.name} {size}: done in {run['wall_s']:.0f} s")
    else:
        progress(f"chapter {pair.name} {size}: cached ({record})")
    return {"image": str(png), "record": json.loads(record.read_text())}


def probe(pair: Pair, size: Size, steps: int, threads: int, chapter_steps: int, out: Path) -> dict:
    """The chapter loop's step time now, from a short run; median x chapter steps = its estimate."""
    out.mkdir(parents=True, exist_ok=True)
    png, record = out / f"probe-{size}.png", out / f"probe-{size}.json"
    progress(f"probe {size}: {steps} chapter steps with {threads} thread(s)")
    run = timed(seed_command(pair, size, steps, threads, png, record), out / f"probe-{size}.log", threads)
    median = json.loads(record.read_text())["median_step_s"]
    progress(f"probe {size}: median {median:.3f} s/step -> chapter loop ~{median * chapter_steps:.0f} s")
    return {"steps": steps, "threads": threads, "median_step_s": median,
            "estimated_loop_s": round(median * chapter_steps, 1), "process_wall_s": run["wall_s"]}


# ---- judge -----------------------------------------------------------------------------

def judge(image: Path, pair: Pair) -> dict:
    done = subprocess.run([sys.executable, str(JUDGE), str(image), str(pair.content), str(pair.style)],
                          capture_output=True, text=True, cwd=ROOT)
    if done.returncode != 0:
        sys.exit(f"quality.py: judge.py failed on {image}:\n{done.stderr[-2000:]}")
    figures = json.loads(done.stdout.strip().splitlines()[-1])
    return {k: figures[k] for k in FIGURES}


def judge_cached(image: Path, pair: Pair) -> dict:
    """The judge's figures for a cached chapter image, kept beside it (<name>.judge.json) and
    redone when the image or judge.py changes."""
    key = hashlib.sha256(JUDGE.read_bytes() + image.read_bytes()).hexdigest()
    saved = image.with_suffix(".judge.json")
    if saved.exists():
        kept = json.loads(saved.read_text())
        if kept.get("key") == key:
            return kept["figures"]
    figures = judge(image, pair)
    saved.write_text(json.dumps({"key": key, "figures": figures}))
    return figures


# ---- recipes ---------------------------------------------------------------------------

def size_sets(recipe: Path, size: Size) -> list[str]:
    """--set values that make the recipe's output `size`. Stages override output.width/height,
    so with stages the last one is set to `size` and earlier ones are scaled with it (the
    recipe's coarse-to-fine ratios are kept)."""
    import tomllib

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
    for value in [*size_sets(entry.recipe, size), *entry.sets]:
        cmd += ["--set", value]
    return cmd


def check_recipes(entries: list[Entry], pair: Pair, size: Size) -> None:
    """`stylekit run --dry-run` of every row before anything long runs, so that a mistyped
    --set or --sweep fails now, not after an hour of runs."""
    for entry in entries:
        done = subprocess.run([*recipe_command(entry, pair, size, Path(tempfile.gettempdir()) / "dry-run.png"), "--dry-run"],
                              capture_output=True, text=True, cwd=ROOT)
        if done.returncode != 0:
            bad_input(f"{entry.label}: stylekit refuses it:\n{done.stderr.strip()}")


def run_recipe(entry: Entry, pair: Pair, size: Size, threads: int, out: Path) -> dict:
    png = out / "images" / pair.name / f"{re.sub(r'[^A-Za-z0-9.=_-]+', '_', entry.label)}.png"
    png.parent.mkdir(parents=True, exist_ok=True)
    run = timed(recipe_command(entry, pair, size, png), png.with_suffix(".log"), threads)
    with Image.open(png) as img:
        if img.size != (size.w, size.h):
            sys.exit(f"quality.py: {entry.label} wrote {img.width}x{img.height}, not {size}: see {png}")
    return {"label": entry.label, "recipe": str(entry.recipe.relative_to(ROOT) if entry.recipe.is_relative_to(ROOT)
                                                 else entry.recipe),
            "sets": list(entry.sets), "image": str(png), **run}


# ---- verdicts and tables ---------------------------------------------------------------

def verdict(row: dict, chapter: dict, chapter_wall_s: float) -> dict:
    """Whether the row is at or below the chapter on every figure, and within the time."""
    figures = all(row["judge"][k] <= chapter["judge"][k] for k in FIGURES)
    in_time = row["wall_s"] <= TIME_FRACTION * chapter_wall_s
    return {"all_figures": figures, "in_time": in_time, "passes": figures and in_time}


def pair_table(result: dict) -> str:
    """One pair's markdown table."""
    chapter, probe_ = result["chapter"], result["probe"]
    est = probe_["estimated_loop_s"]
    lines = [f"### {result['pair']} at {result['size']}", "",
             f"Chapter loop ({chapter['record']['steps']} steps): {est:.0f} s estimated now "
             f"({probe_['median_step_s']:.3f} s/step, the median of a {probe_['steps']}-step probe, "
             f"x {chapter['record']['steps']}). For reference, the cached run's own loop took "
             f"{chapter['record']['total_s']:.0f} s, made at another time under other load.", "",
             "| run | wall s | / chapter | content | structure | Gram style | SWD style | beats |",
             "|---|---|---|---|---|---|---|---|"]
    j = chapter["judge"]
    lines.append(f"| chapter loop | {est:.0f} (est.) | 1 | " + " | ".join(f"{j[k]:.3f}" for k in FIGURES) + " | |")
    for row in result["recipes"]:
        j = row["judge"]
        cells = [f"**{j[k]:.3f}**" if j[k] <= chapter["judge"][k] else f"{j[k]:.3f}" for k in FIGURES]
        mark = "✓" if row["verdict"]["passes"] else ""
        lines.append(f"| {row['label']} | {row['wall_s']:.1f} | {row['wall_s'] / est:.3f} | " + " | ".join(cells)
                     + f" | {mark} |")
    return "\n".join(lines)


def summary(results: list[dict]) -> list[str]:
    """Per recipe: on how many pairs it passes, and on how many it meets each half."""
    labels = list(dict.fromkeys(row["label"] for r in results for row in r["recipes"]))
    lines = []
    for label in labels:
        rows = [row for r in results for row in r["recipes"] if row["label"] == label]
        count = lambda key: sum(row["verdict"][key] for row in rows)
        lines.append(f"- **{label}**: at or below the chapter on all four figures within 1/10 of its time on "
                     f"**{count('passes')} of {len(rows)}** pairs (all four figures: {count('all_figures')}; "
                     f"within the time: {count('in_time')})")
    return lines


def markdown(results: list[dict], meta: dict) -> str:
    head = ["# Quality benchmark", "",
            f"Machine {meta['machine']}, {meta['threads']} thread(s), {meta['date']}. Lower is better for every "
            "figure (`../shared/bench/judge.py`); **bold**: at or below the chapter loop; ✓: at or below it on all "
            f"four figures in at most 1/10 of its wall time. Recipe wall times are whole processes; the chapter's is "
            "its loop alone, estimated from a probe in the same invocation (see benchmarks/quality.py).", "",
            f"    {meta['command']}", ""]
    body = [pair_table(r) + "\n" for r in results]
    return "\n".join(head + body + ["## Summary", ""] + summary(results)) + "\n"


# ---- contact sheets --------------------------------------------------------------------

def font(size: int) -> ImageFont.ImageFont:
    try:
        return ImageFont.load_default(size=size)
    except TypeError:  # Pillow before 10.1: a fixed bitmap font
        return ImageFont.load_default()


def tile(image: Path | None, width: int, height: int, title: str, lines: list[str]) -> Image.Image:
    """An image scaled to `width` x `height` with its title and figures under it."""
    text_h = 16 * (1 + len(lines)) + 4
    card = Image.new("RGB", (width, height + text_h), "white")
    draw = ImageDraw.Draw(card)
    if image is not None:
        with Image.open(image) as img:
            card.paste(img.convert("RGB").resize((width, height), Image.LANCZOS), (0, 0))
    else:
        draw.rectangle((0, 0, width - 1, height - 1), fill=(235, 235, 235))
        draw.multiline_text((8, height // 2 - 16), "style image not shown:\nunder copyright", fill="black", font=font(12))
    draw.text((4, height + 2), title, fill="black", font=font(13))
    for i, line in enumerate(lines):
        draw.text((4, height + 18 + 16 * i), line, fill=(60, 60, 60), font=font(12))
    return card


def figure_lines(judge_: dict) -> list[str]:
    return [f"content {judge_['content_dist']:.3f}  struct {judge_['structure']:.3f}",
            f"Gram {judge_['style_dist']:.3f}  SWD {judge_['style_swd']:.3f}"]


def contact_sheet(result: dict, pair: Pair, path: Path) -> None:
    """Content, style (not for paintings under copyright), chapter and each recipe side by side,
    SHEET_COLUMNS to a row; a JPEG under SHEET_MAX_BYTES."""
    w, h = result["size_wh"]
    tw, th = SHEET_TILE_WIDTH, round(h * SHEET_TILE_WIDTH / w)
    chapter = result["chapter"]
    style_shown = pair.style.stem not in NOT_SHOWN
    tiles = [tile(pair.content, tw, th, f"content: {pair.content.stem}", []),
             tile(pair.style if style_shown else None, tw, th, f"style: {pair.style.stem}", []),
             tile(Path(chapter["image"]), tw, th, f"chapter loop, ~{result['probe']['estimated_loop_s']:.0f} s",
                  figure_lines(chapter["judge"]))]
    for row in result["recipes"]:
        mark = ", passes" if row["verdict"]["passes"] else ""
        tiles.append(tile(Path(row["image"]), tw, th, f"{row['label']}, {row['wall_s']:.0f} s{mark}",
                          figure_lines(row["judge"])))
    columns, card_h = min(len(tiles), SHEET_COLUMNS), max(t.height for t in tiles)
    rows = -(-len(tiles) // columns)
    sheet = Image.new("RGB", (columns * (tw + 4) - 4, rows * (card_h + 4) - 4), "white")
    for i, t in enumerate(tiles):
        sheet.paste(t, ((i % columns) * (tw + 4), (i // columns) * (card_h + 4)))
    path.parent.mkdir(parents=True, exist_ok=True)
    for quality in (85, 75, 65, 55, 45):
        sheet.save(path, quality=quality, optimize=True)
        if path.stat().st_size < SHEET_MAX_BYTES:
            break
    result["sheet"] = {"path": str(path), "style_shown": style_shown, "bytes": path.stat().st_size}


# ---- main ------------------------------------------------------------------------------

def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0],
                                formatter_class=argparse.RawDescriptionHelpFormatter, epilog=__doc__.split("\n\n", 1)[1])
    p.add_argument("--contents", help="comma-separated content photos (default: rainier, tubingen, chelsea)")
    p.add_argument("--styles", help="comma-separated style paintings (default: every painting in ../shared/data/images)")
    p.add_argument("--pairs", help="only these pairs, e.g. rainier+autumn-oak,tubingen+seated-nude (file stems)")
    p.add_argument("--width", type=int, default=450, help="output width; the height follows the content's aspect")
    p.add_argument("--recipes", help="comma-separated [LABEL=]PATH (default: recipes/gatys.toml, recipes/paper.toml "
                                     "if it exists, recipes/fast.toml)")
    p.add_argument("--set", action="append", default=[], metavar="KEY=VALUE", help="passed to every stylekit run")
    p.add_argument("--sweep", metavar="KEY=V1,V2,...", help="run each recipe once per value, as rows of their own")
    p.add_argument("--threads", type=int, default=os.cpu_count(), help="threads for the recipes and the probe "
                                                                      "(default: all cores)")
    p.add_argument("--chapter-steps", type=int, default=CHAPTER_STEPS,
                   help="steps of the chapter loop (fewer only for a smoke run; cached apart)")
    p.add_argument("--chapter-threads", type=int, default=1, help="threads of a chapter run made for the cache "
                                                                  "(its figures do not depend on them)")
    p.add_argument("--probe-steps", type=int, default=12, help="steps of the timing probe of the chapter loop")
    p.add_argument("--rerun-chapter", action="store_true", help="run the chapter loop again even when cached")
    p.add_argument("--only-chapter", "--skip-recipes", dest="only_chapter", action="store_true",
                   help="fill the chapter cache and stop (no probe, recipes, judge or table)")
    p.add_argument("--cache", type=Path, help="chapter cache folder (default: bench-out/chapter-cache/<machine>)")
    p.add_argument("--out", type=Path, default=ROOT / "bench-out" / "quality", help="results folder")
    return p.parse_args(argv)


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
    pairs = select_pairs(contents, styles, args.pairs)
    machine = this_machine()
    cache = args.cache or ROOT / "bench-out" / "chapter-cache" / machine
    sizes = {pair: output_size(pair.content, args.width) for pair in pairs}
    progress(f"{len(pairs)} pair(s) on {machine}; chapter cache {cache}")
    entries = []
    if not args.only_chapter:
        default = [str(ROOT / r) for r in DEFAULT_RECIPES if (ROOT / r).exists()]
        entries = recipe_entries(args.recipes.split(",") if args.recipes else default, args.set, args.sweep)
        check_recipes(entries, pairs[0], sizes[pairs[0]])

    chapters = {pair: chapter_run(pair, sizes[pair], args.chapter_steps, args.chapter_threads, cache,
                                  args.rerun_chapter) for pair in pairs}
    if args.only_chapter:
        return
    out = args.out.resolve()
    probes: dict[str, dict] = {}
    results = []
    for n, pair in enumerate(pairs, 1):
        size = sizes[pair]
        if str(size) not in probes:  # one per size: a step's cost does not depend on the images
            probes[str(size)] = probe(pair, size, args.probe_steps, args.threads, args.chapter_steps, out / "probes")
        chapter = {**chapters[pair], "judge": judge_cached(Path(chapters[pair]["image"]), pair)}
        rows = []
        for entry in entries:
            progress(f"pair {n}/{len(pairs)} {pair.name} {size} {entry.label}: running")
            row = run_recipe(entry, pair, size, args.threads, out)
            row["judge"] = judge(Path(row["image"]), pair)
            row["verdict"] = verdict(row, chapter, probes[str(size)]["estimated_loop_s"])
            progress(f"pair {n}/{len(pairs)} {pair.name} {size} {entry.label}: {row['wall_s']:.1f} s, "
                     + ", ".join(f"{k} {row['judge'][k]:.3f}" for k in FIGURES)
                     + (" (beats the chapter)" if row["verdict"]["passes"] else ""))
            rows.append(row)
        result = {"pair": pair.name, "content": str(pair.content), "style": str(pair.style), "size": str(size),
                  "size_wh": [size.w, size.h], "chapter": chapter, "probe": probes[str(size)], "recipes": rows}
        contact_sheet(result, pair, out / "sheets" / f"{pair.name}.jpg")
        results.append(result)

    meta = {"machine": machine, "threads": args.threads, "date": time.strftime("%Y-%m-%d"),
            "command": "python benchmarks/quality.py " + " ".join(argv if argv is not None else sys.argv[1:])}
    (out / "results.json").write_text(json.dumps({"meta": meta, "pairs": results}, indent=1))
    (out / "quality.md").write_text(markdown(results, meta))
    print("\n" + "\n".join(summary(results)))
    progress(f"wrote {out / 'quality.md'}, {out / 'results.json'} and {out / 'sheets'}/")


if __name__ == "__main__":
    main()
