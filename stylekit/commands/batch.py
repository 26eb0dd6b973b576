"""`stylekit batch`, the command itself (so it sorts first, before the steps it takes in
their order: batch_items.py lists the items, batch_workers.py shares them out): one recipe
over many content and style images, in one process or in many (torchrun), each item done
once, and a rerun doing only what is not done.

Here the recipe is checked once, the items are run in groups of one size (`Worker`) and the
end is told. An item is done when its image is in the output folder (written atomically,
record first), and a rerun skips exactly those.
"""

from __future__ import annotations

import os
import sys
import time
import warnings
from pathlib import Path
from typing import TextIO

from PIL import Image

from stylekit.api import load
from stylekit.commands.batch_items import Item, plan_items
from stylekit.commands.batch_workers import STATE_DIR, Workers, append_summary, claim, release_claims
from stylekit.errors import Problem, RunFailed, UserError, one_line
from stylekit.files.images import output_size
from stylekit.files.outputs import describe, write_image_and_record
from stylekit.files import sizes
from stylekit.plugins.registry import BrokenPluginWarning, broken_warnings
from stylekit.recipe.output_checks import writable_folder
from stylekit.recipe.load import load_recipe
from stylekit.recipe.overrides import Overrides
from stylekit.recipe.stage_fit import more_steps_note
from stylekit.run import session
from stylekit.run.blame import attributed
from stylekit.run.build import Reuse
from stylekit.run.estimate import estimate, human

#: The most images a step may take. A worker holds the items it claims until their group is
#: full, so a number past the batch's size only keeps them from running; the gain of larger
#: groups flattens long before (1.53x at 16 per step on a GPU, docs/scale.md), and `auto`
#: picks 64 at most. 1024 leaves room for a GPU far larger than today's, and none for a typo.
MAX_BATCH_SIZE = 1024


def run_batch(recipe: str, contents: list[str], styles: list[str], pairs: str | None, out: Path,
              overrides: dict, registry, batch_size: str = "1", dry_run: bool = False, stream: TextIO | None = None,
              live=None) -> int:
    """Run every item not yet done; the exit status is 0 when all are done, 3 when some
    failed (the summary says which and why), 130/143 when interrupted. `live`: a
    `stylekit.commands.live.LiveServer` that shows each item as it forms;
    its Stop ends the batch."""
    stream = stream or sys.stderr
    # Checked once, before any worker starts. The items' images replace the recipe's, so the
    # recipe may leave them out: a blank image stands in for them while it is checked.
    stand_in = Image.new("RGB", (256, 256), (128, 128, 128))
    with warnings.catch_warnings():  # told below as the other commands tell it, not as a Python warning
        warnings.simplefilter("ignore", BrokenPluginWarning)
        base = load(recipe, with_output_in(overrides, out), registry=registry, content=stand_in,
                    style=stand_in if styles or pairs else None)  # a manifest names every item's style
    if int(os.environ.get("RANK", 0)) == 0:
        for line in broken_warnings(registry):
            print(line, file=stream, flush=True)
    styles = styles or [str(p) for p in base.recipe.images.style]
    items = plan_items(contents, styles, pairs, out)
    problems = writable_folder(out, (), lambda loc, message: Problem(f"-o {out}: {message}"))
    if problems:  # found before any worker starts, as `stylekit run` finds its own
        raise UserError(problems)
    size = images_per_step(base, batch_size, stream)
    if dry_run:  # the list on stdout (one item a line, for grep and wc), the counts with the messages
        failing = sum(item.problem is not None for item in items)
        done = [item.done for item in items]
        for item, finished in zip(items, done):
            state = "fails" if item.problem else "done " if finished else "to do"
            # Escaped (one_line): one item a line, whatever its paths hold.
            print(one_line(f"{state}  {item.content} + {item.style} -> {item.output}" + (f": {item.problem}" if item.problem else "")))
        print(f"stylekit batch: {counted(len(items), 'item')}, {done.count(False) - failing} to do"
              + (f", {failing} will fail" if failing else "") + f", {counted(size, 'image')} per step",
              file=stream, flush=True)
        return 0
    out.mkdir(parents=True, exist_ok=True)
    workers = Workers()
    # Each style file is decoded once per process, as its features are computed once (Reuse).
    worker = Worker(workers, out, size, stream, lambda item, reuse: load_recipe(
        base.raw, registry, item_overrides(item, workers.device(base.recipe.run.device)),
        base=Path.cwd(), label=base.source, decoded=reuse.style_images), live)
    todo = [item for item in items if not item.done]
    if workers.rank == 0:
        failing = sum(item.problem is not None for item in todo)
        print(f"stylekit batch: {counted(len(items), 'item')}, {len(items) - len(todo)} already done, "
              f"{len(todo) - failing} to do{f', {failing} will fail' if failing else ''}, "
              f"{counted(workers.world, 'worker')}, {counted(size, 'image')} per step -> {one_line(str(out))}", file=stream, flush=True)
        if note := more_steps_note(base):
            print(note, file=stream, flush=True)
    try:
        status = worker.run(todo)
    except KeyboardInterrupt:  # a second Ctrl-C: out at once, but the items done are there
        workers.finish(wait=False)
        finished = sum(item.done for item in items)
        print(f"interrupted - {finished} of {counted(len(items), 'item')} done in {out} (the item in progress is not "
              "written); rerun the same command to go on", file=stream, flush=True)
        return 130
    workers.finish(wait=status not in (130, 143))  # interrupted: the others may be gone
    if status in (130, 143):
        return status
    if workers.rank == 0:  # past the barrier: every worker has ended, no claim is read again
        release_claims(out, workers.generation)
        missing = [item.key for item in items if not item.done]
        print(one_line(f"stylekit batch: {len(items) - len(missing)} of {len(items)} done"
              + (f"; not done: {', '.join(missing[:10])}{' ...' if len(missing) > 10 else ''} "
                 f"(see {out / 'summary.jsonl'}; rerun to retry)" if missing else "")), file=stream, flush=True)
        if missing and status == 0:  # an item nobody did (a worker lost) is not success either
            return 3
    return status


