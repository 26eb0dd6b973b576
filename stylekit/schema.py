"""The recipe schema: pydantic models of every recipe section, unknown keys rejected.

Components' own params are not here: each component validates its `params` table with its
nested `Params` model (see `stylekit.recipe.load_recipe`). docs/recipe.md is generated
from these models and their `#:` comments.
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any, Literal

from pydantic import AfterValidator, BaseModel, ConfigDict, Field, field_validator, model_validator

from .errors import did_you_mean


class Strict(BaseModel):
    # nan and inf are never meant: a NaN weight turns every step's loss NaN.
    model_config = ConfigDict(extra="forbid", allow_inf_nan=False)


def _no_nul(value: str) -> str:
    if "\0" in value:
        raise ValueError("a path cannot contain a NUL character (\\0)")
    return value


#: A file path (no operating system accepts a NUL in one).
PathStr = Annotated[str, AfterValidator(_no_nul)]
#: A weight: finite and not negative (a negative weight would maximize its term).
Weight = Annotated[float, Field(ge=0)]
#: Pillow's own limit (its DecompressionBombError is raised at twice this).
DEFAULT_MAX_PIXELS = 89_478_485


INIT_CHOICES = ("content", "style", "noise")


class ImagesSpec(Strict):
    #: The content image (a photo): its structure is kept.
    content: PathStr
    #: One style image or several, blended by `style_weights`.
    style: list[PathStr] = Field(min_length=1)
    #: Blend weights of the style images (finite, not negative; normalized to sum to 1); equal when absent.
    style_weights: list[Weight] | None = None
    #: Spatial control: one mask image per style (white: this style applies, black: not);
    #: where no mask is white, no style applies. Read by the `gram` loss.
    style_masks: list[PathStr] | None = None
    #: The style image's size relative to the output (by pixel count), independent of it.
    style_scale: float = Field(1.0, gt=0)
    #: "area": keep the style image's aspect, match the output's pixel count x style_scale^2;
    #: "stretch": resize to the output's exact height and width (as the chapter does).
    style_fit: Literal["area", "stretch"] = "area"
    #: Where the synthesized image starts: "content", "style", "noise", or an image file.
    init: PathStr = "content"
    #: Keep the content's colours: "luminance" transfers style on luminance only and puts the
    #: content's colour back; "histogram" matches the style image's colours to the content's
    #: before the run (Gatys et al. 2017). "none": the style's colours.
    preserve_colors: Literal["none", "luminance", "histogram"] = "none"
    #: The colour transparent parts of an image (PNG, GIF, WebP with alpha) are composited
    #: on: a name ("white", "black", "gray") or "#rrggbb".
    background: str = "white"
    #: The largest image (width x height) read; larger files are refused before decoding,
    #: which protects against decompression bombs. Raise it for very large photos.
    max_pixels: int = Field(DEFAULT_MAX_PIXELS, gt=0)

    @field_validator("background")
    @classmethod
    def known_colour(cls, value: str):
        from PIL import ImageColor

        try:
            ImageColor.getrgb(value)
        except ValueError:
            raise ValueError(f"unknown colour '{value}' - use a name like \"white\" or \"#rrggbb\"") from None
        return value

    @field_validator("style", mode="before")
    @classmethod
    def one_or_many(cls, value):
        return [value] if isinstance(value, str) else value

    @model_validator(mode="after")
    def weights_match(self):
        if self.style_weights is not None and len(self.style_weights) != len(self.style):
            raise ValueError(f"style_weights has {len(self.style_weights)} entries for {len(self.style)} style images")
        if self.style_masks is not None and len(self.style_masks) != len(self.style):
            raise ValueError(f"style_masks has {len(self.style_masks)} entries for {len(self.style)} style images")
        if self.style_weights is not None and (min(self.style_weights) < 0 or sum(self.style_weights) <= 0):
            raise ValueError("style_weights must be non-negative with a positive sum")
        return self


class OutputSpec(Strict):
    #: The stylized image (.png or .jpg); its run record is written beside it as .json.
    path: PathStr = "stylized.png"
    #: Output size in pixels; give one to keep the content image's aspect ratio.
    width: int | None = Field(None, gt=0, le=16384)
    #: Output height in pixels (the default width is 512 when neither is given).
    height: int | None = Field(None, gt=0, le=16384)
    #: Save the current image every N steps (0: never) next to the output.
    save_every: int = Field(0, ge=0)
    #: Write a JSON run record next to the output.
    record: bool = True
    #: Keep a checkpoint (<name>.checkpoint.pt) every N steps (0: only when the run is
    #: interrupted), to continue with `stylekit run RECIPE --resume`. Not to be confused
    #: with run.checkpoint (activation checkpointing, for memory).
    checkpoint_every: int = Field(0, ge=0)
    #: Also write <name>.losses.png (loss curves) and, with save_every, <name>.strip.png.
    plot: bool = False

    @field_validator("path")
    @classmethod
    def image_suffix(cls, value: str):
        if Path(value).suffix.lower() not in (".png", ".jpg", ".jpeg"):
            raise ValueError(f"output path '{value}' must end in .png, .jpg or .jpeg")
        return value


class BackboneSpec(Strict):
    #: A registered backbone (`stylekit plugins` lists them).
    name: str = "vgg19"
    #: A name the backbone knows (vgg19: caffe, torchvision, random) or a state-dict path.
    weights: PathStr | None = None
    #: The backbone's own params (vgg19: pooling, feature_scale, normalization).
    params: dict[str, Any] = {}


class LossSpec(Strict):
    #: A registered loss term (`stylekit plugins` lists them).
    name: str
    #: The term's weight in the total loss (finite, not negative).
    weight: Weight = 1.0
    #: Layers the term reads: a list, or a table of layer -> per-layer weight (finite, not negative).
    layers: list[str] | dict[str, Weight] | None = None
    #: Per-layer weights for a list of `layers`, in the same order (finite, not negative).
    layer_weights: list[Weight] | None = None
    #: The loss term's own params, checked against its Params model.
    params: dict[str, Any] = {}

    @model_validator(mode="after")
    def weights_match(self):
        if self.layer_weights is not None:
            if not isinstance(self.layers, list):
                raise ValueError("layer_weights needs `layers` as a list of the same length")
            if len(self.layer_weights) != len(self.layers):
                raise ValueError(f"layer_weights has {len(self.layer_weights)} entries for {len(self.layers)} layers")
        return self

    def layer_table(self, default: tuple[str, ...]) -> dict[str, float]:
        if isinstance(self.layers, dict):
            return dict(self.layers)
        names = list(default) if self.layers is None else self.layers
        weights = self.layer_weights or [1.0] * len(names)
        return dict(zip(names, weights))


class ComponentSpec(Strict):
    #: A registered component; optimizer defaults to adam, scheduler to none.
    name: str
    #: The component's own params, checked against its Params model.
    params: dict[str, Any] = {}


class RunSpec(Strict):
    #: Optimizer steps (one backbone forward and backward pass each).
    steps: int = Field(500, ge=1)
    #: auto (CUDA, then Apple MPS, then CPU), cpu, cuda, cuda:N or mps.
    device: str = "auto"
    #: auto picks bf16 where the hardware runs it fast (AMX/AVX-512-BF16 CPUs, Ampere+ GPUs).
    precision: Literal["auto", "fp32", "bf16", "fp16"] = "auto"
    #: Seeds torch before anything random; None: a fresh run each time.
    seed: int | None = 0
    #: Keep the image in [0, 1] after every step.
    clamp: bool = True
    #: Print the loss terms every N steps (0: never).
    progress_every: int = Field(10, ge=0)
    #: Output the exponential moving average of the iterates with this decay (0: off), e.g. 0.95.
    ema_decay: float = Field(0.0, ge=0, lt=1)
    #: Activation checkpointing: recompute the backbone's activations in the backward pass
    #: instead of keeping them: less memory for very large outputs, at the cost of the recompute.
    checkpoint: bool = False
    #: Opt-in torch.compile of the forward pass and the loss terms; see docs/performance.md.
    compile: bool = False
    #: On CUDA, record the forward and backward pass once as a CUDA graph and replay it every
    #: step: no per-operation launch cost, which dominates at small sizes. Ignored elsewhere.
    #: Loss terms must not read values back to the host (`.item()`, `if tensor:`) in forward.
    cuda_graph: bool = False

    @field_validator("device")
    @classmethod
    def known_device(cls, value: str):
        base = value.split(":")[0]
        if base not in ("auto", "cpu", "cuda", "mps"):
            raise ValueError(f"unknown device '{value}'{did_you_mean(base, ['auto', 'cpu', 'cuda', 'mps'])}")
        return value


class StageSpec(Strict):
    #: This stage's output width (the height keeps the content's aspect unless given).
    width: int = Field(gt=0, le=16384)
    height: int | None = Field(None, gt=0, le=16384)
    #: Steps at this size.
    steps: int = Field(ge=1)


class Recipe(Strict):
    #: Plugin distributions this recipe needs, e.g. ["stylekit-mrf"].
    requires: list[str] = []
    images: ImagesSpec
    output: OutputSpec = OutputSpec()
    backbone: BackboneSpec = BackboneSpec()
    loss: list[LossSpec] = Field(min_length=1)
    optimizer: ComponentSpec = ComponentSpec(name="adam")
    scheduler: ComponentSpec = ComponentSpec(name="none")
    run: RunSpec = RunSpec()
    #: Coarse-to-fine: each stage starts from the upsampled result of the one before and
    #: recomputes targets at its size; the last stage's size is the output's. Overrides
    #: output.width/height and run.steps when given.
    stage: list[StageSpec] = []
