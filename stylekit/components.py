"""Base classes for the four kinds of component: backbones, loss terms, optimizers, schedulers.

A component is a class with a `name` (what a recipe writes) and a nested pydantic `Params`
model that validates the recipe's `params` table. Built-ins and third-party plugins
subclass these same classes and register them through the hooks in `stylekit.hookspecs`.
"""

from __future__ import annotations

from abc import abstractmethod
from collections import OrderedDict
from dataclasses import dataclass, field
from typing import Callable, ClassVar

import torch
from pydantic import BaseModel, ConfigDict
from torch import nn
from torch.utils.checkpoint import checkpoint


class Params(BaseModel):
    """Base for component params: unknown keys are errors, so typos never pass silently;
    nan and inf are refused (a subclass that means them can set allow_inf_nan=True)."""

    model_config = ConfigDict(extra="forbid", allow_inf_nan=False)


class Component:
    name: ClassVar[str]
    Params: ClassVar[type[BaseModel]] = Params
    kind: ClassVar[str]
    #: One line shown by `stylekit plugins`; defaults to the first line of the docstring.
    summary: ClassVar[str] = ""

    @classmethod
    def describe(cls) -> str:
        doc = (cls.__doc__ or "").strip()
        return cls.summary or (doc.splitlines()[0] if doc else "")


# ---------------------------------------------------------------- backbones


class Backbone(Component, nn.Module):
    """A frozen feature extractor that reads images in RGB [0, 1], whatever its weights expect.

    Subclasses take `(params, weights)` in `__init__`, where `weights` is the recipe's
    `backbone.weights` string, and implement `layer_names` and `features`.
    """

    kind = "backbone"
    #: Whether `features` honours `self.checkpointing` (recompute activations in backward).
    supports_checkpointing: ClassVar[bool] = False
    checkpointing: bool = False
    #: Weights a recipe may name besides a path to a state dict; the first is the default.
    weight_choices: ClassVar[tuple[str, ...]] = ("random",)

    @classmethod
    @abstractmethod
    def layer_names_for(cls, params: BaseModel) -> tuple[str, ...]:
        """Every layer a backbone built with `params` offers, in forward order.

        A classmethod so that recipes are checked without loading any weights.
        """

    @classmethod
    def min_input_side_for(cls, params: BaseModel, layers: frozenset[str]) -> int:
        """The fewest pixels an image needs on each side for `features` to read `layers`
        (each pooling or stride-2 layer before the deepest one halves the image). Recipes
        are checked against it at load; the default, 1, suits backbones that do not
        downsample. A classmethod, like `layer_names_for`: no weights are loaded."""
        return 1

    @property
    def layer_names(self) -> tuple[str, ...]:
        return self.layer_names_for(self.params)

    @abstractmethod
    def features(self, image: torch.Tensor, layers: frozenset[str]) -> dict[str, torch.Tensor]:
        """Run the network on `image` (N, 3, H, W, RGB in [0, 1]) and return the named layers."""

    def truncate(self, layers: frozenset[str]) -> None:
        """Drop everything after the last of `layers`; the engine calls this once before a run."""


class SequentialBackbone(Backbone):
    """A backbone made of named modules in sequence, with its own input normalization.

    Subclasses call `super().__init__(modules)` with an OrderedDict of name -> module and
    override `normalize`. Features are taken on the way through, and the forward pass
    stops at the deepest requested layer.
    """

    supports_checkpointing = True

    def __init__(self, modules: "OrderedDict[str, nn.Module]"):
        nn.Module.__init__(self)
        self.body = nn.Sequential(modules)
        self.requires_grad_(False)
        self.eval()

    def normalize(self, image: torch.Tensor) -> torch.Tensor:
        return image

    def truncate(self, layers: frozenset[str]) -> None:
        names = [name for name, _ in self.body.named_children()]
        last = max((names.index(name) for name in layers), default=-1)
        self.body = self.body[: last + 1]

    def features(self, image: torch.Tensor, layers: frozenset[str]) -> dict[str, torch.Tensor]:
        x = self.normalize(image)
        if self.checkpointing and torch.is_grad_enabled():
            return self.checkpointed_features(x, layers)
        wanted = set(layers)
        out: dict[str, torch.Tensor] = {}
        kept = True  # whether x is referenced elsewhere: normalize may return the image itself
        for name, module in self.body.named_children():
            if not wanted:
                break
            x = run_in_sequence([module], x, input_is_kept=kept)
            kept = name in wanted
            if name in wanted:
                out[name] = x
                wanted.discard(name)
        return out

    def checkpointed_features(self, x: torch.Tensor, layers: frozenset[str]) -> dict[str, torch.Tensor]:
        """Features with activation checkpointing: the modules between two requested layers
        run as one segment whose activations are recomputed in the backward pass; only the
        requested layers are kept."""
        wanted = set(layers)
        out: dict[str, torch.Tensor] = {}
        pending: list[nn.Module] = []
        branches: list[tuple[str, nn.Module, torch.Tensor]] = []
        for name, module in self.body.named_children():
            if not wanted:
                break
            pending.append(module)
            if name not in wanted:
                continue
            wanted.discard(name)
            if len(pending) == 1 and wanted:
                # A one-module segment (conv1_1, straight from the image) is cheap to run
                # twice. As a segment boundary it would stay alive, with the gradient the
                # losses send it, until the backward pass reaches the first block, where
                # the peak is; so the next segment runs it again, and the losses read a
                # copy computed after the chain, whose backward pass then comes first.
                branches.append((name, module, x))
                continue
            x = checkpoint(run_in_sequence, pending, x, use_reentrant=False)
            out[name] = x
            pending = []
        for name, module, source in branches:
            out[name] = checkpoint(run_in_sequence, [module], source, use_reentrant=False)
        return out


