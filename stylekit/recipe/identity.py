"""What makes two runs one run, for resuming: the recipe as validated, less the fields that
change no pixel (where files go, how often they are kept, how progress shows), and less the
fields and component params added in a later version while they hold the value that does
what stylekit did before them, so that a checkpoint or a video's work folder begun before a
field existed still resumes. A run's checkpoint (`run.checkpoints`) and a video's work folder
(`video.start.run_key`) both key on it, so the two cannot drift apart.
"""

from __future__ import annotations

from typing import Any

from stylekit.recipe.plan import Plan, Stage
from stylekit.recipe.video_schema import FlowSpec

#: Fields that change where files go or what is shown, never a pixel.
NO_PIXEL_FIELDS = (("output", "path"), ("output", "save_every"), ("output", "record"), ("output", "plot"),
                   ("output", "checkpoint_every"), ("run", "progress_every"))

#: Fields added after checkpoints existed, each with the value that does what stylekit did
#: before it ("*" is every element of a list). A new field with a default that changes
#: nothing belongs here; one whose default changes the pixels does not.
FIELDS_ADDED_LATER = ((("flow",), FlowSpec().model_dump(mode="json")),
                      (("stage", "*", "carry"), "image"),
                      (("stage", "*", "min_gain"), 0.0),
                      (("stage", "*", "gain_steps"), Stage.gain_steps))


def resumable_recipe(plan: Plan) -> dict[str, Any]:
    """`plan`'s recipe as plain data, without the fields above."""
    raw = plan.raw
    # The steps the run takes, which `more_steps_above` may have grown with the strength: a
    # run grown to 100 steps is the run that was given 100, and the field itself adds nothing.
    raw.pop("more_steps_above", None)
    if raw.get("stage"):
        for spec, stage in zip(raw["stage"], plan.stages):
            spec["steps"] = stage.steps
    else:
        raw["run"]["steps"] = plan.stages[0].steps
    for path in NO_PIXEL_FIELDS:
        _drop(raw, path, lambda _: True)
    for path, before in FIELDS_ADDED_LATER:
        _drop(raw, path, lambda value, before=before: value == before)
    return raw


def component_params(component) -> Any:
    """A component's params as plain data, without those it declares in `params_added_later`
    while they hold their earlier value (`contract.flow.FlowProvider.params_added_later`)."""
    params = component.params.model_dump(mode="json") if hasattr(component.params, "model_dump") else repr(component.params)
    if isinstance(params, dict):
        for name, before in getattr(component, "params_added_later", {}).items():
            if name in params and params[name] == before:
                params.pop(name)
    return params


def _drop(data, path: tuple, when) -> None:
    """Remove the field at `path` from `data` (dicts and lists) where `when(value)` holds."""
    if not path:
        return
    head, rest = path[0], path[1:]
    if head == "*":
        for item in data if isinstance(data, list) else ():
            _drop(item, rest, when)
    elif isinstance(data, dict) and head in data:
        if rest:
            _drop(data[head], rest, when)
        elif when(data[head]):
            data.pop(head)
