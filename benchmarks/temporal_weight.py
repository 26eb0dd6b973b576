"""The sweep that sets the `temporal` loss's default weight (stylekit/builtins/temporal.py's
DEFAULT_WEIGHT) and the default steps of a later frame (the `video.steps` field).

On benchmarks/video_clips.py's synthetic clip (a photo under a smooth pan, zoom and drift with
a textured disc crossing it, flow known exactly) it stylizes the clip with recipes/gatys.toml
at a small size: once frame by frame alone (the same recipe and seed on each frame), then as a
video (stylekit.video.frames, fed the clip's true flow) at each temporal weight. For each it
prints the warping error at offset 1 (Lai et al. 2018, graded with the true flow), and the
mean per-frame content and style distances (stylekit.video.metrics) over the frames after the
first, relative to the frames stylized alone. The weight wanted is the smallest at which the
warping error falls well below the frames' alone while content and style stay within 10%.

    python benchmarks/temporal_weight.py --weights 0,3,10,30,100,300,1000,3000,10000,30000,100000,300000,1000000
    python benchmarks/temporal_weight.py --frames 24 --weights 30000,100000      # drift, at offset 10
    python benchmarks/temporal_weight.py --weights 100000 --steps 8,16,23,35     # a later frame's steps
    python benchmarks/temporal_weight.py --frames 12 --weights 100000 --offsets 1/1,2/1,2,4

What they printed (2026-12-02, a 2-core CPU shared with other work, so the seconds are only
rough; the figures do not depend on it). 128x96, 8 frames; alone: warping error 0.05958,
content 0.2051, style 0.3878:

    weight 0, steps 23: warping error 0.01177 (0.20x alone), content 0.850x, style 0.952x
    weight 1000, steps 23: warping error 0.01107 (0.19x alone), content 0.854x, style 0.953x
    weight 10000, steps 23: warping error 0.00745 (0.13x alone), content 0.860x, style 0.965x
    weight 30000, steps 23: warping error 0.00456 (0.08x alone), content 0.888x, style 0.986x
    weight 100000, steps 23: warping error 0.00190 (0.03x alone), content 0.987x, style 1.032x
    weight 300000, steps 23: warping error 0.00070 (0.01x alone), content 1.152x, style 1.072x
    weight 1e+06, steps 23: warping error 0.00022 (0.00x alone), content 1.392x, style 1.118x
    (3, 10, 30, 100, 300 and 3000 lay between their neighbours: 0.20x, 0.20x, 0.20x, 0.20x, 0.19x, 0.17x;
    content and style within 0.85x-0.86x and 0.95x)

    weight 100000, steps 8: warping error 0.00182 (0.03x alone), content 1.082x, style 1.109x
    weight 100000, steps 16: warping error 0.00205 (0.03x alone), content 0.988x, style 1.056x
    weight 100000, steps 35: warping error 0.00231 (0.04x alone), content 1.131x, style 0.995x

24 frames; alone: warping error 0.05756, at offset 10 0.08245, content 0.2142, style 0.3887:

    weight 30000, steps 23: warping error 0.00380 (0.07x alone), at offset 10 0.04080 (0.49x alone), content 0.848x, style 0.973x
    weight 100000, steps 23: warping error 0.00174 (0.03x alone), at offset 10 0.02563 (0.31x alone), content 0.935x, style 1.017x

12 frames; alone: warping error 0.05743, at offset 10 0.06941, content 0.2086, style 0.3868:

    weight 100000, steps 23, offsets [1]: warping error 0.00174 (0.03x alone), at offset 10 0.04005 (0.58x alone), content 0.987x, style 1.041x
    weight 100000, steps 23, offsets [1, 2]: warping error 0.00170 (0.03x alone), at offset 10 0.03584 (0.52x alone), content 0.978x, style 1.038x
    weight 100000, steps 23, offsets [1, 2, 4]: warping error 0.00179 (0.03x alone), at offset 10 0.01734 (0.25x alone), content 0.963x, style 1.023x

So the weight is 1e5 (the largest that keeps content and style within 10%), and a later
frame's steps a third of the recipe's (gatys.toml: 23 of 70): 8 leave style 11% off, 35
overshoot the frames alone in content by 13%, 16 to 23 stay within 6%. The long-term offsets
[1, 2, 4] (the default) halve the drift at offset 10 against [1] alone, for two flows per
offset and frame on the flow thread: DIS (medium) takes 50-80 ms a flow at 640x360 and the
certainty about 20 ms, about 0.15 s an offset beside a later frame's tens of seconds there.
"""

from __future__ import annotations

import argparse
import dataclasses
import itertools
import sys
import tempfile
import time
from pathlib import Path

import torch
from PIL import Image

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "benchmarks"))

