"""Built-in optical-flow providers, for `stylekit video` (a recipe's `[flow]` table).

- `dis`: OpenCV's Dense Inverse Search (Kroeger et al., ECCV 2016): fast on a CPU, from the
  optional extra `video` (`pip install 'stylekit[video]'`); with SIFT matches' motions where
  DIS loses a small fast region (`flow_matches.py`).
- `file`: flow the user computed beforehand (DeepFlow, FlowNet, RAFT's own scripts) as
  Middlebury `.flo` files.
- `raft`: torchvision's RAFT (Teed & Deng, ECCV 2020), loaded from a state-dict file the
  user gives: nothing is ever downloaded.

Each computes flow and nothing else: how far a flow can be trusted is stylekit's
(`stylekit.video.warp.certainty`), and whether what a provider returns keeps the contract is
checked by `stylekit.video.flows.checked_flow`.
"""

from __future__ import annotations

import json
import re
import string
from pathlib import Path
from typing import Literal

import torch
import torch.nn.functional as F
from pydantic import Field, ValidationInfo, field_validator

from stylekit.builtins.flow_matches import KeypointCache, with_matched_motions
from stylekit.contract.components import Params
from stylekit.contract.flow import FlowProvider, FramePair
from stylekit.contract.hookspecs import hookimpl
from stylekit.errors import Problem, UserError
from stylekit.files.flo import read_flo

VIDEO_EXTRA = "pip install 'stylekit[video]'"

#: ITU-R BT.601 luma weights: what OpenCV's own RGB-to-grey conversion uses.
LUMA = (0.299, 0.587, 0.114)


def grey_8bit(image: torch.Tensor):
    """A (1, 3, H, W) RGB image in [0, 1] as the (H, W) uint8 numpy array OpenCV's flow takes."""
    weights = torch.tensor(LUMA, dtype=torch.float32).view(1, 3, 1, 1)
    grey = (image.detach().float().cpu() * weights).sum(1)[0]
    return (grey.clamp(0, 1) * 255).round().to(torch.uint8).contiguous().numpy()


class DIS(FlowProvider):
    """OpenCV's DIS optical flow on 8-bit grey frames: fast on a CPU (tens of ms a 720p pair)."""

    name = "dis"
    #: `matches` came after videos had work folders; off, the flow is what it was before it.
    params_added_later = {"matches": False}

    class Params(Params):
        preset: Literal["ultrafast", "fast", "medium"] = Field(
            "medium", description="OpenCV's speed/quality preset: medium is the most accurate, ultrafast the fastest")
        matches: bool = Field(
            False, description="where DIS's flow does not explain the frames, also try the motions that SIFT feature "
                               "matches agree on: DIS, coarse to fine, gives a small region that moves farther than "
                               "its size the motion around it (a ball, a car far off); matches find it "
                               "(stylekit/builtins/flow_matches.py). For clips with such motion: it cost twice "
                               "DIS's time a flow (58 against 30 ms at 640x360), and gained nothing on real footage "
                               "graded by DIS (docs/video.md).")

    def __init__(self, params):
        super().__init__(params)
        try:
            import cv2  # the optional extra `video`: only a video needs it, and only this provider
        except ImportError:
            raise UserError(f"flow 'dis' needs OpenCV, which is not installed - {VIDEO_EXTRA}") from None
        preset = {"ultrafast": cv2.DISOPTICAL_FLOW_PRESET_ULTRAFAST, "fast": cv2.DISOPTICAL_FLOW_PRESET_FAST,
                  "medium": cv2.DISOPTICAL_FLOW_PRESET_MEDIUM}[params.preset]
        self._create = lambda: cv2.DISOpticalFlow_create(preset)
        self._cv2 = cv2
        self._keypoints = KeypointCache()

    def flow(self, source: torch.Tensor, target: torch.Tensor, pair: FramePair) -> torch.Tensor:
        # A new instance per pair: one that is reused carries state from the pair before (its
        # flow for the same two frames moved by 2 px after one other call, measured), so a
        # flow would depend on what was asked before it: a resumed video, which asks for
        # fewer flows, would not repeat the frames of an uninterrupted one. Creating one
        # costs microseconds against the milliseconds of a pair.
        source_grey, target_grey = grey_8bit(source), grey_8bit(target)
        computed = self._create().calc(source_grey, target_grey, None)  # (H, W, 2): u, v
        if self.params.matches:
            computed = with_matched_motions(self._cv2, source_grey, target_grey, computed, self._keypoints)
        return torch.from_numpy(computed).permute(2, 0, 1).unsqueeze(0).float().contiguous()


