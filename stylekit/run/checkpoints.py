"""Checkpoints to resume a run from: the image, the optimizer's state (L-BFGS history
included), the scheduler, the moving average, the stage and step, the random state and the
loss history so far. Written atomically; read with `torch.load(weights_only=True)`, so a
checkpoint file can hold tensors and plain data but never runs code when loaded, and
checked against the plan before anything is restored from it (`checkpoint_checks`).
"""

from __future__ import annotations

import hashlib
import io
import json
import warnings
from pathlib import Path
from typing import Callable

import torch

from stylekit.errors import Problem, UserError
from stylekit.files.images import write_bytes_atomic
from stylekit.files.outputs import checkpoint_path, not_written
from stylekit.recipe.plan import Plan
from stylekit.recipe.identity import resumable_recipe
from stylekit.recipe.stage_fit import written_steps
from stylekit.recipe.tomlpos import dotted
from stylekit.run.checkpoint_checks import problem_with
from stylekit.run.engine import Loop

FORMAT = 1


def path_for(output: Path) -> Path:
    """Where a run keeps its checkpoint: beside its output, `<name>.checkpoint.pt`."""
    return checkpoint_path(output)


def _recipe_key(plan: Plan) -> dict:
    """What must be the same for a checkpoint to continue a run: the recipe but what changes
    no pixel (`recipe.identity`); and the input images' pixels (a file changed in place, or
    another image given in memory, is another run)."""
    raw = resumable_recipe(plan)
    inputs = plan.images
    pictures = [inputs.content, *inputs.styles, *(inputs.masks or ()), *([inputs.init] if not isinstance(inputs.init, str) else [])]
    digest = hashlib.sha1()
    for picture in pictures:
        digest.update(repr(picture.size).encode())
        digest.update(picture.tobytes())
    raw["input_pixels"] = digest.hexdigest()
    return raw


def state_of(plan: Plan, stage: int, loop: Loop, history: list[list[float]], seconds: float = 0.0,
             output: str | None = None, stage_steps: list[int] | None = None) -> dict:
    """A checkpoint's content. `output` names the image the checkpoint was kept beside (by
    `stylekit run`), so that a later run knows it is stylekit's to replace. `stage_steps`:
    the steps each stage before `stage` took (fewer than its steps where it settled:
    min_gain); default, their steps."""
    taken = list(stage_steps) if stage_steps is not None else [s.steps for s in plan.stages[:stage]]
    return {"format": FORMAT, "output": output, "recipe": _recipe_key(plan), "stage": stage, "loop": loop.state(),
            "history": history, "rng": torch.get_rng_state(), "seconds": seconds, "stage_steps": taken}


def save(path: Path, plan: Plan, stage: int, loop: Loop, history: list[list[float]], seconds: float = 0.0,
         output: str | None = None) -> None:
    write(path, state_of(plan, stage, loop, history, seconds, output))


def write(path: Path, state: dict) -> None:
    buffer = io.BytesIO()
    torch.save(state, buffer)
    write_bytes_atomic(buffer.getvalue(), path)


class CheckpointWarning(UserWarning):
    """A checkpoint could not be written (a full disk, say); the run went on without it."""


