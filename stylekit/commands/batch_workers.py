"""Who does which item, what `stylekit batch` settles once its items are listed (so this
module sorts after batch_items.py): the workers (one process, or many under torchrun),
their claims on the items, and the summary they all write to.

Items are claimed dynamically: every worker walks the same list and claims the next item
by creating its claim file with O_EXCL, which exactly one process can do, so a slow image
or a slow GPU holds up nothing else. Claims belong to one invocation (its generation), so
a rerun after a crash, a killed worker or a pre-emption ignores the old ones (an invocation
that ends removes its own, and only its own: `release_claims`). The output folder must be
shared by all workers (one node, or a shared file system across nodes), as it is where
they meet.
"""

from __future__ import annotations

import json
import os
import shutil
import socket
import uuid
from pathlib import Path

import torch
import torch.distributed as dist

from stylekit.commands.batch_items import Item

STATE_DIR = ".stylekit-batch"


class Workers:
    """This process's place among the workers: torch.distributed when launched by torchrun
    (RANK and WORLD_SIZE set), else a single worker. Only a generation id is exchanged."""

    def __init__(self):
        self.rank, self.world = int(os.environ.get("RANK", 0)), int(os.environ.get("WORLD_SIZE", 1))
        self.local_rank = int(os.environ.get("LOCAL_RANK", 0))
        self.distributed = "RANK" in os.environ and self.world > 1
        generation = [uuid.uuid4().hex]
        if self.distributed:
            # gloo, also on GPUs: the group only broadcasts the generation (a str, pickled into
            # CPU tensors) and waits at the end; NCCL would add nothing and refuses two ranks
            # on one GPU (two workers sharing a card, as a one-GPU benchmark runs them).
            dist.init_process_group("gloo")
            dist.broadcast_object_list(generation, src=0)  # every worker claims in the same generation
        self.generation = generation[0]

    def device(self, requested: str) -> str:
        """One GPU per worker: `auto` and `cuda` become this worker's `cuda:LOCAL_RANK`."""
        if requested in ("auto", "cuda") and torch.cuda.is_available():
            return f"cuda:{self.local_rank % torch.cuda.device_count()}"
        return requested

    def finish(self, wait: bool = True) -> None:
        if self.distributed:
            if wait:
                dist.barrier()
            dist.destroy_process_group()

    @property
    def name(self) -> str:
        return f"{socket.gethostname()}:{os.getpid()}" + (f" rank {self.rank}" if self.distributed else "")


def claim(out: Path, generation: str, item: Item) -> bool:
    """True for exactly one worker per item and generation."""
    folder = out / STATE_DIR / "claims" / generation
    for attempt in range(5):
        # Another invocation, ending, may remove the empty parents while they are made
        # (mkdir then fails with either error): make them again. Only the claim file's
        # own existence means that another worker has the item.
        try:
            folder.mkdir(parents=True, exist_ok=True)
        except (FileExistsError, FileNotFoundError):
            if attempt == 4:
                raise
            continue
        try:
            fd = os.open(folder / item.key, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o644)
            break
        except FileExistsError:
            return False
        except FileNotFoundError:
            if attempt == 4:
                raise
    os.write(fd, f"{socket.gethostname()} {os.getpid()}\n".encode())
    os.close(fd)
    return True


def release_claims(out: Path, generation: str) -> None:
    """Remove this invocation's claims, once every worker is done with them (a rerun ignores
    them anyway), and the state folder if no other invocation's claims are in it. Only our
    own generation: another one's may belong to a batch still running on this folder, which
    cannot be told from a dead one (its workers may be on other machines)."""
    folder = out / STATE_DIR / "claims" / generation
    shutil.rmtree(folder, ignore_errors=True)
    for parent in (folder.parent, folder.parent.parent):
        try:
            parent.rmdir()
        except OSError:  # not empty (or gone): left as it is
            break


def append_summary(out: Path, entry: dict) -> None:
    """One JSON line, written with a single O_APPEND write, so lines from several workers
    never interleave."""
    line = (json.dumps(entry, allow_nan=False) + "\n").encode()
    fd = os.open(out / "summary.jsonl", os.O_CREAT | os.O_APPEND | os.O_WRONLY, 0o644)
    try:
        os.write(fd, line)
    finally:
        os.close(fd)
