"""The live page: `stylekit run RECIPE --live` serves a page that shows a run as it goes
(the current image, the content and style images, every loss term's curve, stage, step,
rate, time left) with a Stop button that ends the run as Ctrl-C does.

The server is the standard library's ThreadingHTTPServer in a daemon thread: the page is
one static HTML file polling a JSON endpoint and fetching images, a handful of requests a
second from one or two browsers, which needs no framework, no event loop and no new
dependency. The run's thread never waits for the server; the server never touches the
device: the callback hands it CPU copies of the images.

Nothing is copied, read back or encoded while nobody has the page open: the callback then
only stores a few numbers. A browser that polls within `WATCH_SECONDS` counts as watching;
while one does, the callback copies the image and reads the losses at most every
`SAMPLE_SECONDS`, and images are encoded only when the page asks for them (once per new
image, then served from a cache). The loss curves therefore start when the page is first
opened.

Who may talk to the page, and how a request is read: `stylekit.commands.live_http`.

Several runs can share one server (`LiveServer.run(key, label)`: one callback each); the
page shows one panel per run, so a batch of images appears as a grid.
"""

from __future__ import annotations

import contextlib
import io
import ipaddress
import json
import secrets
import sys
import threading
import time
from dataclasses import dataclass, field
from http.server import ThreadingHTTPServer
from typing import TYPE_CHECKING

import torch
from PIL import Image

from stylekit.commands.live_http import IPv6Server, QuietServer, handler_for, is_ipv6, is_loopback
from stylekit.errors import UserError
from stylekit.files.images import output_size
from stylekit.recipe.plan import Plan

if TYPE_CHECKING:
    from stylekit.run.session import StepInfo

WATCH_SECONDS = 3.0  # the page polls every 0.5 s; a few missed polls still count as watching
SAMPLE_SECONDS = 0.25  # at most 4 image copies and loss reads a second while watched
LINGER_SECONDS = 1.5  # three polls of the page
MAX_RUNS = 12  # runs (batch images) kept on the page at once
SHUTDOWN_POLL_SECONDS = 0.1  # how soon close() returns


@dataclass
class RunState:
    """One run as the page sees it; written by the run's thread, read by the server's."""

    key: str
    label: str
    stage: int = 0
    stages: int = 1
    step: int = 0
    total: int = 0
    seconds: float = 0.0
    status: str = "starting"  # starting, running, stopping, finished, stopped
    steps: list[int] = field(default_factory=list)  # the steps at which losses were sampled
    losses: dict[str, list[float]] = field(default_factory=dict)
    image: torch.Tensor | None = None  # (3, H, W) float on the CPU, the latest sample
    image_version: int = 0
    inputs: dict[str, torch.Tensor] = field(default_factory=dict)  # 'content', 'style0', ... on the CPU
    inputs_version: int = 0
    last_sample: float = 0.0
    stop_asked: bool = False
    #: Each stage's (pixels, steps), when known: what the time left weighs the stages by.
    work: list[tuple[int, int]] = field(default_factory=list)
    #: stage -> the run's step before that stage's first, for the stages seen begin: a stage
    #: may end before its steps ([[stage]] min_gain), so the steps it took are counted.
    began: dict[int, int] = field(default_factory=dict)

    def summary(self, since: int) -> dict:
        rate = self.step / self.seconds if self.seconds > 0 else 0.0
        return {"key": self.key, "label": self.label, "stage": self.stage, "stages": self.stages,
                "step": self.step, "total": self.total, "seconds": self.seconds, "rate": rate,
                "eta": self.time_left(), "status": self.status,
                "image_version": self.image_version, "inputs": sorted(self.inputs), "inputs_version": self.inputs_version,
                "from": since, "steps": self.steps[since:], "losses": {k: v[since:] for k, v in self.losses.items()}}

    def time_left(self) -> float | None:
        """Seconds left, while the run is running: the time per pixel of a step so far times
        the pixels of the steps to come, so that a later, larger stage counts for its size
        (a step's time grows with its pixels, as stylekit.run.estimate reasons; a small
        stage's steps cost a little more per pixel, which errs on the long side). Without
        the stages' sizes, the steps left at the rate so far. None once it stops or ends: a
        time left would be stale."""
        if self.status != "running" or self.seconds <= 0 or self.step <= 0:
            return None
        if len(self.work) != self.stages or not 1 <= self.stage <= self.stages:
            return (self.total - self.step) * self.seconds / self.step
        taken = [self.began[k + 1] - self.began[k] if k in self.began and k + 1 in self.began else n
                 for k, (_, n) in enumerate(self.work[:self.stage - 1], 1)]
        earlier = [(p, n) for (p, _), n in zip(self.work, taken)]
        done = sum(p * n for p, n in earlier) + (self.step - sum(taken)) * self.work[self.stage - 1][0]
        total = sum(p * n for p, n in earlier) + sum(p * n for p, n in self.work[self.stage - 1:])
        return self.seconds * (total - done) / done if done > 0 else None