def with_output_in(overrides, out: Path):
    """`overrides` with output.path in OUT: every item writes there, never to the recipe's own
    output, whose checks (a file in the way, say) are not the batch's. OUT's are made on
    the items (`plan_items`) and `writable_folder`."""
    moved = Overrides.of(overrides)
    moved.add(("output", "path"), str(out / STATE_DIR / "item.png"), f"-o {out}")
    return moved


def counted(n: int, noun: str) -> str:
    return f"{n} {noun}{'' if n == 1 else 's'}"


def item_overrides(item: Item, device: str):
    """The recipe's fields that one item sets, each named after the item in messages (the
    user wrote neither these values nor a Python `overrides` argument)."""
    overrides, named = Overrides(), f"batch item {item.key}"
    for key, value in ((("run", "device"), device), (("output", "path"), str(item.output)),
                       (("images", "content"), str(item.content)), (("images", "style"), [str(item.style)])):
        overrides.add(key, value, named)
    return overrides


def images_per_step(plan, requested: str, stream: TextIO) -> int:
    """A number, or `auto`: on a GPU, as many as the memory estimate of one image (at the
    last stage's size) fits in 80% of its free memory; 1 on a CPU."""
    if requested != "auto":
        try:
            size = int(requested)
        except ValueError:
            size = 0
        if not 1 <= size <= MAX_BATCH_SIZE:
            raise UserError(f"--batch-size {requested}: give a whole number of images per step, from 1 to "
                            f"{MAX_BATCH_SIZE}, or auto")
        return size
    if plan.device.type == "cpu":
        print("batch size 1: on a CPU each image gets its own backbone pass, so more per step gains nothing",
              file=stream, flush=True)
        return 1
    found = estimate(plan, plan.stages[-1])
    free = sizes.available_memory(plan.device) or 4 << 30  # 4 GB where the free memory cannot be read
    per_image = found.total - found.weights
    size = max(1, min(64, int((0.8 * free - found.weights) // max(1, per_image))))
    print(f"batch size {size}: about {human(per_image)} per image at the last stage's size, {human(free)} free",
          file=stream, flush=True)
    return size


class Worker:
    """Claims items, groups those of one size, and runs each group as one batch per step.
    `plan_for(item, reuse)` loads an item's plan, taking decoded style images from `reuse`."""

    def __init__(self, workers: Workers, out: Path, size: int, stream: TextIO, plan_for, live=None):
        self.workers, self.out, self.size, self.stream, self.plan_for = workers, out, size, stream, plan_for
        self.live = live
        self.reuse, self.failed, self.places = Reuse(), 0, {}

    def run(self, todo: list[Item]) -> int:
        pending: dict[tuple, list] = {}
        # Workers walk the list in order, so an item's place in it tells how far the batch is.
        self.places = {item.key: f"{n}/{len(todo)}" for n, item in enumerate(todo, 1)}
        for item in todo:
            if self.live is not None and self.live.stop_requested:  # Stop pressed between two items
                print("stopped from the live page: rerun the same command to go on", file=self.stream, flush=True)
                return 130
            if item.problem is not None:  # known before it runs, to every worker: one of them says so
                if self.workers.rank == 0:
                    self.report(item, time.perf_counter(), error=UserError(item.problem))
                continue
            if item.done or not claim(self.out, self.workers.generation, item):
                continue
            started = time.perf_counter()
            try:
                plan = self.plan_for(item, self.reuse)
            except UserError as exc:
                self.report(item, started, error=exc)
                continue
            key = tuple(output_size(plan.images.content, s.width, s.height) for s in plan.stages)
            pending.setdefault(key, []).append((item, plan, started))
            if len(pending[key]) >= self.size:
                status = self.run_group(pending.pop(key))
                if status:
                    return status
        for group in pending.values():
            status = self.run_group(group)
            if status:
                return status
        return 3 if self.failed else 0

    def run_group(self, group: list) -> int:
        plans = [plan for _, plan, _ in group]
        callbacks = [self.live.run(item.key, f"{item.content.name} + {item.style.name}", plan) if self.live else None
                     for item, plan, _ in group]
        try:
            outcomes = session.run_group(plans, self.reuse, callbacks)  # a group of one runs as `run_one` does
        except (UserError, RunFailed) as exc:
            outcomes = [exc] * len(group)
        except Exception as exc:  # a plugin's code raised: every item of the group failed with it
            problem = attributed(exc, plans[0], 0)
            if problem is None:
                raise
            outcomes = [problem] * len(group)
        finally:
            if self.live:
                for item, _, _ in group:
                    self.live.finish(item.key)
        for (item, _, started), outcome in zip(group, outcomes):
            if isinstance(outcome, Exception):
                self.report(item, started, error=outcome)
            elif outcome.status != "finished":
                print(f"{outcome.status}: {len(group)} item(s) in progress not written; rerun the same command to go on",
                      file=self.stream, flush=True)
                return 128 + (outcome.signal or 2)
            else:
                try:  # both or neither, the record renamed first: an image in the folder marks an item done
                    write_image_and_record(outcome.image, outcome.record, item.output)
                except OSError as exc:
                    self.report(item, started, error=RunFailed(f"could not write {item.output} ({describe(exc)})"))
                    continue
                self.report(item, started, losses=outcome.history[-1] if outcome.history else {})
        return 0

    def report(self, item: Item, started: float, error: Exception | None = None, losses: dict | None = None) -> None:
        entry = {"item": item.key, "content": str(item.content), "style": str(item.style), "output": str(item.output),
                 "worker": self.workers.name, "status": "failed" if error else "done",
                 "seconds": round(time.perf_counter() - started, 3)}
        if error is not None:
            self.failed += 1
            entry["error"] = str(error)
        else:
            entry["losses"] = losses
        append_summary(self.out, entry)
        print(one_line(f"[{self.workers.rank}] {self.places.get(item.key, '?')} {entry['status']:<6} {item.key} "
                       f"({entry['seconds']:.1f} s)" + (f": {entry['error']}" if error else "")), file=self.stream, flush=True)
