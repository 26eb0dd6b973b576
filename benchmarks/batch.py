"""Images per minute of `stylekit batch`: batch sizes (images per step) against batch size 1,
with one worker process and with two (torchrun), all measured in this one run.

    python benchmarks/batch.py --width 512 --steps 200 --sizes 1,4,16 --images 16 --out bench-out

recipes/gatys.toml over copies of one photo (../shared/data/images/rainier.jpg, or
examples/chelsea.jpg when shared/ is missing), so every item has the same size and the
batches are full. On a CPU each image still gets its own backbone pass (see
stylekit/run/together.py), so the batch size should change little there; on a GPU the images
of a step go through the backbone together.
"""

import argparse
import shutil
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
SHARED_PHOTO = ROOT.parent / "shared" / "data" / "images" / "rainier.jpg"


def run(command: list[str], log: Path) -> float | None:
    """Seconds the command took; None (after printing the end of its log) if it failed, so
    that one failed configuration does not cost the measurements of the others."""
    started = time.perf_counter()
    with log.open("w") as handle:
        status = subprocess.run(command, stdout=handle, stderr=subprocess.STDOUT, cwd=ROOT).returncode
    if status != 0:
        print(f"failed (exit {status}): {' '.join(command)}\n" + "".join(log.read_text().splitlines(True)[-15:]), flush=True)
        return None
    return time.perf_counter() - started


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--width", type=int, default=512)
    parser.add_argument("--steps", type=int, default=200)
    parser.add_argument("--sizes", default="1,4,16", help="images per step to measure")
    parser.add_argument("--images", type=int, default=16, help="items per measurement")
    parser.add_argument("--workers", default="1,2", help="worker processes to measure (2: torchrun)")
    parser.add_argument("--out", default="bench-out")
    args = parser.parse_args()
    photo = SHARED_PHOTO if SHARED_PHOTO.exists() else ROOT / "examples" / "chelsea.jpg"
    if photo != SHARED_PHOTO:
        print(f"{SHARED_PHOTO} missing (../shared/ not here): using {photo}", file=sys.stderr)
    out = Path(args.out).resolve() / "batch"
    shutil.rmtree(out, ignore_errors=True)
    photos = out / "photos"
    photos.mkdir(parents=True)
    for i in range(args.images):
        shutil.copy(photo, photos / f"p{i:03d}{photo.suffix}")
    stylekit = str(Path(sys.executable).parent / "stylekit")
    rows = []
    for workers in (int(w) for w in args.workers.split(",")):
        for size in (int(s) for s in args.sizes.split(",")):
            target = out / f"w{workers}-b{size}"
            launch = [stylekit] if workers == 1 else [sys.executable, "-m", "torch.distributed.run",
                                                      "--nproc-per-node", str(workers), stylekit]
            command = [*launch, "batch", "recipes/gatys.toml", "--content", str(photos), "-o", str(target),
                       "--batch-size", str(size), "--set", f"output.width={args.width}", "--set", f"run.steps={args.steps}",
                       "--set", "run.progress_every=0"]
            seconds = run(command, out / f"w{workers}-b{size}.log")
            if seconds is None:
                continue
            rows.append((workers, size, seconds, args.images / seconds * 60))
            print(f"workers {workers}  batch {size:>3}  {seconds:8.1f} s  {rows[-1][3]:7.2f} images/min", flush=True)
    base = {w: ipm for w, s, _, ipm in rows if s == 1}
    print(f"\n| workers | images per step | seconds for {args.images} images | images/min | vs 1 per step |\n"
          "| --- | --- | --- | --- | --- |")  # as docs/scale.md shows it
    for workers, size, seconds, ipm in rows:
        ratio = f"{ipm / base[workers]:.2f}x" if workers in base else "-"
        print(f"| {workers} | {size} | {seconds:.1f} | {ipm:.2f} | {ratio} |")


if __name__ == "__main__":
    main()
