"""One stacked step of a group of images (`stylekit batch --batch-size`): the loss terms
evaluated slice by slice, one image at a time (what every term did before
`LossTerm.together`), against each term evaluated once for the whole group, measured in
the same run on the same features.

    python benchmarks/group_step.py --device cuda --batch 16 --width 512
    python benchmarks/group_step.py --device cpu --batch 16 --width 64 --steps 3

For each way it prints the milliseconds of the whole step (backbone forward, the terms,
backward; on a GPU with a synchronize around each) and of the terms alone (forward and
backward on fixed features), and the number of tensor operations the terms dispatch per
step, forward and backward: on a GPU each is at least one kernel launch, and with small
kernels the launches, not the arithmetic, set the pace. On a GPU a third way is timed:
together, recorded once as a CUDA graph and replayed, as `stylekit batch` does with
`run.cuda_graph = true`.
"""

import argparse
import dataclasses
import time

import torch
from torch.utils._python_dispatch import TorchDispatchMode

import stylekit
from stylekit.run.build import build_backbone, build_objective, stage_images
from stylekit.run.engine import network_input
from stylekit.run.passes import record_cuda_graph
from stylekit.run.together import group_values


class CountOps(TorchDispatchMode):
    def __init__(self):
        super().__init__()
        self.count = 0

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        self.count += 1
        return func(*args, **(kwargs or {}))


def timed(run, steps: int, device: torch.device) -> float:
    """Milliseconds per call of `run`, after one untimed call."""
    run()
    total = 0.0
    for _ in range(steps):
        if device.type == "cuda":
            torch.cuda.synchronize(device)
        began = time.perf_counter()
        run()
        if device.type == "cuda":
            torch.cuda.synchronize(device)
        total += time.perf_counter() - began
    return 1e3 * total / steps


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--recipe", default="recipes/gatys.toml")
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    parser.add_argument("--batch", type=int, default=16)
    parser.add_argument("--width", type=int, default=512, help="the output's width (the recipe's last stage)")
    parser.add_argument("--steps", type=int, default=10, help="timed steps per way")
    parser.add_argument("--precision", default="auto")
    args = parser.parse_args()

    plan = stylekit.load(args.recipe, {"output.width": args.width, "run.device": args.device,
                                       "run.precision": args.precision})
    device, stage = plan.device, plan.stages[-1]
    backbone = build_backbone(plan)
    inputs = stage_images(plan, stage)
    # One objective per image, each with targets of its own (as in a batch): the content
    # image turned a little differently for each; the style is the recipe's.
    objectives = []
    for k in range(args.batch):
        shifted = torch.roll(inputs.content, shifts=3 * k, dims=3)
        objectives.append(build_objective(plan, backbone, dataclasses.replace(inputs, content=shifted)))
    layers = frozenset().union(*(objective.layers for objective in objectives))
    torch.manual_seed(0)
    images = (inputs.start.to(device).repeat(args.batch, 1, 1, 1) + 0.01 * torch.randn(
        args.batch, *inputs.start.shape[1:], device=device)).clamp(0, 1).requires_grad_(True)
    with torch.no_grad():
        fixed = backbone.features(network_input(images, plan.dtype), layers)

    print(f"{args.recipe} at {tuple(images.shape[2:])} px, {args.batch} images, {device}, {plan.dtype}, "
          f"{torch.get_num_threads()} threads")
    rows = []
    ways = [("slice by slice", False, False), ("together", True, False)]
    if device.type == "cuda":
        ways.append(("together, CUDA graph", True, True))
    for label, together, graph in ways:
        evaluate = group_values(objectives, device, together=together)

        def forward_backward():
            features = backbone.features(network_input(images, plan.dtype), layers)
            evaluate(features, images).sum().backward()

        def eager():
            images.grad = None
            forward_backward()

        whole_step = record_cuda_graph(forward_backward, [images]) if graph else eager

        mine = {name: value.detach().clone().requires_grad_(True) for name, value in fixed.items()}

        def terms_only():
            evaluate(mine, images).sum().backward()

        counter = CountOps()
        with counter:
            terms_only()
        rows.append((label, timed(whole_step, args.steps, device), timed(terms_only, args.steps, device), counter.count))
    print("| loss terms | whole step, ms | terms alone, ms | ops per step (terms) |\n| --- | --- | --- | --- |")
    for label, whole, terms, ops in rows:
        print(f"| {label} | {whole:.1f} | {terms:.2f} | {ops} |")
    (_, whole_a, terms_a, ops_a), (_, whole_b, terms_b, ops_b) = rows[:2]
    print(f"together / slice by slice: whole step {whole_b / whole_a:.3f}, terms {terms_b / terms_a:.3f}, "
          f"ops {ops_b / ops_a:.3f}")
    if len(rows) == 3:
        print(f"together with a CUDA graph / slice by slice: whole step {rows[2][1] / whole_a:.3f}")


if __name__ == "__main__":
    main()
