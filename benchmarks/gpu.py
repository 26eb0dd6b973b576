"""The GPU check, as one script: the chapter's experiment (d2l.toml, 500 steps at 300x450)
in fp32 and bf16, eager and replayed as a CUDA graph, then 2048x2048 and 4096x4096, each
with its steps per second, peak GPU memory and, for the large sizes, stylekit's estimate
made before running (`--dry-run`).

    python benchmarks/gpu.py --images ../shared/data/images --out gpu-out

Everything runs in this one process, one experiment after another; the loop time excludes
loading the weights and computing the targets (both reported). Experiments that fail (out
of memory, say) are reported and the rest go on; the ones left when --budget seconds have
passed are skipped. The chapter outputs are written as PNGs so that they can be scored
with ../shared/bench/judge.py afterwards. With --smoke the same code runs at toy sizes on
whatever device there is, to check the script itself before spending GPU time on it.
"""

from __future__ import annotations

import argparse
import io
import json
import platform
import re
import sys
import time
import traceback
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
from stylekit.errors import UserError  # noqa: E402
from stylekit.plugins.registry import load_registry  # noqa: E402
from stylekit.recipe.overrides import parse_override  # noqa: E402
from stylekit.recipe.load import load_recipe  # noqa: E402
from stylekit.commands.run import dry_run  # noqa: E402
from stylekit.run.session import run_one  # noqa: E402

CHAPTER = "recipes/d2l.toml"


def experiments(smoke: bool) -> list[dict]:
    """(label, recipe, overrides, whether to keep the output) in the order they run: the
    figures the issue asks for first, the optional ones (compile) last."""
    small = (30, 45) if smoke else (300, 450)
    steps = 5 if smoke else 500
    big = [(64, 64), (96, 96)] if smoke else [(2048, 2048), (4096, 4096)]
    big_steps = 2 if smoke else 20

    def chapter(label, *sets, keep=True):
        return {"label": label, "recipe": CHAPTER, "keep": keep, "estimate": False,
                "sets": [f"output.height={small[0]}", f"output.width={small[1]}", f"run.steps={steps}", *sets]}

    def large(label, hw, *sets):
        return {"label": label, "recipe": CHAPTER, "keep": False, "estimate": True,
                "sets": [f"output.height={hw[0]}", f"output.width={hw[1]}", f"run.steps={big_steps}",
                         "run.progress_every=1", *sets]}

    return [
        chapter("chapter fp32 eager", "run.precision='fp32'"),
        chapter("chapter bf16 eager", "run.precision='bf16'"),
        chapter("chapter bf16 graph", "run.precision='bf16'", "run.cuda_graph=true"),
        chapter("chapter fp32 graph", "run.precision='fp32'", "run.cuda_graph=true", keep=False),
        chapter("chapter bf16 graph again", "run.precision='bf16'", "run.cuda_graph=true", keep=False),
        large(f"{big[0][1]}x{big[0][0]} bf16", big[0], "run.precision='bf16'"),
        large(f"{big[1][1]}x{big[1][0]} bf16", big[1], "run.precision='bf16'"),
        large(f"{big[1][1]}x{big[1][0]} bf16 checkpoint", big[1], "run.precision='bf16'", "run.checkpoint=true"),
        large(f"{big[1][1]}x{big[1][0]} fp32", big[1], "run.precision='fp32'"),
        {"label": "gatys bf16 graph", "recipe": "recipes/gatys.toml", "keep": True, "estimate": False,
         "sets": [f"output.height={small[0]}", f"output.width={small[1]}", f"run.steps={2 if smoke else 200}",
                  "run.precision='bf16'", "run.cuda_graph=true", "run.progress_every=0"]},
        chapter("chapter bf16 compile", "run.precision='bf16'", "run.compile=true", keep=False),
    ]


class StepClock:
    """Times the steps after the first WARM ones (compilation and cuDNN autotuning happen in
    the first), with CUDA events where there is a GPU so that nothing waits for it."""

    WARM = 10

    def __init__(self, cuda: bool):
        self.cuda, self.marks = cuda, {}

    def mark(self, step: int) -> None:
        if self.cuda:
            self.marks[step] = torch.cuda.Event(enable_timing=True)
            self.marks[step].record()
        else:
            self.marks[step] = time.perf_counter()

    def steady_steps_per_s(self) -> float | None:
        (first, a), (last, b) = min(self.marks.items()), max(self.marks.items())
        if last == first:
            return None
        if self.cuda:
            torch.cuda.synchronize()
            seconds = a.elapsed_time(b) / 1000
        else:
            seconds = b - a
        return (last - first) / seconds


def describe_device() -> dict:
    info = {"torch": torch.__version__, "python": platform.python_version(), "cuda": torch.cuda.is_available()}
    if torch.cuda.is_available():
        props = torch.cuda.get_device_properties(0)
        info.update(name=props.name, memory_gb=round(props.total_memory / 2**30, 1),
                    capability=f"{props.major}.{props.minor}", multiprocessors=props.multi_processor_count)
    return info