class LiveServer:
    """`with LiveServer(host, port) as live:` then pass `live.run("main", label)` as a callback."""

    def __init__(self, host: str = "127.0.0.1", port: int = 8750):
        if host.startswith("[") and host.endswith("]"):  # an IPv6 address as a URL writes it
            host = host[1:-1]
        self.host, self.port = host, port
        self.token = None if is_loopback(host) else secrets.token_urlsafe(16)
        self.runs: dict[str, RunState] = {}
        self.lock = threading.Lock()
        self.last_poll = 0.0  # monotonic time of the page's last request
        self._encoded: dict[tuple, bytes] = {}  # (key, name, version) -> JPEG bytes
        self._server: ThreadingHTTPServer | None = None
        self._address: ipaddress.IPv4Address | ipaddress.IPv6Address | None = None  # the bound one
        self._stopped = threading.Event()

    # ------------------------------------------------------------ lifecycle

    def start(self) -> str:
        try:
            server = IPv6Server if is_ipv6(self.host) else QuietServer
            self._server = server((self.host, self.port), handler_for(self))
        except (OSError, OverflowError) as exc:  # OverflowError: a port past 65535
            raise UserError(f"--live: cannot serve on {self.address.removeprefix('http://').rstrip('/')} "
                            f"({getattr(exc, 'strerror', None) or exc}) - "
                            "choose another port with --live-port, or --live-port 0 for any free one") from None
        self.port = self._server.server_address[1]
        self._address = ipaddress.ip_address(self._server.server_address[0])  # 'localhost' resolved
        threading.Thread(target=self._server.serve_forever, args=(SHUTDOWN_POLL_SECONDS,), name="stylekit-live",
                         daemon=True).start()
        return self.url

    @property
    def address(self) -> str:
        """The page's address without the token."""
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"http://{host}:{self.port}/"

    @property
    def url(self) -> str:
        return self.address + (f"?token={self.token}" if self.token else "")

    def close(self) -> None:
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
            self._server = None

    def __enter__(self) -> "LiveServer":
        self.start()
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    # ------------------------------------------------------------ the run's side

    @property
    def watched(self) -> bool:
        return time.monotonic() - self.last_poll < WATCH_SECONDS

    def run(self, key: str = "main", label: str = "", plan: Plan | None = None) -> "RunCallback":
        """A new run on the page (a batch adds one per image); the oldest ended ones beyond
        `MAX_RUNS` leave it, so that a long batch holds no more than that many images.
        `plan`: the run's, whose stage sizes weigh its time left."""
        with self.lock:
            self.runs[key] = RunState(key, label or key, work=stage_work(plan) if plan is not None else [])
            ended = [k for k, s in self.runs.items() if s.status not in ("starting", "running", "stopping")]
            for old in ended[:max(0, len(self.runs) - MAX_RUNS)]:
                del self.runs[old]
            self._encoded = {k: v for k, v in self._encoded.items() if k[0] in self.runs}
        return RunCallback(self, self.runs[key])

    @property
    def stop_requested(self) -> bool:
        """Whether Stop was pressed for any run: a batch starts no further item then."""
        return self._stopped.is_set()

    def finish(self, key: str = "main") -> None:
        with self.lock:
            state = self.runs[key]
            ended = "finished" if state.total and state.step == state.total else "ended"  # an error or Ctrl-C
            state.status = "stopped" if state.stop_asked else ended

    def request_stop(self, key: str | None = None) -> None:
        self._stopped.set()
        with self.lock:
            for state in self.runs.values():
                if key in (None, state.key):
                    state.stop_asked = True
                    state.status = "stopping"

    # ------------------------------------------------------------ the server's side

    def answers_to(self, host: str) -> bool:
        """Whether a request's Host header names this server: 'localhost' or the address
        it is bound to, with its port (a browser leaves out port 80 only). Checked on a
        loopback address only, where there is no token: a page of another site whose
        name was rebound to 127.0.0.1 (DNS rebinding) sends its own name."""
        if host.startswith("["):  # an IPv6 address
            name, bracket, port = host[1:].partition("]")
            if not bracket or (port and not port.startswith(":")):
                return False
            port = port[1:] if port else "80"
        else:
            name, colon, port = host.partition(":")
            port = port if colon else "80"
        if not (0 < len(port) <= 5 and port.isascii() and port.isdigit() and int(port) == self.port):
            return False
        if name.lower() == "localhost":  # browsers resolve it to loopback themselves
            return True
        try:
            return ipaddress.ip_address(name) == self._address and host.startswith("[") == (self._address.version == 6)
        except ValueError:  # a host name: not ours
            return False

    def state_json(self, since: dict[str, int] | None = None) -> bytes:
        """Every run's state, with the loss samples after the first `since[key]` of each."""
        self.last_poll = time.monotonic()
        with self.lock:
            return json.dumps({"runs": [s.summary((since or {}).get(s.key, 0)) for s in self.runs.values()]}).encode()

    def image_bytes(self, key: str, name: str) -> bytes | None:
        """JPEG of a run's current image or one of its inputs, encoded once per version."""
        self.last_poll = time.monotonic()
        with self.lock:
            state = self.runs.get(key)
            if state is None:
                return None
            tensor = state.image if name == "current" else state.inputs.get(name)
            version = state.image_version if name == "current" else state.inputs_version
        if tensor is None:
            return None
        cache_key = (key, name, version)
        body = self._encoded.get(cache_key)
        if body is None:
            body = _jpeg(tensor)  # outside the lock: the run's thread never waits for an encoding
            with self.lock:
                self._encoded = {k: v for k, v in self._encoded.items() if k[:2] != (key, name)}
                self._encoded[cache_key] = body
        return body


