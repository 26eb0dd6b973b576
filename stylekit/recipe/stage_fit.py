"""Overrides of the whole run (`--set output.width=...`, `--steps ...`) carried into a recipe
that runs in stages.

In the recipe, stages take precedence over `output.width`/`height` and `run.steps`; given as
overrides, those mean the whole run, so the stages are scaled to them. The scaled values are
not what the recipe says, so a problem with one of them must not point at the recipe's line:
`StageFit` remembers which override each scaled field came from, and the messages name it.
(A stage's own height, scaled with `output.width` alone, came from `output.width`.)
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

from stylekit.files.limits import MAX_STEPS
from stylekit.recipe.plan import Stage
from stylekit.recipe.schema import Recipe
from stylekit.recipe.tomlpos import dotted

@dataclass
class StageFit:
    """What `fit_stages_to_overrides` did to the stages, for messages about them."""

    #: (loc, message) of each override that cannot be carried into the stages.
    problems: list[tuple[tuple, str]] = field(default_factory=list)
    #: The stage fields that were scaled ('width', 'height', 'steps') -> the override key that scaled them.
    scaled: dict[str, tuple] = field(default_factory=dict)
    #: The stages' widths and heights (None where not given) as the recipe has them.
    widths: tuple[int, ...] = ()
    heights: tuple[int | None, ...] = ()
    #: The output size the stages were scaled to; the height only where it was an override.
    given_width: int | None = None
    given_height: int | None = None

    def source(self, loc: tuple) -> tuple | None:
        """The override key that set the stage field at `loc` (('stage', 0, 'width')), or None
        when the recipe's own value is there."""
        loc = tuple(loc)
        if len(loc) >= 3 and loc[0] == "stage":
            return self.scaled.get(loc[2])
        return None

    def sources(self) -> dict[str, str]:
        """dotted stage field -> dotted override key, for every scaled field."""
        return {dotted(("stage", i, name)): dotted(key)
                for i in range(len(self.widths)) for name, key in self.scaled.items()}

    def stage_size(self, index: int, width: int, height: int | None) -> tuple[int, int | None]:
        """(width, height) of stage `index` for an output of `width` (and `height`, if given):
        the stages keep the recipe's proportions and the last one takes the size."""
        share = self.widths[index] / self.widths[-1]
        if height:
            return max(1, round(width * share)), max(1, round(height * share))
        own = self.heights[index]
        return max(1, round(width * share)), (max(1, round(own * width / self.widths[-1])) if own else None)

    def proportions(self) -> str:
        """'256 and 512 px wide' (the recipe's stages)."""
        widths = [str(w) for w in self.widths]
        return f"{', '.join(widths[:-1])} and {widths[-1]} px wide"