import stylekit  # noqa: E402
from stylekit.files.images import to_image, to_tensor  # noqa: E402
from stylekit.run.build import Reuse, build_backbone  # noqa: E402
from stylekit.run.engine import network_input  # noqa: E402
from stylekit.video import metrics  # noqa: E402
from stylekit.video.frames import stylize_frames  # noqa: E402
from stylekit.video.start import with_temporal  # noqa: E402
from stylekit.video.workdir import WorkFolder  # noqa: E402
from video_clips import ExactFlow, SyntheticClip  # noqa: E402


def picture(path: Path) -> torch.Tensor:
    with Image.open(path) as image:
        return to_tensor(image.convert("RGB"), (image.height, image.width))


def figures(outputs: list[torch.Tensor], clip: SyntheticClip, backbone, plan, style: torch.Tensor) -> dict:
    layers = frozenset([metrics.CONTENT_LAYER, *metrics.STYLE_LAYERS])

    def features(image: torch.Tensor) -> dict:
        with torch.no_grad():
            return backbone.features(network_input(image, plan.dtype), layers)

    styled = features(style)
    content, style_d = [], []
    for output, frame in list(zip(outputs, clip.frames))[1:]:  # the first frame is the recipe's alone either way
        mine = features(output)
        content.append(metrics.content_distance(mine, features(frame.float())))
        style_d.append(metrics.style_distance(mine, styled))
    errors = {e.offset: e.mean for e in metrics.warping_errors(outputs, clip.flows)}
    return {"warp": errors[1], "drift": errors.get(10), "content": sum(content) / len(content),
            "style": sum(style_d) / len(style_d)}


def drift(found: dict, base: dict) -> str:
    """The warping error at offset 10, where the clip is long enough for it."""
    if found["drift"] is None:
        return ""
    return f", at offset 10 {found['drift']:.5f} ({found['drift'] / base['drift']:.2f}x alone)"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--frames", type=int, default=8)
    parser.add_argument("--width", type=int, default=128)
    parser.add_argument("--weights", default="1,10,30,100,300,1000")
    parser.add_argument("--steps", default="", help="later frames' steps to try (default: the recipe's default)")
    parser.add_argument("--offsets", default="", help="video.offsets to try, separated by '/', e.g. 1/1,2,4 "
                                                      "(default: the recipe's default)")
    args = parser.parse_args()
    height = round(args.width * 0.75)
    clip = SyntheticClip(picture(ROOT / "examples/chelsea.jpg"), picture(ROOT / "examples/embers.jpg"),
                         (args.width, height), args.frames)
    frames = [to_image(frame) for frame in clip.frames]
    plan = stylekit.load(ROOT / "recipes/gatys.toml", {"output.width": args.width, "run.device": "cpu",
                                                     "run.precision": "fp32"}, content=frames[0])
    reuse = Reuse()
    backbone = build_backbone(plan)
    style = to_tensor(plan.images.styles[0], (height, args.width))
    started = time.perf_counter()
    alone = [stylekit.stylize(plan, content=frame).tensor for frame in frames]
    seconds = (time.perf_counter() - started) / len(frames)
    base = figures(alone, clip, backbone, plan, style)
    print(f"gatys.toml at {args.width}x{height}, {args.frames} frames, {torch.get_num_threads()} threads")
    print(f"alone: warping error {base['warp']:.5f}{drift(base, base)}, content {base['content']:.4f}, "
          f"style {base['style']:.4f}, {seconds:.1f} s a frame", flush=True)
    video, _ = with_temporal(plan)
    steps = [int(s) for s in args.steps.split(",") if s] or [None]
    reaches = [[int(k) for k in offsets.split(",")] for offsets in args.offsets.split("/") if offsets] or [None]
    for weight, count, offsets in itertools.product([float(w) for w in args.weights.split(",")], steps, reaches):
        losses = tuple(dataclasses.replace(loss, weight=weight) if loss.label == "temporal" else loss
                       for loss in video.losses)
        changes = {"steps": count} if count is not None else {}
        if offsets is not None:
            changes["offsets"] = offsets
        recipe = video.recipe.model_copy(update={"video": video.recipe.video.model_copy(update=changes)})
        with tempfile.TemporaryDirectory() as work:
            started = time.perf_counter()
            result = stylize_frames(video.replace(losses=losses, recipe=recipe), frames, ExactFlow(clip),
                                    Path(work) / "frames", reuse=reuse)
            later = (time.perf_counter() - started - result.seconds[0]) / (len(frames) - 1)
            outputs = [WorkFolder.read_frame(path) for path in result.paths]
        found = figures(outputs, clip, backbone, plan, style)
        print(f"weight {weight:g}, steps {result.steps[1]}, offsets {recipe.video.offsets}: warping error "
              f"{found['warp']:.5f} ({found['warp'] / base['warp']:.2f}x alone){drift(found, base)}, content "
              f"{found['content'] / base['content']:.3f}x, style {found['style'] / base['style']:.3f}x, "
              f"{later:.1f} s a later frame", flush=True)


if __name__ == "__main__":
    main()
