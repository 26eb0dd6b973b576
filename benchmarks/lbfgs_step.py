"""Time of one L-BFGS step for a group of images: one torch LBFGS per image (what
`stylekit batch` did) against stylekit.builtins.batched_lbfgs.BatchedLBFGS, on synthetic gradients,
so the optimizer alone is measured (no backbone).

    python benchmarks/lbfgs_step.py --device cuda --batch 16 --height 341 --width 512 --history 50

Both are timed over steps with a full history; on a GPU with a synchronize around each,
and one more batched step runs with torch.cuda.set_sync_debug_mode("error"), so that a
step that waits for the GPU fails the script.
"""

import argparse
import time

import torch

from stylekit.builtins.batched_lbfgs import BatchedLBFGS, BatchedRows, TorchRows


def fake_gradients(images: list[torch.Tensor], targets: list[torch.Tensor]) -> None:
    # A nonconvex pull towards a target: curvature of both signs, as in a real objective.
    for image, target in zip(images, targets):
        x = image.detach()
        image.grad = 2 * (x - target) + 0.1 * torch.sin(5 * x)


class BmmRows(BatchedRows):
    """BatchedRows with its dot products as one batched matmul (no (B, N) product
    written): whether cuBLAS does better than a product and a sum is for a GPU to say."""

    @staticmethod
    def dots(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
        return torch.bmm(a.unsqueeze(1), b.unsqueeze(2)).view(-1)


def seconds_per_step(step, images, targets, steps: int, warmup: int, device: torch.device) -> float:
    total = 0.0
    for index in range(steps):
        fake_gradients(images, targets)
        if device.type == "cuda":
            torch.cuda.synchronize(device)
        began = time.perf_counter()
        step()
        if device.type == "cuda":
            torch.cuda.synchronize(device)
        if index >= warmup:
            total += time.perf_counter() - began
    return total / (steps - warmup)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    parser.add_argument("--batch", type=int, default=16)
    parser.add_argument("--height", type=int, default=341)
    parser.add_argument("--width", type=int, default=512)
    parser.add_argument("--history", type=int, default=50)
    parser.add_argument("--steps", type=int, default=10, help="timed steps, after history + 1 to fill it")
    args = parser.parse_args()
    device = torch.device(args.device)
    generator = torch.Generator(device).manual_seed(0)
    shape = (1, 3, args.height, args.width)
    targets = [torch.rand(shape, device=device, generator=generator) for _ in range(args.batch)]
    warmup = args.history + 1
    steps = warmup + args.steps

    def fresh() -> list[torch.Tensor]:
        return [torch.rand(shape, device=device, generator=generator).requires_grad_(True) for _ in range(args.batch)]

    images = fresh()
    optimizers = [torch.optim.LBFGS([image], lr=1, max_iter=1, history_size=args.history, tolerance_grad=-1,
                                    tolerance_change=-1) for image in images]
    loss = torch.zeros((), device=device)
    per_image = seconds_per_step(lambda: [o.step(lambda: loss) for o in optimizers], images, targets, steps, warmup,
                                 device)
    del optimizers
    rows = [("one torch LBFGS per image", per_image)]
    kinds = [BatchedRows, BmmRows] + ([TorchRows] if device.type == "cpu" else [])
    for ops in kinds:
        images = fresh()
        batched = BatchedLBFGS(images, lr=1.0, history=args.history, ops=ops)
        alive = list(range(args.batch))
        losses = torch.zeros(len(alive), device=device)  # the guard's test reads them; the timing does not care
        rows.append((f"BatchedLBFGS, {ops.__name__}", seconds_per_step(lambda: batched.step(alive, losses), images,
                                                                       targets, steps, warmup, device)))
        if device.type == "cuda":
            fake_gradients(images, targets)
            torch.cuda.set_sync_debug_mode("error")  # a step that waits for the GPU raises here
            try:
                batched.step(alive, losses)
            finally:
                torch.cuda.set_sync_debug_mode("default")
        del batched
    print(f"{args.batch} images {args.width}x{args.height}, history {args.history}, {device}"
          + (f" ({torch.cuda.get_device_name(device)})" if device.type == "cuda" else
             f" ({torch.get_num_threads()} threads)"))
    for name, seconds in rows:
        print(f"  {name:32s} {seconds * 1e3:9.2f} ms/step  {per_image / seconds:6.2f}x")


if __name__ == "__main__":
    main()
