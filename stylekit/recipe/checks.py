"""Checks of a recipe's inputs and outputs at load time, so that `stylekit validate` and
`stylekit run` agree and a run never fails, after its optimization, on something that
could be known before it: every image large enough for the layers the losses read, and an
output path that can be written without destroying anything the user had. (Every image is
decoded in full when the plan is made: `stylekit.recipe.load`, `stylekit.files.images.open_rgb`.)
"""

from __future__ import annotations

import json
import math
import os
import re
import tempfile
from pathlib import Path
from typing import TYPE_CHECKING

from stylekit.errors import Problem
from stylekit.files.images import TEMP_MARK, output_size, style_size
from stylekit.files.outputs import checkpoint_path, intermediate_path, losses_plot_path, record_path, strip_path, written_for
from stylekit.files.reading import RECORD_LIMIT, read_bytes, regular_kind
from stylekit.recipe.plan import MEMORY
from stylekit.recipe.stage_fit import least_output_size
from stylekit.recipe.schema import INIT_CHOICES, MAX_SIDE, unsupported_suffix

if TYPE_CHECKING:
    from PIL import Image

# ---------------------------------------------------------------- sizes


def size_problems(parts, inputs, backbone_cls, backbone_params, losses, at, fit=None) -> list[Problem]:
    """The output (every stage) and each style image must be large enough for the deepest
    layer read from it; the backbone says how large (`Backbone.min_input_side_for`).
    `inputs`: the decoded images (`InputImages`); `losses`: the resolved `LossChoice`s;
    `fit`: the `StageFit` of stages scaled from overrides, whose fix is a larger output."""
    images = parts.images
    known = backbone_cls.layer_names_for(backbone_params)
    read_by_output, read_by_style = set(), set()
    for loss in losses:
        layers = {name for name in loss.layers if name in known}
        read_by_output |= layers
        if "style" in loss.choice.cls.target_images:
            read_by_style |= layers
    if not read_by_output:
        return []
    need = backbone_cls.min_input_side_for(backbone_params, frozenset(read_by_output))
    need_style = backbone_cls.min_input_side_for(backbone_params, frozenset(read_by_style)) if read_by_style else 1
    deepest = max(read_by_output, key=known.index)
    content = inputs.content
    problems = []
    for index, (width, height, loc) in enumerate(_stages(parts)):
        h, w = output_size(content, width, height)
        if loc[-1] == "width" and height and h < need <= w:  # the height given is what is too small
            loc = (*loc[:-1], "height")
        stage = f" in stage {index + 1}" if parts.stage else ""
        if min(h, w) < need:
            problems.append(at(loc, f"the output would be {w}x{h} pixels{stage}, too small for backbone "
                                    f"'{backbone_cls.name}' to read layer '{deepest}' (it needs at least {need} pixels "
                                    f"on each side) - {_fix(content, width, height, need, loc, fit, index)}"))
            continue
        for i, style in enumerate(inputs.styles):
            def style_fits(width, height, style=style) -> bool:
                return min(style_size(style, output_size(content, width, height), images.style_scale,
                                      images.style_fit)) >= need_style

            sh, sw = style_size(style, (h, w), images.style_scale, images.style_fit)
            if max(sh, sw) > MAX_SIDE:
                if not any(p.field == "images.style_scale" for p in problems):  # once, not once per stage and style
                    problems.append(at(("images", "style_scale"), f"the style image would be resized to {sw}x{sh} "
                                                                  f"pixels{stage}, larger than {MAX_SIDE} on a side, the "
                                                                  f"most stylekit makes of any image - lower "
                                                                  f"images.style_scale"))
                continue
            if min(sh, sw) < need_style:
                what = (f"the style image would be resized to {sw}x{sh} pixels{stage}, too small for backbone "
                        f"'{backbone_cls.name}' (it needs at least {need_style} pixels on each side)")
                if fit is not None and fit.source(loc) is not None:  # the stage is small because of an override
                    problems.append(at(loc, f"{what} - {_fix_scaled(fit, index, style_fits)}; "
                                            f"or raise images.style_scale"))
                else:
                    problems.append(at(("images", "style", i), f"{what} - raise images.style_scale or use a style "
                                                               f"image closer to square"))
    return problems


