"""One bar for a run's progress, redrawn in place: steps done of all stages', the stage,
time spent and left, rate and the latest value of each loss term. `stylekit run` draws it
on a terminal (`stylekit.commands.progress`), `stylekit.stylize(progress=...)` in a notebook
or a terminal, through tqdm.auto (a widget in Jupyter where ipywidgets is installed, text
redrawn in place where it is not).

The loss values live on the device: reading `info.losses` waits for it, so the bar reads
them only when it is redrawn, at most every `BAR_INTERVAL` seconds and at the last step.
"""

from __future__ import annotations

import sys
import time
from typing import TYPE_CHECKING, Callable, TextIO

if TYPE_CHECKING:
    from stylekit.run.result import StepInfo

#: Seconds between redraws of the bar (and so between reads of the losses).
BAR_INTERVAL = 0.5
BAR_FORMAT = "{desc}{percentage:3.0f}%|{bar}| {n_fmt}/{total_fmt} [{elapsed}<{remaining}, {rate_fmt}{postfix}]"


def format_losses(losses: dict[str, float], width: str = ".4g") -> str:
    return "  ".join(f"{label} {value:{width}}" for label, value in losses.items())


class StepBar:
    """`bar(info)` after every step, `bar.close()` at the end. `make` is the tqdm class to
    draw with (tqdm.tqdm on a terminal, tqdm.auto.tqdm where a notebook may want a widget);
    `stream` where a text bar goes (None: sys.stderr when the bar is made)."""

    def __init__(self, make: Callable, stream: TextIO | None = None):
        self._make, self.stream = make, stream
        self._bar = None
        self._stage = 0
        self._redrawn = 0.0

    def __call__(self, info: StepInfo) -> None:
        if self._bar is None:
            # Redraws are paced here, not by tqdm; smoothing=0: the rate is the run's average.
            # initial: a resumed run starts past step 1. The stage is there from the first draw.
            self._bar = self._make(total=info.total, initial=info.step - 1, file=self.stream, unit="step",
                                   desc=f"stage {info.stage}/{info.stages} ", dynamic_ncols=True, mininterval=0,
                                   leave=True, smoothing=0, bar_format=BAR_FORMAT)
            self._stage = info.stage
        bar = self._bar
        if info.stage != self._stage:
            self._stage = info.stage
            bar.set_description_str(f"stage {info.stage}/{info.stages} ", refresh=False)
        bar.total = info.total  # it drops where a stage ends sooner ([[stage]] min_gain)
        bar.n = info.step  # counted on every step; drawn (and the losses read) only when due
        now = time.monotonic()
        if now - self._redrawn >= BAR_INTERVAL or info.step == info.total:
            self._redrawn = now
            bar.set_postfix_str(format_losses(info.losses, ".3g"), refresh=False)
            bar.refresh()

    def write(self, line: str) -> None:
        """`line` above the bar: it clears the bar, prints, and redraws it."""
        self._bar.write(line, file=self.stream)

    def close(self) -> None:
        if self._bar is not None:
            self._bar.close()
            self._bar = None


def is_terminal(stream) -> bool:
    try:
        return stream.isatty()
    except (AttributeError, ValueError):  # no isatty, or a closed file
        return False


def in_notebook() -> bool:
    """Whether this process is an IPython kernel (Jupyter, VS Code, Colab): its output is
    shown in a cell, whose stderr is no terminal but renders a bar redrawn in place."""
    ipython = sys.modules.get("IPython")  # never imported here: a kernel has imported it already
    shell = getattr(ipython, "get_ipython", lambda: None)()
    return shell is not None and getattr(shell, "kernel", None) is not None


def auto_bar() -> StepBar:
    """A bar for `stylize(progress=True)`: a widget in a notebook with ipywidgets, text
    redrawn in place on sys.stderr elsewhere."""
    from tqdm.auto import tqdm  # only a run that shows progress needs it (and asyncio, which it imports)

    return StepBar(tqdm)


class FrameBar:
    """`bar(step)` after every step of a video (a `stylekit.video.frames.FrameStep`): one bar
    over the clip's frames, the frame in progress's step beside it."""

    def __init__(self, make: Callable, frames: int, stream: TextIO | None = None):
        self._bar = make(total=frames, file=stream, unit="frame", dynamic_ncols=True, mininterval=0, leave=True,
                         smoothing=0)
        self._redrawn = 0.0

    def __call__(self, step) -> None:
        info = step.step
        if info.step == info.total:
            self._bar.n = step.frame + 1
        now = time.monotonic()
        if now - self._redrawn >= BAR_INTERVAL or info.step == info.total:
            self._redrawn = now
            self._bar.set_postfix_str(f"frame {step.frame + 1} step {info.step}/{info.total}", refresh=False)
            self._bar.refresh()

    def close(self) -> None:
        self._bar.close()


def frame_bar(frames: int) -> FrameBar:
    """A bar for `stylize_video(progress=True)`: a widget in a notebook, text elsewhere."""
    from tqdm.auto import tqdm  # only a video that shows progress needs it (and asyncio, which it imports)

    return FrameBar(tqdm, frames)
