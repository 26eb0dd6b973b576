"""The pictures of docs/video.md from a real run: benchmarks/video_clips.py's synthetic clip
(Tuebingen under a moving camera, a disc crossing it) stylized by `stylekit video` as a user
runs it, then a strip of frames (input above, output below) and an animated WebP of the two
side by side.

    python benchmarks/video_preview.py --out docs/images
"""

from __future__ import annotations

import argparse
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from PIL import Image

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "benchmarks"))

from stylekit.files.images import open_rgb, to_image, to_tensor  # noqa: E402
from video_clips import SyntheticClip  # noqa: E402

SHARED = ROOT.parent / "shared" / "data" / "images"


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=ROOT / "docs" / "images")
    parser.add_argument("--frames", type=int, default=24)
    parser.add_argument("--size", default="256x144")
    parser.add_argument("--style", type=Path, default=SHARED / "starry_night.jpg")
    args = parser.parse_args(argv)
    photo = SHARED / "tubingen.jpg"
    if not photo.exists() or not args.style.exists():
        raise SystemExit(f"needs {photo} and {args.style} (../shared/data/images)")
    width, height = map(int, args.size.split("x"))
    clip = SyntheticClip(to_tensor(open_rgb(photo), (384, 512)), to_tensor(open_rgb(ROOT / "examples" / "embers.jpg"),
                                                                           (64, 64)), (width, height), args.frames)
    with tempfile.TemporaryDirectory(prefix="stylekit-preview-") as tmp:
        frames_in, frames_out = Path(tmp) / "in", Path(tmp) / "out"
        frames_in.mkdir()
        for i, frame in enumerate(clip.frames):
            to_image(frame).save(frames_in / f"frame{i:03d}.png")
        command = [sys.executable, "-m", "stylekit", "video", str(frames_in), "-r", str(ROOT / "recipes" / "gatys.toml"),
                   "--style", str(args.style), "-o", str(frames_out)]
        began = time.perf_counter()
        subprocess.run(command, check=True)
        print(f"stylekit video: {time.perf_counter() - began:.0f} s for {args.frames} frames", file=sys.stderr)
        inputs = [Image.open(p).convert("RGB") for p in sorted(frames_in.glob("*.png"))]
        outputs = [Image.open(p).convert("RGB") for p in sorted(frames_out.glob("*.png"))]
    picks = [round(i * (len(inputs) - 1) / 3) for i in range(4)]
    strip = Image.new("RGB", (width * 4, height * 2), "white")
    for column, index in enumerate(picks):
        strip.paste(inputs[index], (column * width, 0))
        strip.paste(outputs[index], (column * width, height))
    args.out.mkdir(parents=True, exist_ok=True)
    strip.save(args.out / "video-strip.jpg", quality=85)
    pairs = []
    for before, after in zip(inputs, outputs):
        pair = Image.new("RGB", (width * 2, height))
        pair.paste(before, (0, 0))
        pair.paste(after, (width, 0))
        pairs.append(pair)
    pairs[0].save(args.out / "video-preview.webp", save_all=True, append_images=pairs[1:], duration=100, loop=0,
                  quality=70, method=6)
    for name in ("video-strip.jpg", "video-preview.webp"):
        print(f"wrote {args.out / name} ({(args.out / name).stat().st_size // 1024} KB)", file=sys.stderr)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
