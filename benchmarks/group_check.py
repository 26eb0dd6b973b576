"""The GPU check of a recorded group (`stylekit batch --batch-size N` with run.cuda_graph):
for each optimizer and precision, the same group of images optimized with the stacked pass
eager and recorded as a CUDA graph, in one run: how far apart their images and loss rows
come out, and the seconds of each; then a group in which one image diverges at the first
step, which must be recorded again for the others and leave them as the eager pass does.

    python benchmarks/group_check.py --batch 8 --width 256 --steps 30

On a CPU there is no graph to record (run.cuda_graph is ignored there), so this needs a GPU;
the CPU suite checks the same bookkeeping with an imitation (tests/test_together.py).
"""

import argparse
import dataclasses
import time

import torch

import stylekit
import stylekit.run.passes
from stylekit.run.build import build_backbone, build_objective, build_optimizer, build_scheduler, stage_images
from stylekit.run.engine import Diverged, LoopOptions
from stylekit.run.loop import optimize_group

CONFIGS = {  # optimizer settings -> what steps the group
    "lbfgs": {"optimizer.name": "lbfgs", "scheduler.name": "none"},  # one BatchedLBFGS
    "adam+cosine": {"optimizer.name": "adam", "optimizer.params": {"lr": 0.02}, "scheduler.name": "cosine"},
}


def group(args, precision: str, config: dict, overflow: int | None = None):
    plan = stylekit.load(args.recipe, {"output.width": args.width, "run.precision": precision, **config})
    stage = plan.stages[-1]
    backbone = build_backbone(plan)
    inputs = stage_images(plan, stage)
    objectives = []
    for k in range(args.batch):  # targets of its own for each image: the content turned a little
        objective = build_objective(plan, backbone, dataclasses.replace(
            inputs, content=torch.roll(inputs.content, shifts=3 * k, dims=3)))
        if k == overflow:
            objective = dataclasses.replace(objective, terms=tuple(
                dataclasses.replace(wt, weight=float("inf")) if wt.term.name == "gram" else wt for wt in objective.terms))
        objectives.append(objective)
    return plan, objectives, [inputs.start] * args.batch


def run(plan, objectives, starts, steps: int, graph: bool):
    options = LoopOptions(steps=steps, cuda_graph=graph, check_every=10)
    torch.cuda.synchronize()
    began = time.perf_counter()
    ends = optimize_group(objectives, starts, build_optimizer(plan), build_scheduler(plan), options, plan.device,
                          stacked=True)
    torch.cuda.synchronize()
    return ends, time.perf_counter() - began


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--recipe", default="recipes/gatys.toml")
    parser.add_argument("--batch", type=int, default=8)
    parser.add_argument("--width", type=int, default=256)
    parser.add_argument("--steps", type=int, default=30)
    parser.add_argument("--precisions", default="fp32,bf16")
    args = parser.parse_args()
    if not torch.cuda.is_available():
        raise SystemExit("group_check.py needs a GPU: there is no CUDA graph to record on a CPU")
    print(f"{torch.cuda.get_device_name()}, torch {torch.__version__}, {args.recipe} at {args.width} px wide, "
          f"{args.batch} images, {args.steps} steps")
    print("| optimizer | precision | eager s | graph s | graph/eager | max image diff | max row rel diff |\n"
          "| --- | --- | --- | --- | --- | --- | --- |")
    for name, config in CONFIGS.items():
        for precision in args.precisions.split(","):
            plan, objectives, starts = group(args, precision, config)
            eager, eager_s = run(plan, objectives, starts, args.steps, graph=False)
            graphed, graph_s = run(plan, objectives, starts, args.steps, graph=True)
            image_diff = max((a.image - b.image).abs().max().item() for a, b in zip(eager, graphed))
            row_diff = max(((torch.stack(a.rows) - torch.stack(b.rows)).abs() / torch.stack(a.rows).abs().clamp_min(1e-12))
                           .max().item() for a, b in zip(eager, graphed))
            print(f"| {name} | {precision} | {eager_s:.2f} | {graph_s:.2f} | {graph_s / eager_s:.3f} | "
                  f"{image_diff:.2e} | {row_diff:.2e} |", flush=True)

    # One image diverges at the first step: the group is recorded again for the rest.
    recordings = []
    record = stylekit.run.passes.record_cuda_graph

    def counted(forward_backward, images):
        recordings.append(len(images))
        return record(forward_backward, images)

    stylekit.run.passes.record_cuda_graph = counted
    plan, objectives, starts = group(args, "fp32", CONFIGS["lbfgs"], overflow=1)
    before = torch.cuda.memory_allocated()
    graphed, _ = run(plan, objectives, starts, args.steps, graph=True)
    after = torch.cuda.memory_allocated()
    stylekit.run.passes.record_cuda_graph = record
    eager, _ = run(plan, objectives, starts, args.steps, graph=False)
    others = [k for k in range(args.batch) if k != 1]
    diff = max((eager[k].image - graphed[k].image).abs().max().item() for k in others)
    print(f"divergence: recordings {recordings} (want [{args.batch}, {args.batch - 1}]), image 1 diverged: "
          f"{isinstance(graphed[1], Diverged)} (eager: {isinstance(eager[1], Diverged)}), others' max image diff "
          f"{diff:.2e}, memory allocated {before / 2**20:.0f} -> {after / 2**20:.0f} MiB")


if __name__ == "__main__":
    main()
