"""Checks of a recipe's inputs at load time, so that `stylekit validate` and `stylekit run`
agree and a run never fails, after its optimization, on something that could be known
before it: every image large enough for the layers the losses read (at every stage, with
the fix that makes it so), and loss weights the run's precision can hold."""

from __future__ import annotations

import math
from typing import TYPE_CHECKING

import torch

from stylekit.errors import Problem
from stylekit.files.images import output_size, style_size
from stylekit.recipe.devices import dtype_name
from stylekit.recipe.schema import MAX_SIDE
from stylekit.recipe.stage_fit import least_output_size

if TYPE_CHECKING:
    from PIL import Image


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
