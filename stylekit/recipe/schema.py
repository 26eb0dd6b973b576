"""The recipe schema: pydantic models of every recipe section, unknown keys rejected.

Components' own params are not here: each component validates its `params` table with its
nested `Params` model (see `stylekit.recipe.load.load_recipe`). docs/recipe.md is generated
from these models and their `Field(description=...)`.
"""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Annotated, Any, Literal

from pydantic import AfterValidator, Field, field_validator, model_validator

from stylekit.errors import did_you_mean
from stylekit.files.limits import DEFAULT_MAX_PIXELS, MAX_STEPS
from stylekit.recipe.strict import Strict
from stylekit.recipe.video_schema import FlowSpec, VideoSpec


def _no_nul(value: str) -> str:
    if "\0" in value:
        raise ValueError("a path cannot contain a NUL character (\\0)")
    return value


#: A file path (no operating system accepts a NUL in one).
PathStr = Annotated[str, AfterValidator(_no_nul)]
#: A weight: finite and not negative (a negative weight would maximize its term).
Weight = Annotated[float, Field(ge=0)]
#: The longest side of any image stylekit makes (the output, a stage, a resized style image).
MAX_SIDE = 16384
#: torch keeps a device's index in 8 signed bits (c10::DeviceIndex): "cuda:128" wraps to
#: cuda:-128, and a longer number is not parsed at all.
MAX_DEVICE_INDEX = 127
#: What torch.manual_seed takes: 64 bits, signed or not (a negative seed stands for 2**64 + seed).
SEED_RANGE = (-(2**63), 2**64 - 1)


INIT_CHOICES = ("content", "style", "noise")


class ImagesSpec(Strict):
    content: PathStr = Field(description="The content image (a photo): its structure is kept.")
    style: list[PathStr] = Field(min_length=1, description="One style image or several, blended by `style_weights`.")
    style_weights: list[Weight] | None = Field(
        None, description="Blend weights of the style images (finite, not negative; normalized to sum to 1); "
                          "equal when absent.")
    style_masks: list[PathStr] | None = Field(
        None, description="Spatial control: one mask image per style (white: this style applies, black: not); "
                          "where no mask is white, no style applies. Read by the `gram` loss.")
    # Bounded so that no output (1 pixel a side at the least) gets a style image past MAX_SIDE
    # a side; where the output is larger, the load checks the style image's actual size.
    style_scale: float = Field(
        1.0, gt=0, le=MAX_SIDE,
        description="The style image's size relative to the output (by pixel count), independent of it.")
    style_fit: Literal["area", "stretch"] = Field(
        "area", description='"area": keep the style image\'s aspect, match the output\'s pixel count x style_scale^2; '
                            '"stretch": resize to the output\'s exact height and width (as the chapter does).')
    init: PathStr = Field(
        "content", description='Where the synthesized image starts: "content", "style", "noise", or an image file.')
    preserve_colors: Literal["none", "luminance", "histogram"] = Field(
        "none", description='Keep the content\'s colours: "luminance" transfers style on luminance only and puts the '
                            'content\'s colour back; "histogram" matches the style image\'s colours to the content\'s '
                            'before the run (Gatys et al. 2017). "none": the style\'s colours.')
    background: str = Field(
        "white", description='The colour transparent parts of an image (PNG, GIF, WebP with alpha) are composited '
                             'on: a name ("white", "black", "gray") or "#rrggbb".')
    max_pixels: int = Field(
        DEFAULT_MAX_PIXELS, gt=0, description="The largest image (width x height) read; larger files are refused "
                                              "before decoding, which protects against decompression bombs. Raise "
                                              "it for very large photos.")

    @field_validator("background")
    @classmethod
    def known_colour(cls, value: str):
        from PIL import ImageColor  # only when a colour is given: the JSON Schema tool reads this module without Pillow's cost

        try:
            ImageColor.getrgb(value)
        except ValueError:
            raise ValueError(f"unknown colour '{value}' - use a name like \"white\" or \"#rrggbb\"") from None
        return value

    @field_validator("style", mode="before")
    @classmethod
    def one_or_many(cls, value):
        if isinstance(value, str):
            return [value]
        if isinstance(value, (list, tuple)):
            return value
        # Said here, as pydantic's "should be a valid list" leaves out the single path.
        raise ValueError('give one image path or a list of them, e.g. style = "style.jpg" or '
                         'style = ["a.jpg", "b.jpg"]')

    @model_validator(mode="after")
    def weights_match(self):
        if self.style_weights is not None and len(self.style_weights) != len(self.style):
            raise ValueError(f"style_weights has {len(self.style_weights)} entries for {len(self.style)} style images")
        if self.style_masks is not None and len(self.style_masks) != len(self.style):
            raise ValueError(f"style_masks has {len(self.style_masks)} entries for {len(self.style)} style images")
        if self.style_weights is not None and (min(self.style_weights) < 0 or sum(self.style_weights) <= 0):
            raise ValueError("style_weights must be non-negative with a positive sum")
        return self


