"""Peak memory (RSS) at a large size: the seed reference against stylekit, a few steps each,
in one run; and stylekit's own estimate (`stylekit run --dry-run`) beside its measurement.

    python benchmarks/memory.py --h 1024 --w 1536 --steps 3 --out bench-out

stylekit runs recipes/d2l.toml (the seed's own objective) with activation checkpointing,
so the comparison is of the same computation. Images from ../shared/data/images/.
"""

import argparse
import re
import subprocess
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).parent))
from compare import ROOT, SHARED, timed  # noqa: E402

parser = argparse.ArgumentParser()
parser.add_argument("--h", type=int, default=1024)
parser.add_argument("--w", type=int, default=1536)
parser.add_argument("--steps", type=int, default=3)
parser.add_argument("--out", default="bench-out")
parser.add_argument("--set", action="append", default=["run.checkpoint=true"], help="stylekit --set overrides")
args = parser.parse_args()

content, style = SHARED / "data" / "images" / "rainier.jpg", SHARED / "data" / "images" / "autumn-oak.jpg"
if not content.exists():
    sys.exit(f"benchmark images missing: {content} comes from ../shared/data/images/")
out = Path(args.out).resolve() / "memory"
out.mkdir(parents=True, exist_ok=True)
size = ["--set", f"output.height={args.h}", "--set", f"output.width={args.w}"]
overrides = [x for s in args.set for x in ("--set", s)]
stylekit = str(Path(sys.executable).parent / "stylekit")
common = [stylekit, "run", "recipes/d2l.toml", "--content", str(content), "--style", str(style), *size, *overrides]

estimate = subprocess.run([*common, "--dry-run"], capture_output=True, text=True, check=True, cwd=ROOT).stdout
seed = timed([sys.executable, str(SHARED / "bench" / "seed_reference.py"), str(content), str(style), str(out / "seed.png"),
              "--h", str(args.h), "--w", str(args.w), "--steps", str(args.steps)], out / "seed.log")
mine = timed([*common, "--steps", str(args.steps), "--output", str(out / "stylekit.png")], out / "stylekit.log")

print(f"{args.w}x{args.h}, {args.steps} steps; stylekit with {' '.join(args.set)}")
print(f"seed reference peak RSS {seed['peak_rss_mb']:.0f} MB, {seed['wall_s']:.1f} s")
print(f"stylekit       peak RSS {mine['peak_rss_mb']:.0f} MB, {mine['wall_s']:.1f} s  ({mine['peak_rss_mb'] / seed['peak_rss_mb']:.2f}x the seed's memory)")
found = re.search(r"estimated peak\s+([\d.]+ [KMG]B)", estimate)
print(f"stylekit's own estimate before running: {found.group(1) if found else '?'} (tensors only; RSS adds the Python and torch runtime)")
print(estimate)