def fit_stages_to_overrides(data: dict, overridden) -> StageFit:
    """An override of `output.width` (and `output.height`) or `run.steps` on a recipe that
    runs in stages means the whole run (`--set output.width=1024` or `--steps 100` on the
    default recipe), where the stages would otherwise take precedence and the flag would do
    nothing: the stages keep their proportions, the last one takes the size, and the steps
    are shared out as the recipe shares them. The sizes and the steps are apart: an
    override of the stages' steps leaves --width to scale their sizes, and one of their
    sizes leaves --steps to share out the steps. Where the stages' own sizes (or steps) are
    overridden too, they must say what the whole-run override says (every stage given, the
    last one the output's size, the steps adding up), else that is a problem naming both.
    Problems also: `output.height` overridden alone (the stages' widths would depend on the
    content's aspect), and fewer steps than stages. `overridden`: the override keys (an
    `Overrides`, whose flags name them in messages, or any collection of key paths)."""
    fit = StageFit()
    stages = data.get("stage")
    if not isinstance(stages, list) or not stages:
        return fit
    if not all(isinstance(s, dict) and _positive(s.get("width")) and _positive(s.get("steps")) for s in stages):
        return fit  # the schema reports what is wrong with them
    fit.widths = tuple(s["width"] for s in stages)
    fit.heights = tuple(s.get("height") if _positive(s.get("height")) else None for s in stages)
    output, run = data.get("output") or {}, data.get("run") or {}
    width = _whole(output.get("width")) if ("output", "width") in overridden else None
    height = _whole(output.get("height")) if ("output", "height") in overridden else None
    sizes_given = _stage_keys(overridden, len(stages), ("width", "height"))
    if (_positive(width) or _positive(height)) and sizes_given:
        if not _sizes_agree(stages, sizes_given, width if _positive(width) else None,
                            height if _positive(height) else None):
            given = [name for name, value in (("output.width", width), ("output.height", height)) if _positive(value)]
            fit.problems.append((("output", "width" if _positive(width) else "height"),
                                 f"{_named(overridden, sizes_given)} sets the stages' sizes too - give either "
                                 f"{' and '.join(given)}, and the recipe's stages scale to it, or every stage's width, "
                                 "the last stage the output's size, not both"))
    elif _positive(height) and not _positive(width):
        fit.problems.append((("output", "height"), "this recipe runs in stages ([[stage]]): give output.width too, and "
                             "the stages scale with it, or set the stages' sizes (stage[N].width, stage[N].height)"))
    elif _positive(width):
        fit.given_width, fit.given_height = width, height if _positive(height) else None
        for index, stage in enumerate(stages):
            stage["width"], new_height = fit.stage_size(index, width, fit.given_height)
            if new_height is not None:
                stage["height"] = new_height
        fit.scaled["width"] = ("output", "width")
        if fit.given_height:
            fit.scaled["height"] = ("output", "height")
        elif any(fit.heights):  # the stages' own heights, scaled with the width
            fit.scaled["height"] = ("output", "width")
    steps = _whole(run.get("steps")) if ("run", "steps") in overridden else None
    given_steps = _stage_keys(overridden, len(stages), ("steps",))
    if _positive(steps) and given_steps:
        if len(given_steps) < len(stages) or sum(s["steps"] for s in stages) != steps:
            fit.problems.append((("run", "steps"), f"{_named(overridden, given_steps)} sets the stages' steps too - give "
                                 "either run.steps, and it is shared out as the recipe shares its steps, or every "
                                 "stage's steps, adding up to it, not both"))
    elif _positive(steps) and steps < len(stages):
        fit.problems.append((("run", "steps"), f"this recipe runs in {len(stages)} stages ([[stage]]) of at least one "
                             f"step each - give {len(stages)} steps or more, or set the stages' steps (stage[N].steps)"))
    elif _positive(steps):
        total = sum(s["steps"] for s in stages)
        shared = [max(1, round(steps * s["steps"] / total)) for s in stages]
        shared[-1] = max(1, shared[-1] + steps - sum(shared))
        while sum(shared) > steps:  # rounding up many small stages: take it back from the longest
            shared[shared.index(max(shared))] -= 1
        for stage, n in zip(stages, shared):
            stage["steps"] = n
        fit.scaled["steps"] = ("run", "steps")
    return fit


def steps_given(overridden, stage_count: int) -> bool:
    """Did overrides give the steps the run takes? `--steps` (shared out into the stages, if
    any); in a recipe of `stage_count` stages (as overridden) a stage's steps, a whole stage
    or the stage list; in one without, a whole `run` table with steps. Those are taken as
    given, whatever the strength."""
    if ("run", "steps") in overridden:
        return True
    if stage_count:
        return bool(_stage_keys(overridden, stage_count, ("steps",)))
    run = overridden.get(("run",))
    return isinstance(run, dict) and "steps" in run


def steps_factor(strength: float | None, above: float | None, written: list[int], given: bool) -> float:
    """What `more_steps_above` multiplies the stages' steps by: sqrt(strength / above) above
    it, 1 where the steps were given, the field is not, or no stage's steps would change."""
    if given or above is None or strength is None or strength <= above:
        return 1.0
    factor = min(math.sqrt(strength / above), MAX_STEPS)  # finite however small `above` is
    return factor if any(grown(steps, factor) != steps for steps in written) else 1.0


def grown(steps: int, factor: float) -> int:
    return min(MAX_STEPS, round(steps * factor))


def written_steps(parts) -> list[int]:
    """The steps the recipe (`parts`, valid or not) writes: its stages', or run.steps."""
    if parts.stage:
        return [stage.steps for stage in parts.stage]
    return [parts.run.steps] if parts.run is not None else []