def unsupported_suffix(path: str) -> str | None:
    """What is wrong with `path` as an output image's name (its suffix picks the format), or None."""
    if Path(path).suffix.lower() not in (".png", ".jpg", ".jpeg"):
        return f"output path '{path}' must end in .png, .jpg or .jpeg"
    return None


class OutputSpec(Strict):
    path: PathStr = Field(
        "stylized.png", description="The stylized image (.png or .jpg); its run record is written beside it as .json.")
    width: int | None = Field(
        None, gt=0, le=MAX_SIDE, description="Output size in pixels; give one to keep the content image's aspect ratio.")
    height: int | None = Field(
        None, gt=0, le=MAX_SIDE, description="Output height in pixels (the default width is 512 when neither is given).")
    save_every: int = Field(
        0, ge=0, description="Save the current image every N steps (0: never) next to the output.")
    record: bool = Field(True, description="Write a JSON run record next to the output.")
    checkpoint_every: int = Field(
        0, ge=0, description="Keep a checkpoint (<name>.checkpoint.pt) every N steps (0: only when the run is "
                             "interrupted), to continue with `stylekit run RECIPE --resume`. Not to be confused "
                             "with run.checkpoint (activation checkpointing, for memory).")
    plot: bool = Field(
        False, description="Also write <name>.losses.png (loss curves) and, with save_every, <name>.strip.png.")

    @field_validator("path")
    @classmethod
    def image_suffix(cls, value: str):
        wrong = unsupported_suffix(value)
        if wrong:
            raise ValueError(wrong)
        return value


class BackboneSpec(Strict):
    name: str = Field("vgg19", description="A registered backbone (`stylekit plugins` lists them).")
    weights: PathStr | None = Field(
        None, description="A name the backbone knows (vgg19: caffe, torchvision, random) or a state-dict path.")
    params: dict[str, Any] = Field(
        {}, description="The backbone's own params (vgg19: pooling, feature_scale, normalization).")


class LossSpec(Strict):
    name: str = Field(description="A registered loss term (`stylekit plugins` lists them).")
    weight: Weight = Field(1.0, description="The term's weight in the total loss (finite, not negative).")
    layers: list[str] | dict[str, Weight] | None = Field(
        None, description="Layers the term reads: a list, or a table of layer -> per-layer weight (finite, not negative); "
                          "`stylekit plugins` lists each backbone's layers.")
    layer_weights: list[Weight] | None = Field(
        None, description="Per-layer weights for a list of `layers`, in the same order (finite, not negative).")
    params: dict[str, Any] = Field({}, description="The loss term's own params, checked against its Params model.")

    @model_validator(mode="after")
    def weights_match(self):
        if self.layer_weights is not None:
            if not isinstance(self.layers, list):
                raise ValueError("layer_weights needs `layers` as a list of the same length")
            if len(self.layer_weights) != len(self.layers):
                raise ValueError(f"layer_weights has {len(self.layer_weights)} entries for {len(self.layers)} layers")
        return self

    @field_validator("layers", mode="before")
    @classmethod
    def no_single_name(cls, value):
        # One message, not pydantic's two (neither a list nor a table), and the way to write it.
        if isinstance(value, str):
            raise ValueError(f"layers is a list, even of one layer - write layers = [{json.dumps(value)}]")
        return value

    def layer_table(self, default: tuple[str, ...]) -> dict[str, float]:
        if isinstance(self.layers, dict):
            return dict(self.layers)
        names = list(default) if self.layers is None else self.layers
        weights = self.layer_weights or [1.0] * len(names)
        return dict(zip(names, weights))


class ComponentSpec(Strict):
    name: str = Field(description="A registered component; optimizer defaults to adam, scheduler to none.")
    params: dict[str, Any] = Field({}, description="The component's own params, checked against its Params model.")


