"""The contract: base classes of four kinds of component (backbones, loss terms,
optimizers, schedulers; the fifth, flow providers, is in `stylekit.contract.flow`) and what the engine hands them (`Targets`).

A component is a class with a `name` (what a recipe writes) and a nested pydantic `Params`
model that validates the recipe's `params` table. Built-ins and third-party plugins
subclass these same classes and register them through the hooks in `stylekit.contract.hookspecs`.
Helpers that implement part of the contract live apart: `stylekit.contract.sequential`
(`SequentialBackbone`, with activation checkpointing). docs/components.md is generated
from this module.
"""

from __future__ import annotations

from abc import ABCMeta, abstractmethod
from dataclasses import dataclass, field
from typing import Callable, ClassVar

import torch
from pydantic import BaseModel, ConfigDict
from torch import nn


class Params(BaseModel):
    """Base for component params: unknown keys are errors, so typos never pass silently;
    nan and inf are refused (a subclass that means them can set allow_inf_nan=True)."""

    model_config = ConfigDict(extra="forbid", allow_inf_nan=False)


# ABCMeta makes `@abstractmethod` binding. nn.Module's metaclass is plain `type`, so the
# kinds that are also modules (Backbone, LossTerm) take ABCMeta without a joint metaclass.
class Component(metaclass=ABCMeta):
    """What every component class has. A subclass sets `name` and, when it takes params,
    a nested `class Params(stylekit.contract.components.Params)` whose fields (with
    `Field(description=...)`) validate the recipe's `params` table; the validated model is
    what `__init__` receives as `params`.

    Its abstract methods (marked **Implement** in the reference) are those a subclass must
    define: a class that lacks one cannot be instantiated, and registering it leaves its
    plugin out as broken, with the class and the method named (`stylekit.plugins.conformance`)."""

    #: What a recipe writes to choose it (`name = "gram"`); unique per kind among the
    #: installed plugins. Required.
    name: ClassVar[str]
    Params: ClassVar[type[BaseModel]] = Params
    #: "backbone", "loss", "optimizer" or "scheduler": set by the base class, not by plugins.
    kind: ClassVar[str]
    #: One line shown by `stylekit plugins`; defaults to the first line of the docstring.
    summary: ClassVar[str] = ""

    @classmethod
    def describe(cls) -> str:
        """The line `stylekit plugins` shows: `summary`, or the docstring's first line."""
        doc = (cls.__doc__ or "").strip()
        return cls.summary or (doc.splitlines()[0] if doc else "")


# ---------------------------------------------------------------- backbones


class Backbone(Component, nn.Module):
    """A frozen feature extractor that reads images in RGB [0, 1], whatever its weights expect.

    Subclasses take `(params, weights)` in `__init__` and keep `params` as `self.params`;
    `weights` is the recipe's `backbone.weights`: one of `weight_choices` or the path of a
    file, and the first of `weight_choices` when the recipe leaves it out. They implement
    `layer_names_for` and `features`; `SequentialBackbone` (in `stylekit.contract.sequential`)
    implements both for a network that runs its layers one after another. When it is
    built, stylekit asks it for every layer `layer_names_for` lists, on a small image, and
    reports a layer it does not return as the plugin's error.
    """

    kind = "backbone"
    #: Whether `features` honours `self.checkpointing` (recompute activations in backward).
    supports_checkpointing: ClassVar[bool] = False
    #: Set by the engine before a run (`run.checkpoint`); read by `features`.
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
        """`layer_names_for(self.params)`: the layers this built backbone offers."""
        return self.layer_names_for(self.params)

    @abstractmethod
    def features(self, image: torch.Tensor, layers: frozenset[str]) -> dict[str, torch.Tensor]:
        """Run the network on `image` (N, 3, H, W, RGB in [0, 1]) and return a dict with one
        (N, C, H', W') tensor for each name in `layers` (names from `layer_names_for`).

        Called once per image for the targets (without gradients) and once every step on
        the synthesized image, whose gradient flows back through the result. The image may
        arrive in bf16 and channels_last; the network has been cast to the same dtype.
        """

    def truncate(self, layers: frozenset[str]) -> None:
        """Drop everything after the last of `layers`; the engine calls this once before a
        run. Optional: the default keeps the whole network."""


# ---------------------------------------------------------------- loss terms