def run_in_sequence(modules: list[nn.Module], x: torch.Tensor, input_is_kept: bool = True) -> torch.Tensor:
    """Apply `modules` in turn, running each ReLU in place where what it reads is a
    temporary: no other reference to it, so overwriting it saves one activation-sized
    buffer (at full resolution, the largest of the step). The input itself, a requested
    layer or the caller's tensor, is never overwritten."""
    for index, module in enumerate(modules):
        if type(module) is nn.ReLU and not (index == 0 and input_is_kept):
            x = torch.relu_(x)
        else:
            x = module(x)
    return x


# ---------------------------------------------------------------- loss terms


@dataclass
class Targets:
    """What loss terms compare against, computed once per run before the loop (no gradients).

    `content` and each entry of `styles` map layer name -> features of that image;
    `style_weights` are the blend weights of the style images and sum to 1.
    `style_masks`, when the recipe gives masks, holds one (1, 1, H, W) mask in [0, 1] per
    style image at the output's size: where that style applies (Gatys et al. 2017).
    """

    content_image: torch.Tensor
    content: dict[str, torch.Tensor]
    style_images: list[torch.Tensor] = field(default_factory=list)
    styles: list[dict[str, torch.Tensor]] = field(default_factory=list)
    style_weights: list[float] = field(default_factory=list)
    style_masks: list[torch.Tensor] | None = None


class LossTerm(Component, nn.Module):
    """One weighted term of the objective.

    The engine gives each term the features of the layers it names (`self.layers`,
    layer -> per-layer weight) from one shared forward pass. `prepare` runs once before the
    loop, without gradients, and stores whatever the term compares against; `forward`
    returns the term's unweighted scalar value (the engine multiplies by the recipe's weight).
    Features may arrive in bf16; compute in float32 where accuracy matters.
    """

    kind = "loss"
    #: Layers used when a recipe lists none; empty for terms that read only the image.
    default_layers: ClassVar[tuple[str, ...]] = ()
    #: Whether the term reads backbone features at all (False for pixel-space terms like TV).
    reads_features: ClassVar[bool] = True
    #: Whose features `prepare` reads from `Targets`: "content", "style" or both. The engine
    #: computes and keeps only those (at a large size, the content image's early layers
    #: held while the style image runs are a large part of the peak).
    target_images: ClassVar[frozenset[str]] = frozenset({"content", "style"})

    def __init__(self, params: BaseModel, layers: dict[str, float]):
        nn.Module.__init__(self)
        self.params = params
        self.layers = dict(layers)

    def prepare(self, targets: Targets) -> None:
        """Store targets from the content and style features; default: nothing to store."""

    @abstractmethod
    def forward(self, features: dict[str, torch.Tensor], image: torch.Tensor) -> torch.Tensor:
        """The term's value for the synthesized `image` and its `features`."""

    def weighted_sum(self, per_layer: Callable[[str], torch.Tensor]) -> torch.Tensor:
        """Sum of `per_layer(name) * weight` over this term's layers."""
        total = None
        for name, weight in self.layers.items():
            value = per_layer(name) * weight
            total = value if total is None else total + value
        if total is None:
            raise ValueError(f"loss '{self.name}' has no layers")
        return total


# ---------------------------------------------------------------- optimizers and schedulers


class Optimizer(Component):
    """Builds a torch optimizer over the synthesized image."""

    kind = "optimizer"
    #: True when `step` must be given a closure that re-evaluates the loss (L-BFGS).
    needs_closure: ClassVar[bool] = False

    def __init__(self, params: BaseModel):
        self.params = params

    @abstractmethod
    def build(self, variables: list[torch.Tensor]) -> torch.optim.Optimizer:
        """Return a torch optimizer over `variables`."""

    def state_copies(self) -> float:
        """How many image-sized tensors the optimizer's state holds at most (for memory estimates)."""
        return 0.0


class Scheduler(Component):
    """Builds a learning-rate schedule, stepped once after every optimizer step."""

    kind = "scheduler"

    def __init__(self, params: BaseModel):
        self.params = params

    @abstractmethod
    def build(self, optimizer: torch.optim.Optimizer, total_steps: int):
        """Return a torch LR scheduler, or None for a constant learning rate."""


KINDS: dict[str, type[Component]] = {
    "backbone": Backbone,
    "loss": LossTerm,
    "optimizer": Optimizer,
    "scheduler": Scheduler,
}