#: What may follow a frame number's name in a pattern: padding to a width, as file names
#: numbered by other tools are (`{source:05d}`), and nothing else (a width of 10**9 would
#: build a gigabyte of name).
NUMBER_SPEC = re.compile(r"0?[0-9]{0,2}d?")


def _pattern(value: str) -> str:
    """A file-name pattern whose only fields are {source} and {target}, both present, each
    perhaps padded ({source:05d}): each pair of frames then has a file of its own. The
    messages quote it as a recipe writes it (the loader then adds no "got ...")."""
    quoted = json.dumps(value)
    try:
        fields = [(name, spec, conversion) for _, name, spec, conversion in string.Formatter().parse(value)
                  if name is not None]
    except ValueError as exc:
        raise ValueError(f"{quoted} is not a pattern with {{source}} and {{target}} ({exc})") from None
    names = {name for name, _, _ in fields}
    unknown = sorted(names - {"source", "target"})
    if unknown:
        raise ValueError(f"{quoted} names {', '.join('{' + u + '}' for u in unknown)} - a pattern may name only "
                         "{source} and {target}, the frames' numbers")
    if names != {"source", "target"}:
        raise ValueError(f"{quoted} lacks {' and '.join('{' + f + '}' for f in sorted({'source', 'target'} - names))}"
                         " - every pair of frames needs a file of its own, e.g. flow/forward_{source}_{target}.flo")
    for name, spec, conversion in fields:
        if conversion or not NUMBER_SPEC.fullmatch(spec or ""):
            raise ValueError(f"{quoted}: {{{name}}} may only be padded to a width, as in {{{name}:05d}}")
    return value


class FlowFiles(FlowProvider):
    """Precomputed flow from Middlebury .flo files (DeepFlow, FlowNet and RAFT's scripts write them)."""

    name = "file"
    reads_files = True

    class Params(Params):
        forward: str = Field(
            "flow/forward_{source}_{target}.flo",
            description="file of the flow from frame {source} to the next one, {target} (each may be padded: "
                        "{source:05d}); relative to the folder of frames (the current folder for a video file) or "
                        "absolute")
        backward: str = Field(
            "flow/backward_{source}_{target}.flo",
            description="file of the flow from frame {source} back to the one before, {target}; as forward")
        first: int = Field(0, ge=0, description="the number the files give the first frame (1 where they count from 1, "
                                                "as Ruder et al.'s scripts do)")

        @field_validator("forward", "backward")
        @classmethod
        def _patterns(cls, value: str) -> str:
            return _pattern(value)

    def path(self, pair: FramePair) -> Path:
        """The file that holds the flow of `pair`."""
        pattern = self.params.forward if pair.target > pair.source else self.params.backward
        name = Path(pattern.format(source=pair.source + self.params.first, target=pair.target + self.params.first))
        return name if name.is_absolute() or pair.frames_dir is None else Path(pair.frames_dir) / name

    def flow(self, source: torch.Tensor, target: torch.Tensor, pair: FramePair) -> torch.Tensor:
        path = self.path(pair)
        which = "forward" if pair.target > pair.source else "backward"
        if not path.is_file():
            raise UserError(Problem(
                f"no such file, for the {which} flow of frames {pair.source} -> {pair.target} - write the {which} flow "
                f"of every pair of frames there, set flow.params.{which} to the pattern your files follow, or choose a "
                "provider that computes flow (flow.name = \"dis\")", file=str(path)))
        flow = read_flo(path)
        if flow.shape[-2:] != source.shape[-2:]:
            raise UserError(Problem(
                f"the flow for frames {pair.source} -> {pair.target} is {flow.shape[-1]}x{flow.shape[-2]} pixels, but "
                f"the frames are {source.shape[-1]}x{source.shape[-2]} - compute the flow at the frames' size",
                file=str(path)))
        return flow