@dataclass
class Targets:
    """What loss terms compare against, computed once per run before the loop (no gradients),
    on the run's device, and handed to every term's `prepare`.

    - `content_image`: the content image, (1, 3, H, W) RGB in [0, 1] at the output's size.
    - `content`: layer name -> the content image's features, for the layers of the terms
      whose `target_images` include "content" (empty otherwise).
    - `style_images`: each style image, (1, 3, H_s, W_s) RGB in [0, 1]; its size follows
      `images.style_scale`, not the output's.
    - `styles`: per style image, layer name -> its features (layers of the terms whose
      `target_images` include "style").
    - `style_weights`: the recipe's blend weight of each style image, normalized to sum to 1.
    - `style_masks`: None, or when the recipe gives masks one (1, 1, H, W) mask in [0, 1]
      per style image at the output's size: where that style applies (Gatys et al. 2017).

    Features may be bf16 (the run's precision); they are the backbone's, shared by every
    term, so a term copies what it changes.
    """

    content_image: torch.Tensor
    content: dict[str, torch.Tensor]
    style_images: list[torch.Tensor] = field(default_factory=list)
    styles: list[dict[str, torch.Tensor]] = field(default_factory=list)
    style_weights: list[float] = field(default_factory=list)
    style_masks: list[torch.Tensor] | None = None
    #: Video only (`stylekit video`): earlier frames' outputs warped into this frame, the
    #: nearest first; empty for a still image. Read by pixel-space terms such as `temporal`.
    previous: list[PreviousOutput] = field(default_factory=list)


@dataclass
class PreviousOutput:
    """An earlier frame's output brought into the frame being stylized by optical flow."""

    #: (1, 3, H, W) RGB in [0, 1] at the output's size: the earlier output, warped.
    image: torch.Tensor
    #: (1, 1, H, W) in [0, 1]: where the warp can be trusted (0: disoccluded, a motion
    #: boundary, or outside the earlier frame); see `stylekit.video.warp.certainty`.
    certainty: torch.Tensor
    #: How many frames back it is (1: the frame just before).
    offset: int
    #: True for the shot's anchor: the output a still region is held to for the whole shot,
    #: besides the frames before, so that it does not drift as the frames go on; its
    #: certainty is 0 where the region moved (`temporal` adds it with its own weight; see
    #: `stylekit.builtins.temporal`).
    anchor: bool = False


