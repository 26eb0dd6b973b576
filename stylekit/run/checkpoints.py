"""Checkpoints to resume a run from: the image, the optimizer's state (L-BFGS history
included), the scheduler, the moving average, the stage and step, the random state and the
loss history so far. Written atomically; read with `torch.load(weights_only=True)`, so a
checkpoint file can hold tensors and plain data but never runs code when loaded.
"""

from __future__ import annotations

import hashlib
import io
from pathlib import Path

import torch

from stylekit.run.engine import Loop
from stylekit.errors import Problem, UserError
from stylekit.files.images import write_bytes_atomic
from stylekit.recipe.plan import Plan
from stylekit.recipe.tomlpos import dotted

FORMAT = 1


def path_for(output: Path) -> Path:
    """Where a run keeps its checkpoint: beside its output, `<name>.checkpoint.pt`."""
    return output.with_name(f"{output.stem}.checkpoint.pt")


def _recipe_key(plan: Plan) -> dict:
    """What must be the same for a checkpoint to continue a run: the recipe but where files
    go, how often they are saved and the progress display; and the input images' pixels
    (a file changed in place, or another image given in memory, is another run)."""
    raw = plan.raw
    for name in ("path", "save_every", "record", "plot", "checkpoint_every"):
        raw.get("output", {}).pop(name, None)
    raw.get("run", {}).pop("progress_every", None)
    inputs = plan.images
    pictures = [inputs.content, *inputs.styles, *(inputs.masks or ()), *([inputs.init] if not isinstance(inputs.init, str) else [])]
    digest = hashlib.sha1()
    for picture in pictures:
        digest.update(repr(picture.size).encode())
        digest.update(picture.tobytes())
    raw["input_pixels"] = digest.hexdigest()
    return raw


def save(path: Path, plan: Plan, stage: int, loop: Loop, history: list[list[float]], seconds: float = 0.0) -> None:
    state = {"format": FORMAT, "recipe": _recipe_key(plan), "stage": stage, "loop": loop.state(),
             "history": history, "rng": torch.get_rng_state(), "seconds": seconds}
    buffer = io.BytesIO()
    torch.save(state, buffer)
    write_bytes_atomic(buffer.getvalue(), path)


def load(path: Path, plan: Plan) -> dict:
    """The checkpoint at `path`, checked against `plan`; a UserError says what is wrong."""
    if not path.is_file():
        raise UserError(Problem(f"no checkpoint to resume from at {path} - run without --resume to start "
                                "(a run keeps one when interrupted, or every output.checkpoint_every steps)", file=plan.source))
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:  # unpickling refuses anything but tensors and plain data
        raise UserError(Problem(f"checkpoint {path} cannot be read ({type(exc).__name__}) - delete it and run "
                                "without --resume", file=plan.source)) from None
    if not isinstance(state, dict) or state.get("format") != FORMAT:
        raise UserError(Problem(f"checkpoint {path} is not a stylekit checkpoint of this version - delete it and "
                                "run without --resume", file=plan.source))
    expected = _recipe_key(plan)
    if state["recipe"] != expected:
        changed = sorted("the input images" if d == "input_pixels" else d for d in _differences(state["recipe"], expected))
        raise UserError(Problem(f"checkpoint {path} was made with a different recipe (changed: {', '.join(changed)}) - "
                                "resume with the recipe it was made with, or run without --resume", file=plan.source))
    return state


def _differences(old, new, loc: tuple = ()) -> set[str]:
    """The dotted fields (`loss[1].weight`) where two recipes differ."""
    if isinstance(old, dict) and isinstance(new, dict):
        return {d for key in set(old) | set(new) for d in _differences(old.get(key), new.get(key), (*loc, key))}
    if isinstance(old, list) and isinstance(new, list) and len(old) == len(new):
        return {d for i, (a, b) in enumerate(zip(old, new)) for d in _differences(a, b, (*loc, i))}
    return set() if old == new else {dotted(loc)}