class RunSpec(Strict):
    steps: int = Field(500, ge=1, le=MAX_STEPS,
                       description="Optimizer steps (one backbone forward and backward pass each).")
    device: str = Field("auto", description="auto (CUDA, then Apple MPS, then CPU), cpu, cuda, cuda:N or mps.")
    precision: Literal["auto", "fp32", "bf16", "fp16"] = Field(
        "auto", description="auto picks bf16 where the hardware runs it fast (AMX/AVX-512-BF16 CPUs, Ampere+ GPUs).")
    seed: int | None = Field(0, ge=SEED_RANGE[0], le=SEED_RANGE[1],
                             description="Seeds torch before anything random; None: a fresh run each time.")
    clamp: bool = Field(True, description="Keep the image in [0, 1] after every step.")
    progress_every: int = Field(10, ge=0, description="Print the loss terms every N steps (0: never).")
    ema_decay: float = Field(
        0.0, ge=0, lt=1, description="Output the exponential moving average of the iterates with this decay (0: off), e.g. 0.95.")
    checkpoint: bool = Field(
        False, description="Activation checkpointing: recompute the backbone's activations in the backward pass "
                           "instead of keeping them: less memory for very large outputs, at the cost of the recompute.")
    compile: bool = Field(
        False, description="Opt-in torch.compile of the forward pass and the loss terms; see docs/performance.md.")
    cuda_graph: bool = Field(
        False, description="On CUDA, record the forward and backward pass once as a CUDA graph and replay it every "
                           "step: no per-operation launch cost, which dominates at small sizes. Ignored elsewhere. "
                           "Loss terms must not read values back to the host (`.item()`, `if tensor:`) in forward.")

    @field_validator("device")
    @classmethod
    def known_device(cls, value: str):
        base, colon, index = value.partition(":")
        if base not in ("auto", "cpu", "cuda", "mps"):
            raise ValueError(f"unknown device '{value}'{did_you_mean(base, ['auto', 'cpu', 'cuda', 'mps'])}")
        if not colon:
            return value
        # torch.device takes what it cannot use: "cuda:-1" and "cpu:abc" fail only when the
        # run starts, "cuda:128" wraps around. A GPU's number, or 0 for the one CPU or MPS device.
        if base == "auto" or not re.fullmatch(r"0|[1-9][0-9]*", index) or \
                int(index) > (MAX_DEVICE_INDEX if base == "cuda" else 0):
            raise ValueError(f"{json.dumps(value)} is no device - write auto, cpu, mps, cuda, or cuda:N with N the "
                             f"number of a GPU (0 for the first, at most {MAX_DEVICE_INDEX})")
        return value


class StageSpec(Strict):
    width: int = Field(
        gt=0, le=MAX_SIDE, description="This stage's output width (the height keeps the content's aspect unless given).")
    height: int | None = Field(
        None, gt=0, le=MAX_SIDE, description="This stage's output height; by default, from its width and the content's aspect.")
    steps: int = Field(ge=1, le=MAX_STEPS, description="Steps at this size (the most it takes, with `min_gain`).")
    min_gain: float = Field(
        0.0, ge=0, lt=1,
        description="End this stage before `steps` once `gain_steps` steps have lowered the loss (the lowest so far) "
                    "by less than this fraction of it: 0.05 is 5%. 0 (the default): always take `steps`. Why: a run "
                    "that has nearly arrived gains little from more steps, while one with a strong style (a high "
                    "`strength`) still has far to go; with it, `steps` can be generous without slowing the runs that "
                    "arrive early. Checked every step on a CPU, every 10 on a GPU (where each check waits for the device).")
    gain_steps: int = Field(
        10, ge=1, le=MAX_STEPS, description="The steps over which `min_gain` is measured; a stage with `min_gain` takes "
                                            "more than this many (a stage of no more steps takes them all).")
    carry: Literal["image", "change"] = Field(
        "image",
        description="What this stage takes from the stage before (not for the first stage, which starts from "
                    "`images.init`). \"image\": its result, upsampled. \"change\": what it changed in the content, "
                    "upsampled and added to the content at this size, so this stage starts with the photo's detail "
                    "that the smaller stage could not hold (edges, a face's features) and the style the smaller "
                    "stage laid down (from a noise or style init, that is its result plus the photo's finer "
                    "detail).")


class Recipe(Strict):
    requires: list[str] = Field([], description='Plugin distributions this recipe needs, e.g. ["stylekit-mrf"].')
    strength: float = Field(
        1.0, gt=0, le=1000, allow_inf_nan=False,
        description="How much style, along the trade between style and the photo's structure: multiplies the "
                    "weight of every loss term that reads the style image's features (1: the recipe's balance, 2: twice "
                    "the style, 0.5: half). Also `--strength`.")
    more_steps_above: float | None = Field(
        None, gt=0, le=1000, allow_inf_nan=False,
        description="Above this strength, each stage takes more steps than it says: its steps times the square root "
                    "of strength / this (with 2: at strength 8 twice, at 32 four times). Why: a strong style's loss "
                    "falls slowly for long, and the picture takes the style with it, while the recipe's steps are "
                    "set for its own balance (docs/quality.md). Not given (the default): the steps as written at any "
                    "strength. Where overrides give steps (`--steps`, `--set stage[N].steps=...`), no stage's steps grow.")
    images: ImagesSpec
    output: OutputSpec = OutputSpec()
    backbone: BackboneSpec = BackboneSpec()
    loss: list[LossSpec] = Field(min_length=1)
    optimizer: ComponentSpec = ComponentSpec(name="adam")
    scheduler: ComponentSpec = ComponentSpec(name="none")
    flow: FlowSpec = FlowSpec()
    run: RunSpec = RunSpec()
    video: VideoSpec = VideoSpec()
    stage: list[StageSpec] = Field(
        [], description="Coarse-to-fine: each stage starts from the upsampled result of the one before and "
                        "recomputes targets at its size; the last stage's size is the output's. In the recipe, "
                        "stages take precedence over output.width/height and run.steps; given as overrides "
                        "(--set output.width=..., --steps ...), those scale the stages and share out their steps.")
