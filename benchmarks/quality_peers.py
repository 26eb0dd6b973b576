"""The peers of benchmarks/quality.py: the chapter's loop (../shared/bench/seed_reference.py)
and pastiche's own CLI with its defaults. Each peer's run of a pair is cached per pair, size and
machine, because it takes many minutes and does not change when a recipe does; its wall time in
the ratios is estimated in the invocation that uses it, from a short probe at the same size and
thread count (the step time x the cached run's steps: the loop alone, while stylekit is timed as
a whole process, so the ratio is if anything strict on stylekit).

Cache files: <base>.png, .json (the run's record), .log, .judge.json (the judge's figures), and
for pastiche .content.png (the photo at the output size). A run writes .partial.png first and
renames it when done, so an interrupted run never stands in for a finished one."""

from __future__ import annotations

import json
import re
import sys
import time
from importlib import metadata
from pathlib import Path
from typing import Callable

from PIL import Image

from quality_common import SEED, Pair, Size, check_size, progress, timed

CHAPTER_STEPS = 500
#: pastiche's own number of steps (its --num-steps default; tests/test_quality_bench.py checks it
#: against the installed pastiche), passed explicitly so that every run's record knows its steps.
PASTICHE_STEPS = 1000
PEERS = {"chapter": "chapter loop", "pastiche": "pastiche"}
#: A run without its .json whose log changed this recently is still going elsewhere.
FOREIGN_RUN_QUIET_S = 300
#: pastiche prints a progress line every this many steps in a cached run, so that another
#: process sees the run alive well within FOREIGN_RUN_QUIET_S (printing changes nothing else).
PASTICHE_INFO_STEP = 10


def pastiche_version() -> str:
    return metadata.version("pastiche")


def steps_tail(steps: int, default: int) -> str:
    """'' for a peer's own number of steps, '-<N>steps' otherwise: a smoke run is kept apart."""
    return "" if steps == default else f"-{steps}steps"


def chapter_base(cache: Path, pair: Pair, size: Size, steps: int) -> Path:
    """The chapter cache's file name without suffix."""
    return cache / f"{pair.name}-{size}{steps_tail(steps, CHAPTER_STEPS)}"


def pastiche_base(cache: Path, pair: Pair, size: Size, steps: int, version: str) -> Path:
    """The pastiche cache's file name without suffix; each version of pastiche in its own folder
    (a new version may draw differently), and a run of other than pastiche's own number of
    steps kept apart."""
    return cache / f"pastiche-{version}" / f"{pair.name}-{size}{steps_tail(steps, PASTICHE_STEPS)}"


def wait_for_foreign_run(base: Path) -> None:
    """Another process (e.g. a background job filling the cache) is making this run: wait for it
    rather than run it twice on a machine with two cores."""
    log = base.with_suffix(".log")  # the record is written only at the end
    while not base.with_suffix(".json").exists() and log.exists() \
            and time.time() - log.stat().st_mtime < FOREIGN_RUN_QUIET_S:
        last = log.read_text().strip().splitlines()[-1:] or ["(no output yet)"]
        progress(f"waiting: {base.name} is being run by another process ({last[0]})")
        time.sleep(60)


def cached_run(what: str, base: Path, command: Callable[[Path, Path], list[str]], threads: int, rerun: bool,
               size: Size, known: dict) -> dict:
    """The cached run at `base`, made now if missing or asked for. `command(png, record)` makes
    the run; its record is what the run wrote to `record` (if anything), the whole-process time
    and what is `known` of it (its steps, a version)."""
    png, record, log = base.with_suffix(".png"), base.with_suffix(".json"), base.with_suffix(".log")
    if not rerun:
        wait_for_foreign_run(base)
    if rerun or not (png.exists() and record.exists()):
        base.parent.mkdir(parents=True, exist_ok=True)
        progress(f"{what}: running with {threads} thread(s) (many minutes at 300 px or more on a 2-core CPU), log {log}")
        partial_png, partial_json = base.with_suffix(".partial.png"), base.with_suffix(".partial.json")
        partial_json.unlink(missing_ok=True)
        run = timed(command(partial_png, partial_json), log, threads)
        check_size(partial_png, size, what)
        own = json.loads(partial_json.read_text()) if partial_json.exists() else {}
        partial_png.rename(png)
        record.write_text(json.dumps({**run, "threads": threads, **known, **own}))
        partial_json.unlink(missing_ok=True)
        progress(f"{what}: done in {run['wall_s']:.0f} s")
    else:
        progress(f"{what}: cached ({record})")
    return {"image": str(png), "record": json.loads(record.read_text())}


# ---- the chapter's loop ----------------------------------------------------------------

def seed_command(pair: Pair, size: Size, steps: int, threads: int, png: Path, record: Path) -> list[str]:
    return [sys.executable, str(SEED), str(pair.content), str(pair.style), str(png), "--h", str(size.h),
            "--w", str(size.w), "--steps", str(steps), "--threads", str(threads), "--json", str(record)]


def chapter_run(pair: Pair, size: Size, steps: int, threads: int, cache: Path, rerun: bool) -> dict:
    base = chapter_base(cache, pair, size, steps)
    return cached_run(f"chapter {pair.name} {size} ({steps} steps)", base,
                      lambda png, record: seed_command(pair, size, steps, threads, png, record), threads, rerun, size,
                      {"steps": steps})