class Keeper:
    """Keeps one run's checkpoint at `path`. A checkpoint that cannot be written is a warning
    (`warn(message)`, default a `CheckpointWarning`), never the end of the run. With
    `defer_final`, the state taken when the run stops waits for `flush()`: `stylekit run`
    writes the image and its record first, and the checkpoint, the larger file, after."""

    def __init__(self, path: Path, output: str | None = None, defer_final: bool = False,
                 warn: Callable[[str], None] | None = None):
        self.path, self.output, self.defer_final = Path(path), output, defer_final
        self.warn = warn or (lambda message: warnings.warn(message, CheckpointWarning, stacklevel=3))
        #: The step (over all stages) of the checkpoint at `path` that this run wrote or resumed from.
        self.on_disk: int | None = None
        self.pending: dict | None = None
        self.failed: OSError | None = None  # why the latest write failed; None after a success

    def keep(self, plan: Plan, stage: int, loop: Loop, history: list[list[float]], seconds: float,
             final: bool = False, stage_steps: list[int] | None = None) -> None:
        state = state_of(plan, stage, loop, history, seconds, self.output, stage_steps)
        if final and self.defer_final:
            self.pending = state
        else:
            self._write(state)

    def flush(self) -> bool:
        """Write the state the run stopped with, if it waits; True when it is on disk."""
        state, self.pending = self.pending, None
        return state is not None and self._write(state)

    def discard(self) -> None:
        self.pending = None

    def _write(self, state: dict) -> bool:
        try:
            write(self.path, state)
        except OSError as exc:
            if self.failed is None:  # said once, not at every step while the disk stays full
                self.warn(not_written("the checkpoint", self.path, exc) + "; free some space to keep one")
            self.failed = exc
            return False
        self.failed, self.on_disk = None, len(state["history"])
        return True


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
    if not isinstance(state, dict) or state.get("format") != FORMAT or not isinstance(state.get("recipe"), dict):
        raise UserError(Problem(f"checkpoint {path} is not a stylekit checkpoint of this version - delete it and "
                                "run without --resume", file=plan.source))
    changed = _differences(*_comparable(state["recipe"], _recipe_key(plan)))
    if changed:
        said = [_change(name, *changed[name]) for name in sorted(changed)]
        grew = ""
        if plan.steps_factor != 1 and any(name.endswith("steps") for name in changed):
            grew = (f" (at strength {plan.recipe.strength:g} the recipe's more_steps_above grows its steps; a run begun "
                    f"before stylekit did that resumes with --steps {sum(written_steps(plan.recipe))})")
        raise UserError(Problem(f"checkpoint {path} was made with a different recipe (changed: {', '.join(said)}){grew} - "
                                "resume with the recipe and options it was made with, or run without --resume to "
                                "start again", file=plan.source))
    wrong = problem_with(state, plan)
    if wrong:
        raise UserError(Problem(f"checkpoint {path}: {wrong} - it was changed or damaged after stylekit wrote it; "
                                "delete it and run without --resume", file=plan.source))
    return state


def _comparable(old: dict, new: dict) -> tuple[dict, dict]:
    """Two recipe keys as resuming compares them: a recipe in stages takes its steps from them,
    so where either is in stages, run.steps, which nothing reads there (and --steps shares out
    into the stages), is left out of both."""
    if not (old.get("stage") or new.get("stage")):
        return old, new

    def without_run_steps(key: dict) -> dict:
        if not isinstance(key.get("run"), dict):
            return key
        return {**key, "run": {name: value for name, value in key["run"].items() if name != "steps"}}

    return without_run_steps(old), without_run_steps(new)


def _differences(old, new, loc: tuple = ()) -> dict[str, tuple]:
    """The dotted fields (`loss[1].weight`) where two recipes differ -> (old, new) values."""
    if isinstance(old, dict) and isinstance(new, dict):
        return {d: v for key in set(old) | set(new)
                for d, v in _differences(old.get(key, _LEFT_OUT), new.get(key, _LEFT_OUT), (*loc, key)).items()}
    if isinstance(old, list) and isinstance(new, list) and len(old) == len(new):
        return {d: v for i, (a, b) in enumerate(zip(old, new)) for d, v in _differences(a, b, (*loc, i)).items()}
    return {} if _same(old, new) else {dotted(loc): (old, new)}


#: A field one key has and the other leaves out (at its earlier default: `recipe.identity`).
_LEFT_OUT = object()


def _change(name: str, old, new) -> str:
    """'strength from 8 to 1'; a table, a list, a field one side leaves out, or the input
    images by name alone."""
    if name == "input_pixels":
        return "the input images"
    plain = (bool, int, float, str, type(None))
    if isinstance(old, plain) and isinstance(new, plain):
        return f"{name} from {json.dumps(old, ensure_ascii=False)} to {json.dumps(new, ensure_ascii=False)}"
    return name


def _same(old, new) -> bool:
    """old == new for plain data; False for what cannot be compared so (a tensor that a
    hand-edited checkpoint holds where a recipe has text)."""
    try:
        return type(old) is type(new) and bool(old == new)
    except Exception:
        return False
