"""The checked plan: a recipe resolved once, before the first step.

`stylekit.recipe.load.load_recipe` validates the text and resolves everything that can be known
before the loop into a `Plan`: component classes with their validated params and the
package that provides each, the device and precision, the stages, and the input images,
decoded. The builder and the engine take a plan and never look a name up in the plugin
registry again, so `stylekit validate` and `stylekit run` cannot disagree about a recipe.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable

import torch
from PIL import Image
from pydantic import BaseModel

from stylekit.contract.components import PreviousOutput
from stylekit.errors import Problem
from stylekit.recipe.schema import Recipe, StageSpec

MEMORY = "<in memory>"  # stands for an image given as an object instead of a file


@dataclass(frozen=True)
class Choice:
    """A component the recipe chose: its class, validated params and providing package."""

    cls: type
    params: BaseModel
    package: str

    @property
    def name(self) -> str:
        return self.cls.name


@dataclass(frozen=True)
class LossChoice:
    """One `[[loss]]` entry, resolved."""

    index: int  # position in the recipe's loss list: the entry is `loss[index]`
    label: str  # unique within a run: the loss name, with '#2' etc. for repeats
    choice: Choice
    weight: float
    layers: dict[str, float]

    @property
    def entry(self) -> str:
        return f"loss[{self.index}]"


@dataclass(frozen=True)
class Stage:
    width: int | None
    height: int | None
    steps: int  # the most it takes
    carry: str = "image"  # what a later stage takes from the one before: "image" or "change"
    #: End sooner once `gain_steps` steps lower the lowest loss by less than this fraction (0: never).
    min_gain: float = 0.0
    gain_steps: int = StageSpec.model_fields["gain_steps"].default  # the schema's, written once


@dataclass(frozen=True)
class InputImages:
    """The decoded input images. Files are read once, when the plan is made."""

    content: Image.Image
    styles: tuple[Image.Image, ...]
    style_weights: tuple[float, ...]  # normalized to sum to 1
    masks: tuple[Image.Image, ...] | None
    init: Image.Image | str  # an image, or one of "content", "style", "noise"
    #: Video only (`stylekit.video`): where a later frame starts, (1, 3, H, W) in [0, 1] at
    #: the output's size (the previous output warped into it), in place of `init`.
    start: torch.Tensor | None = None
    #: Video only: earlier frames' outputs warped into this frame, at the output's size, the
    #: nearest first; each stage gets them at its size in `Targets.previous`.
    previous: tuple[PreviousOutput, ...] = ()


@dataclass(frozen=True)
class Plan:
    """Everything a run needs, checked. Immutable: `replace` gives a changed copy."""

    source: str  # the recipe's file, or "<string>" / "<dict>" for recipes given in memory
    recipe: Recipe
    backbone: Choice
    weights: str
    losses: tuple[LossChoice, ...]
    optimizer: Choice
    scheduler: Choice
    #: The optical-flow provider of the recipe's `[flow]` table: validated with every recipe,
    #: built only for a video (`stylekit.run.build.build_flow`).
    flow: Choice
    device: torch.device
    dtype: torch.dtype
    stages: tuple[Stage, ...]
    #: What the recipe's `more_steps_above` multiplied the stages' steps by at its strength (1: as written).
    steps_factor: float
    images: InputImages
    output: Path
    #: Installed plugin packages and their versions, for the run record.
    plugin_versions: dict[str, str]
    #: (loc, message) -> Problem at the recipe's file and line, for errors found later.
    at: Callable[[tuple, str], Problem] = dataclasses.field(repr=False, compare=False, default=None)
    #: The plugin registry the plan was made with: only for making it again with changes
    #: (`stylekit.stylize(plan, content=...)`); running a plan never looks anything up.
    registry: Any = dataclasses.field(repr=False, compare=False, default=None)

    @property
    def path(self) -> Path | None:
        """The recipe file, when the recipe came from one."""
        return None if self.source.startswith("<") else Path(self.source)

    @property
    def raw(self) -> dict[str, Any]:
        """The recipe as validated, as plain JSON-able data."""
        return self.recipe.model_dump(mode="json")

    @property
    def total_steps(self) -> int:
        return sum(stage.steps for stage in self.stages)

    @property
    def layers(self) -> frozenset[str]:
        """Every layer some loss term reads: what the backbone must produce."""
        return frozenset(name for loss in self.losses for name in loss.layers)

    def replace(self, **changes) -> "Plan":
        return dataclasses.replace(self, **changes)
