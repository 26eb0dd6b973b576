"""A clean stop: the callback's `stop()` or a SIGINT / SIGTERM asks a run to end after the
step in progress, which the stage loop then writes as "stopped" or "interrupted"."""

from __future__ import annotations

import signal
import threading
from typing import Callable


class Stop:
    """Why a run should end early: set by the callback's `stop()` or by a signal."""

    def __init__(self):
        self.requested = False
        self.signal: int | None = None

    def request(self, signum: int | None = None) -> None:
        if signum is not None and self.requested and self.signal is not None:
            raise KeyboardInterrupt  # a second Ctrl-C: the user wants out now
        self.requested, self.signal = True, signum if signum is not None else self.signal


class signals_to:
    """While active, SIGINT and SIGTERM go to `handler(signum)`: during a run
    `Stop.request`, which ends it after the step in progress (a second Ctrl-C at once); as
    the CLI writes what a run made, its note of a late signal. Signal handlers can only be
    set from the main thread; elsewhere (a notebook's worker thread, a server) nothing
    changes."""

    SIGNALS = (signal.SIGINT, signal.SIGTERM)

    def __init__(self, handler: Callable[[int], None]):
        self.handler, self.previous = handler, {}

    def __enter__(self):
        if threading.current_thread() is threading.main_thread():
            for signum in self.SIGNALS:
                self.previous[signum] = signal.signal(signum, lambda s, _frame: self.handler(s))
        return self

    def __exit__(self, *exc_info):
        for signum, handler in self.previous.items():
            signal.signal(signum, handler)