def _stages(parts):
    """(width, height, loc of the field that sets the size) of every stage."""
    if parts.stage:
        return [(s.width, s.height, ("stage", i, "width")) for i, s in enumerate(parts.stage)]
    output = parts.output
    if output is None:
        return []
    loc = ("output", "width") if output.width else ("output", "height") if output.height else ("output", "width")
    return [(output.width, output.height, loc)]


def _fix(content: Image.Image, width: int | None, height: int | None, need: int, loc: tuple,
         fit=None, index: int = 0) -> str:
    """What to set so that both sides reach `need`, keeping the content's aspect if possible."""
    if fit is not None and fit.source(loc) is not None:
        return _fix_scaled(fit, index, lambda w, h: min(output_size(content, w, h)) >= need)
    aspect = content.height / content.width
    section = "" if loc[0] == "stage" else "output."
    if width and height:
        return (f"set both sides to at least {need} ({section}width = {max(width, need)}, "
                f"{section}height = {max(height, need)})")
    wide = max(need, math.ceil(need / aspect))
    while min(output_size(content, wide, None)) < need:
        wide += 1
    if wide <= 16384:
        return f"set {section}width = {wide} or more"
    return f"the content image is {content.width}x{content.height}, too narrow to keep its aspect: give both output.width and output.height"


def _fix_scaled(fit, index: int, fits) -> str:
    """The fix for a stage scaled from the output's size that was given as an override: the
    user gave output.width (not this stage's), so say which output.width (and height, if
    given) is enough for `fits(stage width, stage height)`."""
    width, height = fit.given_width, fit.given_height
    given = f"output.width ({width}) and output.height ({height})" if height else f"output.width ({width})"
    why = f"stage {index + 1} is scaled from the {given} given, as the recipe's stages ({fit.proportions()}) are"
    least = least_output_size(fit, index, fits)
    if not least:
        larger = "give a larger output.width"
    elif height:
        larger = f"give output.width = {least[0]} and output.height = {least[1]} or more"
    else:
        larger = f"give output.width = {least[0]} or more"
    return f"{why}: {larger}, or use a recipe without stages (or set the stages' sizes, stage[N].width)"


# ---------------------------------------------------------------- weights


def weight_problems(parts, losses, dtype, at) -> list[Problem]:
    """Each loss weight (times `strength`, for the terms it scales) must be a number the
    run's precision holds. A term's weighted value is computed in float32 (float64 if the
    features are) and its gradient goes back through the backbone in the run's precision,
    starting as weight x the term's slope: past that precision's largest number (3.4e38 in
    fp32 and bf16, which shares its exponent; 65504 in fp16) the weight itself is infinite
    there, so the loss is infinite (NaN where the term is 0) or the gradient is wherever
    the slope reaches 1, and no run can use it. Below it, whether weight x value or weight
    x slope overflows depends on the term, the layers and the image, which nothing known
    before the run bounds; the loop's check finds that at the step it happens."""
    import torch

    from stylekit.recipe.devices import dtype_name

    largest = torch.finfo(dtype).max
    problems = []
    for loss in losses:
        if loss.weight <= largest:
            continue
        written = parts.loss[loss.index].weight
        what = (f"{written:g} is more than" if written > largest else
                f"{written:g} x strength {parts.strength:g} = {loss.weight:g} is more than")
        other = " or set run.precision = \"bf16\"" if dtype == torch.float16 else ""
        problems.append(at(("loss", loss.index, "weight"), (
            f"{what} {dtype_name(dtype)}, the run's precision, can hold ({largest:.4g}): the weighted term and its "
            f"gradient would be infinite - lower it{' or the strength' if written <= largest else ''}{other} (only the "
            "weights' ratios matter: divide them all by the same number)")))
    return problems


