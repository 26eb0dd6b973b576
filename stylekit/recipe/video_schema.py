"""The recipe tables only a video reads: `[flow]`, the optical-flow provider, and `[video]`,
how `stylekit video` stylizes a clip. Checked in every recipe (`stylekit.recipe.schema`);
a still image ignores them.
"""

from __future__ import annotations

from typing import Any

from pydantic import Field, field_validator

from stylekit.files.limits import MAX_STEPS
from stylekit.recipe.strict import Strict


class FlowSpec(Strict):
    name: str = Field(
        "dis", description="The optical-flow provider `stylekit video` asks for the motion between neighbouring frames "
                           "(`stylekit plugins` lists them): dis (OpenCV's, on the CPU), file (precomputed .flo "
                           "files), raft (a RAFT model from a weights file you give). Checked in every recipe; "
                           "only a video uses it.")
    params: dict[str, Any] = Field({}, description="The provider's own params, checked against its Params model.")


#: The longest reach back in frames: each offset keeps one more earlier frame in memory and
#: costs two more flows per frame.
MAX_OFFSET = 64


class VideoSpec(Strict):
    """How `stylekit video` stylizes a clip (Ruder, Dosovitskiy & Brox 2016); a still image ignores it."""

    steps: int | None = Field(
        None, ge=1, le=MAX_STEPS,
        description="Steps for each frame after the first of a shot, at the output's size alone (the first frame, "
                    "and the first after a scene cut, run the recipe's stages and steps). It starts from the "
                    "previous output warped into it, so it needs far fewer; default: a third of the recipe's "
                    "steps, at least 1.")
    offsets: list[int] = Field(
        [1, 2, 4], min_length=1,
        description="How many frames back the temporal loss looks (1 must be among them): a pixel is held to the "
                    "nearest of these earlier outputs that saw it, so a place uncovered again after an occlusion "
                    "looks as it did. Each offset costs two optical flows per frame, computed while the frame "
                    "before is optimized; [1, 2, 4] halved the drift over 10 frames against [1] "
                    "(benchmarks/temporal_weight.py).")
    scene_cut: float = Field(
        0.5, ge=0, le=1,
        description="Restart as a first frame (all stages, the recipe's steps, no temporal loss) when less than "
                    "this fraction of the frame can be traced to the frame before (the mean certainty of the flow); "
                    "0: never.")
    anchor: bool = Field(
        True,
        description="Also hold each frame, with twice the weight of the frames before, to its shot's anchor "
                    "wherever the region is still since then and the flow certain: the anchor is the shot's first "
                    "output (passed on to a later frame once less than `scene_cut` of the frame can be traced to it). "
                    "Held only to the frames just before, a still region drifts as every frame runs its steps "
                    "further (17/255 over 100 frames of a still clip); the anchor keeps it where the shot began. "
                    "Costs two optical flows per frame.")
    passes: int = Field(
        1, ge=1, le=100,
        description="1: one pass, frame after frame. More: Ruder's multi-pass; after the first pass, passes "
                    "alternate direction (backward, forward, ...), each frame starting from its output blended "
                    "with its neighbour's (in the pass's direction) warped into it, where the flow is certain, "
                    "and run for `steps` steps.")
    blend: float = Field(
        0.5, ge=0, le=1,
        description="In passes after the first: the share of the neighbour's warped output in a frame's start "
                    "(where the flow is certain; elsewhere the frame's own output).")
    crf: int = Field(18, ge=0, le=51, description="The x264 quality of the written video (0: lossless, 51: worst).")

    @field_validator("offsets")
    @classmethod
    def from_one(cls, value: list[int]):
        if any(k < 1 or k > MAX_OFFSET for k in value):
            raise ValueError(f"offsets are frames back, from 1 to {MAX_OFFSET}")
        if 1 not in value:
            raise ValueError("offsets must hold 1: the frame before is where a frame starts from and how a scene "
                             "cut is found")
        return sorted(set(value))