@contextlib.contextmanager
def serve(host: str = "127.0.0.1", port: int = 8750):
    """Serve the live page while the block runs; yields the server. Afterwards it stays up a
    moment while a page is open, so that the page sees how the runs ended."""
    live = LiveServer(host, port)
    url = live.start()
    # Straight to stderr, even with --quiet: without the address the page is no use.
    print(f"live page: {url}", file=sys.stderr, flush=True)
    try:
        yield live
    finally:
        if live.watched:
            time.sleep(LINGER_SECONDS)
        live.close()


@contextlib.contextmanager
def watch(label: str, host: str = "127.0.0.1", port: int = 8750, plan: Plan | None = None):
    """Serve the live page for one run (of `plan`, when given); yields its callback."""
    with serve(host, port) as live:
        callback = live.run("main", label, plan)
        try:
            yield callback
        finally:
            live.finish("main")


class RunCallback:
    """The per-step callback of one run on the live page."""

    def __init__(self, live: LiveServer, state: RunState):
        self.live, self.state = live, state
        self.inputs_copied = False

    def __call__(self, info: StepInfo) -> None:
        state = self.state
        with self.live.lock:
            new_stage = state.stage != info.stage
            if new_stage and (state.stage or info.step == 1):  # seen begin (not a resume within it)
                state.began[info.stage] = info.step - 1
            state.stage, state.stages, state.step, state.total = info.stage, info.stages, info.step, info.total
            state.seconds = info.seconds
            if state.status == "starting":
                state.status = "running"
            stop = state.stop_asked
        if stop:
            info.stop()
        if new_stage:
            self.inputs_copied = False
        now = time.monotonic()
        if not self.live.watched or (now - state.last_sample < SAMPLE_SECONDS and info.step != info.total):
            return
        # Watched and due: the only place that waits for the device.
        losses = info.losses
        image = info.image[0].detach().to("cpu", torch.float32, copy=True)
        if not self.inputs_copied:  # once per stage (each stage has its own size)
            self.inputs_copied = True
            inputs = {"content": info.content, **{f"style{i}": s for i, s in enumerate(info.styles)}}
            inputs = {name: tensor.detach().to("cpu", torch.float32, copy=True) for name, tensor in inputs.items()}
            with self.live.lock:
                state.inputs, state.inputs_version = inputs, state.inputs_version + 1
        with self.live.lock:
            state.last_sample = now
            state.steps.append(info.step)
            for label, value in losses.items():
                state.losses.setdefault(label, [None] * (len(state.steps) - 1)).append(value)
            state.image, state.image_version = image, state.image_version + 1


def stage_work(plan: Plan) -> list[tuple[int, int]]:
    """Each of `plan`'s stages as (pixels, steps), its sizes as the run makes them."""
    sizes = [output_size(plan.images.content, stage.width, stage.height) for stage in plan.stages]
    return [(h * w, stage.steps) for (h, w), stage in zip(sizes, plan.stages)]


def _jpeg(tensor: torch.Tensor) -> bytes:
    array = tensor.detach().to("cpu", torch.float32).squeeze(0).clamp(0, 1).mul(255).round().byte()
    buffer = io.BytesIO()
    Image.fromarray(array.permute(1, 2, 0).numpy()).save(buffer, "JPEG", quality=90)
    return buffer.getvalue()