# ---------------------------------------------------------------- outputs


def output_problems(parts, at, beside: bool = False) -> list[Problem]:
    """The output path, its run record and plots: writable, and replacing none of the inputs
    nor any file that stylekit did not write. With `beside` (for `stylekit run` and
    `validate`), also every other file a run writes or removes beside the output."""
    output = parts.output
    if output is None:
        return []
    out = Path(output.path)
    problems = path_problems(out, parts.images, ("output", "path"), at, record=output.record,
                             plot=output.plot, save_every=output.save_every)
    if beside and not problems:
        endings = [e for _, e in _beside_endings(out, output, _total_steps(parts))]
        too_long = name_length_problem(out, endings, "choose a shorter output name")
        if too_long:
            return [at(("output", "path"), too_long)]
        problems += beside_problems(out, output.save_every, output.plot, _total_steps(parts), ("output", "path"), at)
    return problems


def _beside_endings(out: Path, output, total: int | None) -> list[tuple[str, str]]:
    """(what, how its name ends after the output's stem) of each file a run may write."""
    endings = [("the image", out.suffix), ("the run record", ".json"), ("the checkpoint", ".checkpoint.pt"),
               ("the last finite image", ".diverged.png")]
    if output.save_every and total:
        endings.append(("the intermediate images", intermediate_path(Path("x"), total).name[1:]))
    if output.plot:
        endings.append(("the loss plot", ".losses.png"))
    return endings


#: What the hidden temporary file of a write adds to a name: '.NAME.PID.stylekit-tmp', with
#: room for a 7-digit process id (Linux's largest, pid_max 4194304).
TEMP_EXTRA = len(f"..{'9' * 7}{TEMP_MARK}")


def name_length_problem(out: Path, endings: list[str], fix: str) -> str | None:
    """Why `out` is a name the file system refuses (longer than its NAME_MAX, 255 bytes on
    most), given that a file named stem + each of `endings` is written beside it through a
    hidden temporary file; None when it is not."""
    folder = out.parent
    while not folder.exists() and folder.parent != folder:
        folder = folder.parent
    try:
        limit = os.pathconf(folder, "PC_NAME_MAX")
    except (OSError, ValueError, AttributeError):  # not told (or not a POSIX system): the common limit
        limit = 255
    stem = len(os.fsencode(out.stem))
    longest = max(len(os.fsencode(ending)) for ending in endings) + TEMP_EXTRA
    if stem + longest <= limit:
        return None
    name = out.name if len(out.name) <= 60 else f"{out.name[:40]}...{out.name[-15:]}"
    return (f"the output's name {name} is {len(os.fsencode(out.name))} bytes long; the file system takes names of up "
            f"to {limit} bytes, and the files stylekit writes beside it make that at most "
            f"{limit - longest + len(os.fsencode(out.suffix))} bytes for this name - {fix}")


def _total_steps(parts) -> int | None:
    if parts.stage:
        return sum(stage.steps for stage in parts.stage)
    return parts.run.steps if parts.run is not None else None


def run_files(out: Path, save_every: int, plot: bool, total: int | None) -> list[tuple[Path, str, str, str]]:
    """(path, what it is, what several are, how to do without) of every file `stylekit run`
    may write or remove beside `out`, the image's record aside: the checkpoint (kept when the
    run is stopped, removed when it finishes), the intermediate images and the plots."""
    files = [(checkpoint_path(out), "the checkpoint", "", "")]
    if save_every and total and out.parent.is_dir():
        # Listed, not tried step by step: a run of 100,000 steps may save every one.
        pattern = re.compile(re.escape(out.stem) + r"\.step(\d+)\.png")
        for path in sorted(out.parent.iterdir()):
            found = pattern.fullmatch(path.name)
            step = int(found.group(1)) if found and found.group(1).isascii() else 0
            if step and step % save_every == 0 and step < total and path.name == intermediate_path(out, step).name:
                files.append((path, "an intermediate image (output.save_every)", "the intermediate images "
                              "(output.save_every)", "set output.save_every = 0"))
    if plot:
        files.append((losses_plot_path(out), "the loss plot (output.plot)", "", "set output.plot = false"))
        if save_every and total and save_every < total:
            files.append((strip_path(out), "the strip of images (output.plot)", "", "set output.plot = false"))
    return files