def chapter_probe(pair: Pair, size: Size, steps: int, threads: int, out: Path) -> dict:
    """The chapter loop's step time now, from a short run (its median step)."""
    out.mkdir(parents=True, exist_ok=True)
    png, record = out / f"chapter-{size}.png", out / f"chapter-{size}.json"
    run = timed(seed_command(pair, size, steps, threads, png, record), out / f"chapter-{size}.log", threads)
    return {"steps": steps, "threads": threads, "step_s": json.loads(record.read_text())["median_step_s"],
            "how": "median", "process_wall_s": run["wall_s"]}


# ---- pastiche --------------------------------------------------------------------------

def sized_content(pair: Pair, size: Size, path: Path) -> Path:
    """The photo at exactly the output size, EXIF orientation applied as stylekit reads it.
    pastiche sizes by its longest side with its own rounding, which can miss the other side by
    a pixel, and reads no EXIF orientation; given this picture and --size max(W, H) it works at
    exactly W x H (its own resize is then the identity), so the judge sees the same photo.
    Written each time (it is cheap), so that it is never an older photo of the same name."""
    from stylekit.files.images import open_rgb  # torch comes with stylekit: only when a run is made

    path.parent.mkdir(parents=True, exist_ok=True)
    open_rgb(str(pair.content)).resize((size.w, size.h), Image.LANCZOS).save(path)
    return path


def pastiche_command(content: Path, style: Path, size: Size, png: Path, steps: int, info_step: int) -> list[str]:
    """pastiche with its defaults (L-BFGS, its layers and weights, style at the output's pixel
    count); only the size, how often it prints, and the number of steps (its own but in a smoke
    run) are given."""
    return [sys.executable, "-m", "pastiche", "--content", str(content), "--styles", str(style), "--output", str(png),
            "--size", str(max(size.w, size.h)), "--info-step", str(info_step), "--num-steps", str(steps)]


def pastiche_progress(log_text: str) -> list[tuple[int, float]]:
    """(step, seconds since start) from pastiche's table of 'step elapsed loss' lines."""
    rows = re.findall(r"^(\d+)\s+(\d+(?:\.\d+)?)\s+\S+\s*$", log_text, re.MULTILINE)
    return [(int(step), float(elapsed)) for step, elapsed in rows]


def pastiche_step_s(rows: list[tuple[int, float]]) -> float:
    """The mean step time from step 1 to the last: pastiche prints its elapsed time to 0.1 s,
    too coarse for one step's time at small sizes, so the median of single steps would be
    quantized; over the whole probe the rounding is 0.1 s in all."""
    steps = [(s, t) for s, t in rows if s >= 1]
    if len(steps) < 2 or steps[-1][0] == steps[0][0]:
        sys.exit(f"quality.py: pastiche's log has too few steps to time ({len(steps)}); give --probe-steps 3 or more")
    (first, t0), (last, t1) = steps[0], steps[-1]
    return (t1 - t0) / (last - first)


def pastiche_run(pair: Pair, size: Size, steps: int, threads: int, cache: Path, rerun: bool) -> dict:
    version = pastiche_version()
    base = pastiche_base(cache, pair, size, steps, version)
    content = sized_content(pair, size, base.with_suffix(".content.png"))
    return cached_run(f"pastiche {pair.name} {size} ({steps} steps)", base,
                      lambda png, _: pastiche_command(content, pair.style, size, png, steps, PASTICHE_INFO_STEP),
                      threads, rerun, size, {"steps": steps, "version": version})


def pastiche_probe(pair: Pair, size: Size, steps: int, threads: int, out: Path) -> dict:
    """pastiche's step time now, from a short run printing every step."""
    content = sized_content(pair, size, out / f"pastiche-{size}-content.png")
    log = out / f"pastiche-{size}.log"
    run = timed(pastiche_command(content, pair.style, size, out / f"pastiche-{size}.png", steps, 1), log, threads)
    return {"steps": steps, "threads": threads, "step_s": pastiche_step_s(pastiche_progress(log.read_text())),
            "how": "mean", "process_wall_s": run["wall_s"]}


# ---- a peer's row of a pair ------------------------------------------------------------

def peer_row(key: str, run: dict, judge_: dict, probe: dict) -> dict:
    """A peer as a pair's table reads it: figures, and the loop's wall time estimated now."""
    steps = run["record"].get("steps")
    if not steps:
        sys.exit(f"quality.py: the cached {key} run {run['image']} has no step count in its record; "
                 f"rerun it with --rerun-peers")
    return {"key": key, "label": PEERS[key], "image": run["image"], "record": run["record"], "judge": judge_,
            "probe": probe, "steps": steps, "wall_s": round(probe["step_s"] * steps, 1)}


def probe_text(peer: dict) -> str:
    """How a peer's wall time was estimated, for the table's notes."""
    probe, record = peer["probe"], peer["record"]
    cached = record.get("total_s", record.get("wall_s"))
    then = f"; the cached run itself took {cached:.0f} s, made at another time under other load" if cached else ""
    return (f"{peer['label']} ({peer['steps']} steps): {peer['wall_s']:.0f} s estimated now, {probe['step_s']:.3f} "
            f"s/step (the {probe['how']} of a {probe['steps']}-step probe with {probe['threads']} thread(s)) "
            f"x {peer['steps']}{then}.")