def run_one(spec: dict, args, registry) -> dict:
    sets = [f"images.content='{args.images / 'rainier.jpg'}'", f"images.style='{args.images / 'autumn-oak.jpg'}'",
            f"run.device='{args.device}'", *spec["sets"]]
    output = args.out / (re.sub(r"[^a-z0-9]+", "-", spec["label"].lower()).strip("-") + ".png")
    if not spec["keep"]:
        output = Path("/tmp") / output.name
    sets += [f"output.path='{output}'", "output.record=false"]
    loaded = load_recipe(ROOT / spec["recipe"], registry, dict(parse_override(s) for s in sets))
    row = {"label": spec["label"], "command": f"stylekit run {spec['recipe']} " + " ".join(f"--set {s}" for s in sets[2:])}
    if spec["estimate"]:
        text = io.StringIO()
        found = dry_run(loaded, text)
        row["estimate_gb"] = round(found[0].total / 2**30, 2)
    cuda = torch.cuda.is_available() and args.device != "cpu"
    if cuda:
        torch.cuda.empty_cache()
        torch.cuda.reset_peak_memory_stats()
    log = io.StringIO()
    clock = StepClock(cuda)
    stage_steps = {i + 1: stage.steps for i, stage in enumerate(loaded.stages)}

    def tick(info) -> None:  # the first WARM steps of each stage compile and autotune
        stage_step = info.step - sum(stage_steps[k] for k in range(1, info.stage))
        if stage_step == StepClock.WARM or stage_step == stage_steps[info.stage]:
            clock.mark(info.step)

    started = time.perf_counter()
    result = run_one(loaded, callback=tick)
    if spec["keep"]:
        result.save(output)
    steps = result.steps_done
    steady = clock.steady_steps_per_s()
    seconds, setup = result.record["loop_seconds"], result.record["setup_seconds"]
    row.update(steps=steps, loop_s=round(seconds, 3), setup_s=round(setup, 2),
               wall_s=round(time.perf_counter() - started, 2), steps_per_s=round(steps / seconds, 1),
               steady_steps_per_s=round(steady, 1) if steady else None,
               final_loss=result.history[-1]["total"], output=str(output) if spec["keep"] else None)
    if cuda:
        row["peak_allocated_gb"] = round(torch.cuda.max_memory_allocated() / 2**30, 2)
        row["peak_reserved_gb"] = round(torch.cuda.max_memory_reserved() / 2**30, 2)
    (args.out / "logs.txt").open("a").write(f"== {spec['label']}\n{row['command']}\n{log.getvalue()}\n")
    return row


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--images", type=Path, default=ROOT.parent / "shared" / "data" / "images")
    parser.add_argument("--out", type=Path, default=Path("gpu-out"))
    parser.add_argument("--device", default="cuda")
    parser.add_argument("--budget", type=float, default=420.0, help="seconds; later experiments are skipped")
    parser.add_argument("--smoke", action="store_true", help="toy sizes, to check the script itself")
    parser.add_argument("--only", default="", help="comma-separated label prefixes to run")
    args = parser.parse_args()
    args.images, args.out = args.images.resolve(), args.out.resolve()  # recipes resolve relative paths from their folder
    if not (args.images / "rainier.jpg").exists():
        sys.exit(f"benchmark images missing: {args.images / 'rainier.jpg'} (from ../shared/data/images/)")
    args.out.mkdir(parents=True, exist_ok=True)
    start = time.perf_counter()
    report = {"device": describe_device(), "runs": []}
    print(json.dumps(report["device"]), flush=True)
    registry = load_registry()
    for spec in experiments(args.smoke):
        if args.only and not any(spec["label"].startswith(p) for p in args.only.split(",")):
            continue
        if time.perf_counter() - start > args.budget:
            row = {"label": spec["label"], "skipped": "out of --budget"}
        else:
            try:
                row = run_one(spec, args, registry)
            except (UserError, RuntimeError, torch.OutOfMemoryError) as exc:
                row = {"label": spec["label"], "error": f"{type(exc).__name__}: {str(exc)[:400]}"}
                traceback.print_exc(limit=3)
        report["runs"].append(row)
        print(json.dumps(row), flush=True)
        (args.out / "gpu.json").write_text(json.dumps(report, indent=1))
    print(f"\n{'run':<34}{'steps/s':>9}{'steady':>9}{'loop s':>9}{'setup s':>9}{'peak GB':>9}{'est. GB':>9}")
    for row in report["runs"]:
        if "loop_s" in row:
            print(f"{row['label']:<34}{row['steps_per_s']:>9}{row['steady_steps_per_s'] or '-':>9}{row['loop_s']:>9}{row['setup_s']:>9}"
                  f"{row.get('peak_allocated_gb', '-'):>9}{row.get('estimate_gb', '-'):>9}")
        else:
            print(f"{row['label']:<34}  {row.get('error') or row.get('skipped')}"[:200])
    print(f"total {time.perf_counter() - start:.0f} s")


if __name__ == "__main__":
    main()