def beside_problems(out: Path, save_every: int, plot: bool, total: int | None, loc: tuple, at) -> list[Problem]:
    """A run replaces or removes beside `out` only what stylekit wrote (each file names the
    image it was written for, `outputs.written_for`), and nothing written for another image
    that is still there (x.png's, when writing x.jpg: both have x.checkpoint.pt)."""
    problems, refused = [], {}
    for path, what, several, without in run_files(out, save_every, plot, total):
        if not (path.exists() or path.is_symlink()):
            continue
        if path.is_dir() and not path.is_symlink():
            also = f" or {without}" if without else ""
            problems.append(at(loc, f"{what} would go to {path}, which is a folder - move it away, choose another "
                                    f"output name{also}"))
            continue
        owner = written_for(path)
        if owner is None:
            refused.setdefault((what, several, without, None), []).append(path)
        elif owner and owner != out.name and (path.parent / owner).is_file():
            refused.setdefault((what, several, without, path.parent / owner), []).append(path)
    for (what, several, without, owner), paths in refused.items():
        whose = f"written for {owner}" if owner else "that stylekit did not write"
        also = f" or {without}" if without else ""
        if len(paths) == 1:
            problems.append(at(loc, f"{what} would replace {paths[0]}, a file {whose} - move it away, choose another "
                                    f"output name{also}"))
        else:
            names = ", ".join(p.name for p in paths[:3]) + (f" and {len(paths) - 3} more" if len(paths) > 3 else "")
            problems.append(at(loc, f"{several} would replace {len(paths)} files {whose} in {paths[0].parent} "
                                    f"({names}) - move them away, choose another output name{also}"))
    return problems


def save_problems(path: Path, plan, record: bool) -> list[Problem]:
    """`output_problems` for `Result.save(path)`, which may name a path other than the
    recipe's: the same checks, so that the API never overwrites what `stylekit run` keeps."""
    def at(loc, message: str) -> Problem:
        return Problem(message, field="Result.save path")

    wrong_suffix = None if path.is_dir() else unsupported_suffix(str(path))  # a folder: say so instead
    if wrong_suffix:
        return [at((), wrong_suffix)]
    too_long = name_length_problem(path, [path.suffix, ".json"] if record else [path.suffix], "choose a shorter name")
    if too_long:
        return [at((), too_long)]
    return path_problems(path, plan.recipe.images, (), at, record=record, no_record="pass record=False")


def path_argument(value, argument: str) -> Path:
    """`value`, an argument of the Python API that names a file or folder, as a Path; a
    UserError naming `argument` when it cannot be one (not text or a path, a NUL in it)."""
    from stylekit.errors import UserError

    if not isinstance(value, (str, os.PathLike)) or isinstance(os.fspath(value), bytes):
        raise UserError(Problem(f"must be a path (a str or a pathlib.Path), not {type(value).__name__}", field=argument))
    if "\0" in os.fspath(value):
        raise UserError(Problem(f"a path cannot contain a NUL character (\\0) (got {os.fspath(value)!r})", field=argument))
    return Path(value)