class LossTerm(Component, nn.Module):
    """One weighted term of the objective.

    The engine gives each term the features of the layers it names (`self.layers`,
    layer -> per-layer weight) from one shared forward pass. `prepare` runs once before the
    loop, without gradients, and stores whatever the term compares against; `forward`
    returns the term's unweighted scalar value (the engine multiplies by the recipe's weight).
    Features may arrive in bf16; compute in float32 where accuracy matters.

    `self.step` is the step being taken, counted from 1 over all stages as the callback's
    `StepInfo.step` is; the engine sets it before each step's evaluations, so every call of
    `forward` within one optimizer step sees the same value (L-BFGS evaluates several times
    a step in its line search; counting calls would not give the step). 0 before the first
    step (in `prepare`). A term whose value depends on it does not suit `run.cuda_graph`
    (the recorded pass is replayed, not run again, so it keeps the step it was recorded at)
    nor `run.compile` (compiled again for every new value); both are off by default.
    """

    kind = "loss"
    #: The step being taken (see above): set by the engine, read by the term.
    step: int = 0
    #: Layers used when a recipe's `[[loss]]` lists none, e.g. ("conv4_4",) for the built-in
    #: content term; empty for terms that read only the image. The recipe is checked
    #: against the backbone with these, as with listed layers.
    default_layers: ClassVar[tuple[str, ...]] = ()
    #: Whether the term reads backbone features at all (False for pixel-space terms like TV).
    reads_features: ClassVar[bool] = True
    #: Whose features `prepare` reads from `Targets`: "content", "style" or both. The engine
    #: computes and keeps only those (at a large size, the content image's early layers
    #: held while the style image runs are a large part of the peak).
    target_images: ClassVar[frozenset[str]] = frozenset({"content", "style"})

    def __init__(self, params: BaseModel, layers: dict[str, float]):
        """`params`: the validated `Params`; `layers`: layer name -> per-layer weight, from
        the recipe's `layers` (or `default_layers`), empty when `reads_features` is False.
        A subclass that overrides it calls `super().__init__(params, layers)`."""
        nn.Module.__init__(self)
        self.params = params
        self.layers = dict(layers)

    def prepare(self, targets: Targets) -> None:
        """Store targets from the content and style features; default: nothing to store."""

    @abstractmethod
    def forward(self, features: dict[str, torch.Tensor], image: torch.Tensor) -> torch.Tensor:
        """The term's value for the synthesized `image` and its `features`."""

    @classmethod
    def together(cls, terms: list[LossTerm]) -> Callable[[dict[str, torch.Tensor], torch.Tensor], torch.Tensor] | None:
        """Optional: evaluate several images' instances of this term in one go (`stylekit
        batch --batch-size`, off the CPU), or None to have each called on its own image's
        slice of the features (the default, right for every term).

        `terms` are this class's instances, one per image, each prepared with its own
        image's targets. The returned function takes the features of the stacked (n, 3, H, W)
        images and the images themselves and returns the n unweighted values, each as its
        term's `forward` would give it for its image alone (a sum may round differently).
        Per image, a built-in term is a handful of small kernels; with the images stacked
        it is the same handful for all of them, which is what keeps a GPU busy. Return None
        for a group it cannot evaluate together (e.g. params that differ between images)."""
        return None

    @staticmethod
    def configured_alike(terms: list[LossTerm]) -> bool:
        """Whether every term has the first one's params and layer weights: the usual
        condition for `together`, since the images of a group share a recipe."""
        return all(t.params == terms[0].params and t.layers == terms[0].layers for t in terms)

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
    """Builds the torch optimizer that updates the synthesized image.

    The pixels are the only variables: `build` receives a one-element list holding the
    image, a (1, 3, H, W) float32 leaf tensor in RGB [0, 1] that requires grad, once per
    run (and once per stage). Each step, the engine calls the returned optimizer's
    `step()` after computing the gradient (or `step(closure)` when `needs_closure`), then
    the scheduler's `step()`, then clamps the image to [0, 1] (`run.clamp`). Learning
    rates are in units of that image.
    """

    kind = "optimizer"
    #: True when `step` must be given a closure that zeroes the gradient, re-evaluates the
    #: loss and its gradient and returns the loss (L-BFGS); False: the engine computes the
    #: gradient itself and calls `step()` without arguments.
    needs_closure: ClassVar[bool] = False

    def __init__(self, params: BaseModel):
        """Keeps the validated `Params` as `self.params`; `build` reads them."""
        self.params = params

    @abstractmethod
    def build(self, variables: list[torch.Tensor]) -> torch.optim.Optimizer:
        """Return a torch optimizer over `variables` (the image, see the class docstring),
        configured from `self.params`."""

    def build_together(self, variables: list[torch.Tensor]) -> BatchedStepper | None:
        """Optional: one stepper for several images optimized in step (`stylekit batch
        --batch-size`), or None to have `build` called once per image (the default).

        `variables` are same-shape (1, 3, H, W) float32 leaves, one per image, that go
        through the backbone in one stacked pass (off the CPU). The stepper must move each
        image as the optimizer `build` returns would move it alone: the same algorithm,
        with its state per image and no coupling between images (a sum may round
        differently). It is never given a closure, and it is used only where the scheduler
        builds none (a constant learning rate), so nothing else steps it. The built-in
        L-BFGS without line search returns a `stylekit.builtins.batched_lbfgs.BatchedLBFGS`, whose
        two-loop recursion runs once for the whole group instead of once per image."""
        return None

    def state_copies(self) -> float:
        """How many image-sized float32 tensors the optimizer's state holds at most (Adam: 2,
        L-BFGS with history m: 2m + 3); used by `stylekit run --dry-run` to estimate
        memory. Optional: the default, 0, underestimates a stateful optimizer."""
        return 0.0


class BatchedStepper(metaclass=ABCMeta):
    """What `Optimizer.build_together` returns: one optimizer for a group of images,
    each with its own state. After each stacked pass has set every image's `.grad`, the
    engine calls `step` once for the group (where it would call each image's torch
    optimizer), then clamps each image and checks it for divergence."""

    @abstractmethod
    def step(self, alive: list[int], losses: torch.Tensor) -> None:
        """Move the images at the indices `alive` (into the `variables` it was built over)
        by one step, each from its own `.grad`, as its own optimizer would. `losses[k]` is
        the loss of image `alive[k]` where that gradient was taken (what its optimizer's
        closure would return; a 1-d tensor on the images' device). An image not in `alive`
        has stopped (it diverged) and must be left as it is; it never comes back. A
        stepper whose `step` takes `alive` alone (written before the losses were passed)
        is still called that way."""


class Scheduler(Component):
    """Builds a learning-rate schedule, stepped once after every optimizer step."""

    kind = "scheduler"

    def __init__(self, params: BaseModel):
        """Keeps the validated `Params` as `self.params`; `build` reads them."""
        self.params = params

    @abstractmethod
    def build(self, optimizer: torch.optim.Optimizer, total_steps: int):
        """Return a torch LR scheduler over `optimizer` (what the optimizer component built),
        or None for a constant learning rate. `total_steps` is the number of steps of this
        run (of this stage, for a recipe with stages): `step()` is called that many times,
        once after each optimizer step, never before the first."""



