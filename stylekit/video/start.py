"""What a frame of a video is run with: the earlier outputs warped into it, the image it
starts from, whether it starts a new shot, and its plan.

A frame after the first of a shot starts from the earlier outputs warped into it (each pixel
from the nearest earlier frame whose flow is certain there, the precedence the temporal loss
uses) and, where none is, from the content frame itself: a disoccluded place has no earlier
stylization to continue. It runs at the output's size alone, for `video.steps` steps. The
first frame of a shot runs the recipe as it is. A frame starts a new shot where less than
`video.scene_cut` of it can be traced to the frame before.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
from collections.abc import Collection

import torch
from PIL import Image

from stylekit.builtins.temporal import DEFAULT_WEIGHT, TemporalLoss, precedence
from stylekit.contract.components import PreviousOutput
from stylekit.contract.flow import FlowProvider
from stylekit.recipe.identity import component_params, resumable_recipe
from stylekit.recipe.plan import Choice, LossChoice, Plan, Stage
from stylekit.recipe.stage_fit import written_steps
from stylekit.video.warp import stillness, warp

#: Per offset k: the flow from the frame to the frame k back, and its certainty.
Flows = dict[int, tuple[torch.Tensor, torch.Tensor]]


def with_temporal(plan: Plan) -> tuple[Plan, list[str]]:
    """`plan` with a temporal loss term: its own, or one added at the default weight, and the
    note that says so (a video without the term would flicker)."""
    if any(loss.choice.name == TemporalLoss.name for loss in plan.losses):
        return plan, []
    index = max((loss.index for loss in plan.losses), default=-1) + 1
    added = LossChoice(index=index, label=TemporalLoss.name, choice=Choice(TemporalLoss, TemporalLoss.Params(), "stylekit"),
                       weight=DEFAULT_WEIGHT, layers={})
    note = (f"the recipe has no temporal loss: added one with weight {DEFAULT_WEIGHT:g} (give the recipe a "
            f"[[loss]] with name = \"temporal\" to choose its weight)")
    return plan.replace(losses=(*plan.losses, added)), [note]


def video_steps(plan: Plan) -> int:
    """Steps for a frame that continues a shot: `video.steps`, or a third of the recipe's as
    written. A warm start is most of the way there already: with recipes/gatys.toml (70
    steps) a later frame's content and style stay within 6% of the frame stylized alone at 16
    to 23 steps, where 8 leave its style 11% off and 35 overshoot (benchmarks/temporal_weight.py,
    at strength 1). `more_steps_above` grows a shot's first frame's steps with the strength,
    not these: a later frame starts from its style already laid down."""
    return plan.recipe.video.steps or max(1, round(sum(written_steps(plan.recipe)) / 3))


def warped_earlier(outputs: dict[int, torch.Tensor], flows: Flows, anchor: int | None = None,
                   offsets: Collection[int] | None = None) -> list[PreviousOutput]:
    """Earlier outputs ((1, 3, H, W), by how many frames back they are) warped into the frame
    by `flows` (by the same offsets), nearest first: those `offsets` back (default: all),
    then, if `anchor` is given, the one that many frames back as the shot's anchor (also
    among the others when it is one of `offsets`). The anchor holds still regions only: its
    certainty is the flow's times `stillness`, 0 wherever the region moved since the anchor.
    A flow over many frames is less sure than one over a frame, and a warp resamples, which
    blurs: in a moving region the frames before hold it better; in a still one the anchor
    is the image itself, neither warped nor blurred."""
    if anchor is not None and anchor not in flows:
        raise ValueError(f"the anchor, {anchor} frame(s) back, has no flow among {sorted(flows)}: give its flow too")
    found = []
    for offset in sorted(flows):
        backward, certain = flows[offset]
        warped, _ = warp(outputs[offset].float(), backward)
        earlier = PreviousOutput(warped.clamp(0, 1), certain, offset)
        if offsets is None or offset in offsets:
            found.append(earlier)
        if offset == anchor:
            held = dataclasses.replace(earlier, certainty=certain * stillness(backward), anchor=True)
    return found + [held] if anchor is not None else found


def warm_start(previous: list[PreviousOutput], content: torch.Tensor) -> torch.Tensor:
    """Each pixel from the nearest earlier output certain of it (`precedence`; the anchor
    holds, it does not start), the rest from the content frame."""
    previous = [p for p in previous if not p.anchor]
    if not previous:
        return content
    weights = precedence([p.certainty for p in previous])
    images = torch.cat([p.image.float() for p in previous])
    claimed = (weights * images).sum(0, keepdim=True)
    return (claimed + (1 - weights.sum(0, keepdim=True)) * content.float()).clamp(0, 1)


def blended_start(own: torch.Tensor, neighbour: PreviousOutput, share: float) -> torch.Tensor:
    """A later pass's start (Ruder's multi-pass): the frame's own output, moved by `share`
    towards its neighbour's warped output where that is certain."""
    return (own + share * neighbour.certainty * (neighbour.image - own)).clamp(0, 1)


def traced_share(previous: list[PreviousOutput]) -> float:
    """How much of the frame the frame before can be traced to: its mean certainty."""
    nearest = next((p for p in previous if p.offset == 1 and not p.anchor), None)
    return float(nearest.certainty.mean()) if nearest is not None else 0.0


def frame_plan(plan: Plan, frame: Image.Image, start: torch.Tensor | None = None,
               previous: list[PreviousOutput] = (), steps: int | None = None) -> Plan:
    """The plan of one frame: the recipe as it is with `frame` as the content (a shot's
    first frame), or, given `steps`, one stage at the output's size of that many steps that
    starts at `start`, with `previous` for the temporal loss."""
    images = dataclasses.replace(plan.images, content=frame, start=start, previous=tuple(previous))
    if steps is None:
        return plan.replace(images=images)
    last = plan.stages[-1]
    return plan.replace(images=images, stages=(Stage(last.width, last.height, steps),))


def run_key(plan: Plan, flow: FlowProvider, identity) -> dict:
    """What a video's frames depend on, for its work folder (`WorkFolder`'s key): the recipe
    as a checkpoint keys on it (`recipe.identity`: without where files go, how progress shows
    and the fields added later at their earlier value) and without the video's crf, which
    changes no frame; the style images' pixels, the loss terms (the temporal one added too),
    the flow provider and its params, and the input's identity as the caller gives it."""
    raw = resumable_recipe(plan)
    if plan.steps_factor != 1:  # the first frames' steps grew with the strength, the later frames' did not
        raw["later_frame_steps"] = video_steps(plan)
    raw.get("images", {}).pop("content", None)  # the frames are the content
    raw.get("video", {}).pop("crf", None)
    pictures = hashlib.sha1()
    for picture in (*plan.images.styles, *(plan.images.masks or ())):
        pictures.update(repr(picture.size).encode())
        pictures.update(picture.tobytes())
    losses = [[loss.label, loss.choice.name, loss.weight, loss.layers, loss.choice.params.model_dump(mode="json")]
              for loss in plan.losses]
    recipe = json.dumps({"recipe": raw, "pictures": pictures.hexdigest(), "losses": losses}, sort_keys=True)
    return {"recipe": hashlib.sha1(recipe.encode()).hexdigest(),
            "flow": {"name": getattr(flow, "name", type(flow).__name__), "params": component_params(flow)},
            "input": identity}