def path_problems(out: Path, images, loc: tuple, at, record: bool = True, plot: bool = False,
                  save_every: int = 0, what: str = "the output image",
                  no_record: str = "set output.record = false") -> list[Problem]:
    """Problems with writing an image to `out` (and, as asked, its record, plots and
    intermediate images) for a recipe whose inputs are `images`. `what` names the image
    in messages, `no_record` says how to go without the record (the recipe's field, or
    the API's argument)."""
    if out.is_dir():
        return [at(loc, f"{out} is a folder - give a file name in it, e.g. {out / 'stylized.png'}")]
    problems = writable_folder(out.parent, loc, at)
    if problems:
        return problems
    written = {out: what}
    if record:
        written[record_path(out)] = "the run record"
    if plot:
        written[out.with_name(f"{out.stem}.losses.png")] = "the loss plot"
        written[out.with_name(f"{out.stem}.strip.png")] = "the strip of images"
    for path, label in _inputs(images):
        real = os.path.realpath(path)
        for target, what in written.items():
            if real == os.path.realpath(target):
                problems.append(at(loc, f"{what} would overwrite the input {label} {path} - choose another output path"))
        if save_every and re.fullmatch(re.escape(out.stem) + r"\.step\d{5}\.png", Path(path).name) \
                and Path(real).parent == Path(os.path.realpath(out)).parent:
            problems.append(at(loc, f"an intermediate image (output.save_every) would overwrite the input {label} {path} "
                                    f"- choose another output path"))
    if record and not problems:
        problems += _record_problems(record_path(out), out, loc, at, no_record)
    return problems


def _inputs(images):
    """(path, what it is) of every input file; images given in memory have no path."""
    if images is None:
        return []
    found = [(images.content, "content image"), *((p, "style image") for p in images.style)]
    found += [(p, "style mask") for p in images.style_masks or []]
    if images.init not in INIT_CHOICES:
        found.append((images.init, "init image"))
    return [(path, what) for path, what in found if path != MEMORY]


def writable_folder(folder: Path, loc: tuple, at) -> list[Problem]:
    """The folder exists and can be written to, or can be made (nothing is created here)."""
    existing = folder
    while not existing.exists():
        if existing.parent == existing:
            break
        existing = existing.parent
    if not existing.is_dir():
        return [at(loc, f"{existing} is a file, not a folder - choose another output path")]
    try:
        with tempfile.TemporaryFile(dir=existing):
            pass
    except OSError as exc:
        return [at(loc, f"cannot write in {existing} ({exc.strerror or exc}) - choose a folder you can write to")]
    return []


def _record_problems(record: Path, out: Path, loc: tuple, at, no_record: str) -> list[Problem]:
    if not record.exists():
        return []
    if record.is_dir():
        return [at(loc, f"the run record would go to {record}, which is a folder - choose another output name "
                        f"or {no_record}")]
    special = regular_kind(record)
    if special:  # never opened: reading a FIFO waits for a writer, a device may never end
        return [at(loc, f"the run record would replace {record}, which is not a regular file ({special}) - choose "
                        f"another output name or {no_record}")]
    if not is_run_record(record):
        return [at(loc, f"the run record would replace {record}, which is not a stylekit run record - choose "
                        f"another output name or {no_record}")]
    # x.png's record is x.json, and so is x.jpg's: replacing it would leave x.png described
    # by the record of another image. (A record that names no image predates the "image" key.)
    described = _read_record(record).get("image")
    if isinstance(described, str) and described != out.name and (record.parent / described).is_file():
        return [at(loc, f"the run record would replace {record}, the record of {record.parent / described} - choose "
                        f"another output name or {no_record}")]
    return []


def is_stylekit_output(image: Path) -> bool:
    """Whether `image` is an image stylekit wrote: its run record is beside it and names it
    (or names no image, as records did before they named one)."""
    record = record_path(image)
    return is_run_record(record) and _read_record(record).get("image", image.name) == image.name


def is_run_record(path: Path) -> bool:
    """Whether `path` holds a run record stylekit wrote (so writing a new one loses nothing)."""
    data = _read_record(path)
    versions = data.get("versions")
    return "recipe_file" in data and isinstance(versions, dict) and "stylekit" in versions


def _read_record(path: Path) -> dict:
    """The JSON object in `path`; empty if it is none (unreadable, not a regular file, too
    large, not JSON)."""
    try:
        data = json.loads(read_bytes(path, RECORD_LIMIT, "run record").decode("utf-8"))
    except (OSError, ValueError, RecursionError):  # RecursionError: JSON nested past Python's stack
        return {}
    return data if isinstance(data, dict) else {}