def planned_steps(parts, factor: float) -> list[int]:
    """The steps each stage of the recipe (`parts`, valid or not) takes: as written, times
    `factor` (`steps_factor`)."""
    return [grown(steps, factor) for steps in written_steps(parts)]


def planned_stages(recipe: Recipe, factor: float) -> tuple[Stage, ...]:
    """The stages a run of `recipe` takes, their steps times `factor` (`steps_factor`)."""
    steps = planned_steps(recipe, factor)
    if recipe.stage:
        return tuple(Stage(s.width, s.height, n, s.carry, s.min_gain, s.gain_steps) for s, n in zip(recipe.stage, steps))
    return (Stage(recipe.output.width, recipe.output.height, steps[0]),)


def more_steps_note(plan, whose: str = "its stages take") -> str | None:
    """Where the recipe's `more_steps_above` grew the steps at this strength: to how many,
    and how to keep the recipe's. `whose`: what takes them ("a shot's first frame takes")."""
    if plan.steps_factor == 1:
        return None
    written, taken = written_steps(plan.recipe), [stage.steps for stage in plan.stages]
    at_most = "at most " if any(stage.min_gain for stage in plan.stages) else ""
    keep = f" (--steps {sum(written)} keeps the recipe's)" if sum(written) <= MAX_STEPS else ""
    return (f"strength {plan.recipe.strength:g} is above the recipe's more_steps_above ({plan.recipe.more_steps_above:g}): "
            f"{whose} {at_most}{' + '.join(map(str, taken))} steps, not {' + '.join(map(str, written))}, about "
            f"{sum(taken) / sum(written):.1f} times as long, as a strong style takes more steps to lay down{keep}")


def least_output_size(fit: StageFit, index: int, fits) -> tuple[int, int | None] | None:
    """The least output (width, height) larger than the one given, the height (if it was
    given) keeping its proportion to the width, at which stage `index` passes
    `fits(stage_width, stage_height)`; None if none within the schema's 16384."""
    width, height = fit.given_width, fit.given_height
    for wide in range(width + 1, 16385):
        tall = max(1, round(height * wide / width)) if height else None
        if tall and tall > 16384:
            break
        if fits(*fit.stage_size(index, wide, tall)):
            return wide, tall
    return None


def _stage_keys(overridden, count: int, names: tuple[str, ...]) -> list[tuple]:
    """The stage fields among `names` that overrides set, each as ('stage', i, name): an
    override of the whole list or of a whole stage sets all of that stage's fields."""
    given = []
    for i in range(count):
        for name in names:
            field_ = ("stage", i, name)
            if any(key[:1] == ("stage",) and field_[:len(key)] == tuple(key) for key in overridden):
                given.append(field_)
    return given


def _sizes_agree(stages: list[dict], given: list[tuple], width: int | None, height: int | None) -> bool:
    """Do the stages' sizes that overrides set say what output.width/height say: every
    stage's width given (else a recipe's coarse stage would stay as the recipe has it,
    whatever the output), and the last stage the output's size?"""
    last = len(stages) - 1
    widths_ok = width is None or (all(("stage", i, "width") in given for i in range(len(stages)))
                                  and stages[last]["width"] == width)
    height_ok = height is None or (("stage", last, "height") in given and stages[last].get("height") == height)
    return widths_ok and height_ok


def _named(overridden, keys: list[tuple]) -> str:
    """The overrides that set `keys`, as the user gave them (their flags where known),
    each once: '--set stage[1].width=400'."""
    flag_for = getattr(overridden, "flag_for", None)
    names = []
    for key in keys:
        name = (flag_for(key) if flag_for else None) or dotted(key)
        if name not in names:
            names.append(name)
    return ", ".join(names)


def _whole(value):
    """An override's whole number as the schema will read it: overrides are read laxly, so
    the text "64" (from an environment variable, say) is 64 there, and must be here too."""
    if isinstance(value, str) and value.strip().isdigit():
        return int(value.strip())
    return value


def _positive(value) -> bool:
    return isinstance(value, int) and not isinstance(value, bool) and value > 0
