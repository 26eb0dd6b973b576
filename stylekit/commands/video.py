"""`stylekit video IN -r RECIPE -o OUT`: stylize a clip (a video file or a folder of frames)
with temporal consistency, and `stylekit video-metrics`: how consistent and how styled a
stylized clip is. The work is `stylekit.video.session` and `stylekit.video.metrics`; this
module parses, shows progress and says what was written.

Exit statuses, as `stylekit run`'s: 0 done (or stopped from the live page: the finished
frames written as a partial video), 2 bad input, 3 a frame diverged, 130 / 143 interrupted
(the finished frames kept to resume from, and written as a partial video that plays).
"""

from __future__ import annotations

from stylekit.commands.arguments import add_live_args, add_size_args, add_steps_arg, add_strength_arg


def add_parsers(sub) -> None:
    """The two commands' parsers (in `stylekit.commands.cli`'s subparsers)."""
    video = sub.add_parser("video", help="stylize a video (or a folder of frames) with temporal consistency")
    video.add_argument("input", metavar="IN", help="a video file (.mp4, .mov, .mkv, ...) or a folder of frames")
    video.add_argument("--recipe", "-r", help="a TOML recipe (default: recipes/gatys.toml, as ./stylize uses); its "
                       "[video] and [flow] tables tune the video (docs/video.md)")
    video.add_argument("--output", "-o", required=True,
                       help="the video to write (.mp4, .m4v, .mov or .mkv), or a folder for its frames (no suffix)")
    video.add_argument("--style", action="append", help="style image (overrides images.style; repeat for several)")
    add_steps_arg(video)
    add_size_args(video)
    add_strength_arg(video)
    video.add_argument("--set", action="append", default=[], metavar="KEY=VALUE",
                       help="override any recipe field, e.g. --set video.passes=2 (values are TOML)")
    video.add_argument("--resume", action="store_true",
                       help="go on with a video that was interrupted, from its work folder (OUT.frames)")
    video.add_argument("--keep-frames", action="store_true", help="keep the work folder's frames after the video is written")
    video.add_argument("--quiet", "-q", action="store_true", help="print nothing but errors")
    video.add_argument("--traceback", action="store_true", help="with an error raised by a plugin's code, also print its traceback (or set STYLEKIT_TRACEBACK=1)")
    add_live_args(video)
    video.set_defaults(handler=cmd_video)

    metrics = sub.add_parser("video-metrics", help="the warping error and per-frame figures of a stylized video")
    metrics.add_argument("output", metavar="STYLIZED", help="the stylized video or folder of frames")
    metrics.add_argument("--input", required=True, help="the clip it was made from (its flow grades the stylized one)")
    metrics.add_argument("--style", help="the style image: adds each frame's content and style distances (VGG-19)")
    metrics.add_argument("--preset", default="fast", choices=("ultrafast", "fast", "medium"),
                         help="the DIS flow preset that grades (default fast: not the loss's own medium, so the "
                              "grade is not the loss's own flow)")
    metrics.add_argument("--json", metavar="FILE", help="also write the figures as JSON")
    metrics.set_defaults(handler=cmd_video_metrics)


def cmd_video(args) -> int:
    from stylekit.video.extra import require_video_extra  # deferred: the optional extra

    require_video_extra()
    from stylekit.commands.video_run import run_video  # deferred: torch and the video modules, past --help

    return run_video(args)


def cmd_video_metrics(args) -> int:
    from stylekit.video.extra import require_video_extra  # deferred: the optional extra

    require_video_extra()
    from stylekit.commands.video_run import measure  # deferred: torch and the video modules, past --help

    return measure(args)