#: RAFT looks for matches on a correlation pyramid of 4 levels, each half the one before,
#: over features at 1/8 of the frame; torchvision asks the features for 16 pixels a side,
#: so a frame needs 128, and its sides a multiple of 8.
RAFT_MULTIPLE = 8
RAFT_MIN_SIDE = 128


class RAFT(FlowProvider):
    """torchvision's RAFT with weights from a file you give (nothing is downloaded): accurate, best on a GPU."""

    name = "raft"

    class Params(Params):
        model: Literal["raft_large", "raft_small"] = Field(
            "raft_large", description="torchvision's architecture the weights are for")
        weights: str = Field(
            description="a state-dict file of that model (torch.save(model.state_dict(), path)), e.g. torchvision's "
                        "released weights downloaded by you; relative to the recipe's folder")
        iterations: int = Field(12, ge=1, le=64, description="RAFT's refinements of the flow (fewer: faster, coarser)")

        @field_validator("weights")
        @classmethod
        def _existing_file(cls, value: str, info: ValidationInfo) -> str:
            # A recipe's paths are read from its folder (`base`, given by the loader).
            base = (info.context or {}).get("base")
            path = Path(value).expanduser()
            if base is not None and not path.is_absolute():
                path = Path(base) / path
            if not path.is_file():
                where = "" if str(path) == value else f" ({path})"
                raise ValueError(f"{json.dumps(value)} is not a file{where} - give the path of a state dict saved from "
                                 "torchvision's raft_large or raft_small")
            return str(path)

    def __init__(self, params):
        super().__init__(params)
        from torchvision.models import optical_flow  # torchvision's models load only where a RAFT is built

        self.model = getattr(optical_flow, params.model)(weights=None).eval().requires_grad_(False)
        try:
            state = torch.load(params.weights, map_location="cpu", weights_only=True)
        except Exception as exc:  # noqa: BLE001 - whatever the file is, it is not a state dict: one message
            raise UserError(Problem(f"cannot read {params.weights} as a torch state dict ({type(exc).__name__}: "
                                    f"{exc}) - give a file saved with torch.save(model.state_dict(), path)",
                                    field="params.weights")) from None
        try:
            self.model.load_state_dict(state)
        except Exception as exc:  # noqa: BLE001 - a dict of other keys or shapes, or not a dict at all
            first = (str(exc).strip().splitlines() or [""])[0]
            raise UserError(Problem(f"{params.weights} holds no {params.model} weights ({type(exc).__name__}: "
                                    f"{first}) - give that model's state dict, or set flow.params.model to the one "
                                    "it is for", field="params.weights")) from None
        self._on = torch.device("cpu")

    def flow(self, source: torch.Tensor, target: torch.Tensor, pair: FramePair) -> torch.Tensor:
        if self._on != self.device:
            self.model.to(self.device)
            self._on = self.device
        height, width = source.shape[-2:]

        def padded(image: torch.Tensor) -> torch.Tensor:
            # To a multiple of 8 and at least RAFT_MIN_SIDE, repeating the edge (no new edges
            # for RAFT to match); torchvision's RAFT reads frames in [-1, 1].
            pad_h = max(RAFT_MIN_SIDE, -(-height // RAFT_MULTIPLE) * RAFT_MULTIPLE) - height
            pad_w = max(RAFT_MIN_SIDE, -(-width // RAFT_MULTIPLE) * RAFT_MULTIPLE) - width
            image = image.to(self.device, torch.float32) * 2 - 1
            return F.pad(image, (0, pad_w, 0, pad_h), mode="replicate") if pad_h or pad_w else image

        with torch.inference_mode():
            flows = self.model(padded(source), padded(target), num_flow_updates=self.params.iterations)
        return flows[-1][..., :height, :width].float().cpu().contiguous()


@hookimpl
def register_flow_providers(register):
    for cls in (DIS, FlowFiles, RAFT):
        register(cls)
