"""A video's work folder: every finished frame as an 8-bit PNG and a small JSON state, so
that an interrupted video resumes at the first unfinished frame.

    WORK/state.json         which frames are done (per pass), the scene cuts and anchors, per-frame time
                            and steps, and what the frames were made from (recipe, flow, input)
    WORK/pass1/000000.png   frame 0's output after the first pass (passes > 1: pass2/, ...)
    WORK/input/000000.png   the input frame at the output's size (multi-pass only: the later
                            passes read the frames again, in both directions)

Frames are kept as uint8 and read back as uint8 wherever a later frame starts from them, so a
resumed video is bit for bit the one an uninterrupted run makes. A frame is written (all or
nothing) before the state that counts it: a crash between the two only makes a resumed run
stylize that frame again, from the same inputs, into the same pixels.
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import torch
from PIL import Image

from stylekit.errors import Problem, UserError
from stylekit.files.images import save_atomic, to_image, to_tensor, write_text_atomic

# 2: the anchors (frames a shot's later frames are held to) are kept, and frames depend on them.
# 3: the key is the one a run's checkpoint uses too (stylekit.recipe.identity), so a folder of
#    format 2 would be refused as made with another recipe; it is told it is older instead.
FORMAT = "stylekit-video-3"
FORMAT_PREFIX = "stylekit-video-"
STATE = "state.json"


def frame_digest(image: Image.Image) -> str:
    """What identifies an input frame: its size and pixels."""
    digest = hashlib.sha1(repr((image.mode, image.size)).encode())
    digest.update(image.tobytes())
    return digest.hexdigest()


class WorkFolder:
    """The work folder of one video. `key` says what its frames depend on (recipe, flow
    provider, input): a folder made with another is refused, never mixed."""

    def __init__(self, path: Path, key: dict, resume: bool):
        self.path = path
        self.key = key
        state_file = path / STATE
        if path.exists() and not path.is_dir():
            raise UserError(Problem(f"{path} is a file, not a folder - give a folder for the video's frames",
                                    field="work folder"))
        if resume:
            if not state_file.is_file():
                raise UserError(Problem(f"{path} holds no video to resume (no {STATE}) - run without resume to "
                                        "start it", field="work folder"))
            self.state = self._read(state_file)
            self._check(self.state)
        else:
            if state_file.exists():
                raise UserError(Problem(f"{path} already holds a video's frames - resume it, or give another folder "
                                        "(or delete this one) to start over", field="work folder"))
            if path.is_dir() and any(path.iterdir()):
                raise UserError(Problem(f"{path} is not empty, and not a video's work folder - give an empty or "
                                        "new folder, so that nothing in it is overwritten", field="work folder"))
            self.state = {"format": FORMAT, **key, "frames": [], "pass": 1, "done": 0, "count": None, "cuts": [],
                          "anchors": [], "seconds": [], "steps": []}
            self.save()

    def _read(self, state_file: Path) -> dict:
        try:
            state = json.loads(state_file.read_text(encoding="utf-8"))
        except (OSError, ValueError) as exc:
            raise UserError(Problem(f"{state_file} cannot be read ({exc}) - start the video again in another folder",
                                    field="work folder")) from None
        made_by = state.get("format") if isinstance(state, dict) else None
        if isinstance(made_by, str) and made_by.startswith(FORMAT_PREFIX) and made_by != FORMAT:
            raise UserError(Problem(f"{self.path} was begun by another version of stylekit (its work folder "
                                    f"{made_by}, this version's {FORMAT}), which this one cannot continue - start "
                                    "the video again in another folder (the frames in this one are left as they are)",
                                    field="work folder"))
        if not isinstance(state, dict) or state.get("format") != FORMAT:
            raise UserError(Problem(f"{state_file} is not the state of a stylekit video ({FORMAT}) - give the folder "
                                    "a video was started in", field="work folder"))
        return state

    def _check(self, state: dict) -> None:
        """The folder was made from this recipe, flow and input, or one message says which differs."""
        what = {"recipe": "another recipe (or other style images)", "flow": "another flow provider or flow settings",
                "input": "another input"}
        for name, said in what.items():
            if state.get(name) != self.key.get(name):
                raise UserError(Problem(f"{self.path} holds frames made with {said} - resume with the same recipe, "
                                        "input and flow, or start over in another folder", field="work folder"))

    def check_frame(self, index: int, image: Image.Image) -> None:
        """Frame `index` of the input is the one the folder's frames were made from (each is
        checked as it is read again on resume); a new frame is noted."""
        digest, known = frame_digest(image), self.state["frames"]
        if index < len(known):
            if known[index] != digest:
                raise UserError(Problem(f"{self.path} holds frames made from another input: its frame {index} "
                                        "differs - resume with the same input, or start over in another folder",
                                        field="work folder"))
        else:
            known.append(digest)

    # ---------------------------------------------------------------- frames

    def frame_path(self, pass_number: int, index: int) -> Path:
        return frame_file(self.path, pass_number, index)

    def input_path(self, index: int) -> Path:
        return self.path / "input" / f"{index:06d}.png"

    def write_frame(self, path: Path, tensor: torch.Tensor) -> None:
        save_atomic(to_image(tensor), path)

    @staticmethod
    def read_frame(path: Path) -> torch.Tensor:
        """A frame written here, as the (1, 3, H, W) tensor on the 8-bit grid it was written from."""
        with Image.open(path) as image:
            image.load()
            return to_tensor(image, (image.height, image.width))

    # ---------------------------------------------------------------- progress

    def finished(self, index: int, seconds: float, steps: int, cut: bool, anchor: bool = False) -> None:
        """Frame `index` of the current pass is written: count it (its time and steps added
        to those of earlier passes, whether it began a shot or became its anchor) and keep
        the state."""
        state = self.state
        for name, value in (("seconds", seconds), ("steps", steps)):
            values = state[name]
            values.extend([0] * (index + 1 - len(values)))
            values[index] += value
        if cut and index not in state["cuts"]:
            state["cuts"].append(index)
        if anchor and index not in state["anchors"]:
            state["anchors"].append(index)
        state["done"] += 1
        self.save()

    def next_pass(self, count: int) -> None:
        self.state.update({"pass": self.state["pass"] + 1, "done": 0, "count": count})
        self.save()

    def save(self) -> None:
        write_text_atomic(json.dumps(self.state, indent=1), self.path / STATE)


def frame_file(work: Path, pass_number: int, index: int) -> Path:
    """Where the work folder `work` keeps frame `index`'s output after pass `pass_number`."""
    return work / f"pass{pass_number}" / f"{index:06d}.png"


def remove_work_folder(work: Path) -> None:
    """Remove what a video wrote in its work folder: its state and its frames' folders; a
    file someone else put there stays, and with it the folder."""
    for name in ("input", *(p.name for p in work.glob("pass*") if p.name[4:].isdigit())):
        folder = work / name
        if folder.is_dir():
            for frame in folder.glob("[0-9]*.png"):
                frame.unlink()
            _remove_if_empty(folder)
    (work / STATE).unlink(missing_ok=True)
    _remove_if_empty(work)


def _remove_if_empty(folder: Path) -> None:
    try:
        folder.rmdir()
    except OSError:  # not empty: something not ours is in it
        pass
