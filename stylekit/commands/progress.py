"""How a run reports its progress on the terminal: a per-step callback taking a `StepInfo`.

On a terminal, one bar redrawn in place (tqdm: a few hundred kilobytes, no dependencies,
and it already knows rate, time left and terminal width): steps, stage, rate, time left
and the latest losses. Elsewhere (CI logs, pipes, files) the plain lines scroll as before:
`step    20/200  total 1.2e+05  content ...  (0.412 s/step)`, every `every` steps.

The loss values live on the device: reading `info.losses` waits for it, so the display
reads them only when a line is due or the bar is about to be redrawn.

The display is also a text stream (`write`/`flush`): the runner prints its own lines
(the header, "stage 2/3 ...", "wrote ...") through it, so that they land above the bar
instead of on top of it.
"""

from __future__ import annotations

import sys
from typing import TYPE_CHECKING, TextIO

from stylekit.tools.progress import StepBar, format_losses, is_terminal

if TYPE_CHECKING:
    from stylekit.run.session import StepInfo


class ProgressDisplay:
    """`display(info)` after every step; `display.close()` at the end.

    bar: True/False forces the mode; None picks the bar when `stream` is a terminal.
    every: plain lines every N steps (and at the first and last step); 0 shows nothing.
    quiet: show nothing, not even the runner's own lines.
    """

    def __init__(self, stream: TextIO | None = None, every: int = 10, quiet: bool = False, bar: bool | None = None):
        self.stream = stream or sys.stderr
        self.every = every
        self.quiet = quiet
        self.use_bar = (is_terminal(self.stream) if bar is None else bar) and every > 0 and not quiet
        self._bar = None
        self._last = {"step": None, "seconds": 0.0}
        self._pending = ""

    # ------------------------------------------------------------ the callback

    def __call__(self, info: StepInfo) -> None:
        if self.quiet or not self.every:
            return
        if self._last["step"] is None:  # the first step seen
            # A resumed run starts past step 1, its seconds counting the run before the
            # checkpoint: its rate is measured from the end of this step on.
            if info.step == 1:
                self._last.update(step=0, seconds=0.0)
            else:
                self._last.update(step=info.step, seconds=info.seconds)
        if self.use_bar:
            self._draw_bar(info)
        elif info.step % self.every == 0 or info.step == 1 or info.step == info.total:
            self._print_line(info)

    def _print_line(self, info: StepInfo) -> None:
        # info.seconds: this run's loop time, set-up excluded, so the first line is fair too.
        steps = info.step - self._last["step"]
        rate = f"  ({(info.seconds - self._last['seconds']) / steps:.3f} s/step)" if steps > 0 else ""
        self._last.update(step=info.step, seconds=info.seconds)
        print(f"step {info.step:>5}/{info.total}  {format_losses(info.losses)}{rate}", file=self.stream, flush=True)

    def _draw_bar(self, info: StepInfo) -> None:
        if self._bar is None:
            from tqdm import tqdm  # only a terminal needs it

            self._bar = StepBar(tqdm, self.stream)
        self._bar(info)

    def close(self) -> None:
        if self._bar is not None:
            self._bar.close()
            self._bar = None

    # ------------------------------------------------------------ as a text stream

    def write(self, text: str) -> int:
        if self.quiet:
            return len(text)
        self._pending += text
        while "\n" in self._pending:
            line, self._pending = self._pending.split("\n", 1)
            if self._bar is not None:
                self._bar.write(line)
            else:
                self.stream.write(line + "\n")
        return len(text)

    def flush(self) -> None:
        if not self.quiet:
            self.stream.flush()

