"""Reading the user's files without hanging or running out of memory.

Only regular files are read: opening a FIFO (named pipe) for reading blocks until some
other process opens it for writing, which may be never, and a device such as /dev/zero or
/dev/urandom never ends. So a file is opened with O_NONBLOCK (which an open of a FIFO
honours, and a regular file ignores) and checked with fstat on the open descriptor, so
that nothing can be swapped in between a check and the open. Text files (recipes,
manifests, run records) are also read up to a limit, so that a file of gigabytes named by
mistake is refused with a message instead of filling the memory.
"""

from __future__ import annotations

import errno
import os
import stat
from typing import BinaryIO

#: A recipe is a few kilobytes (the shipped ones are 1 to 5 KB); 1 MB is far past any
#: written by hand or generated, and small enough to parse in well under a second.
RECIPE_LIMIT = 1 << 20
#: A batch manifest holds one line per item, about 100 bytes with two paths: 256 MB is more
#: than two million items, beyond what one batch runs in days on a GPU.
MANIFEST_LIMIT = 256 << 20
#: A run record holds the recipe and one row of losses per step: a few megabytes for the
#: longest runs. A larger file is no run record of stylekit's.
RECORD_LIMIT = 64 << 20


class NotRegularFile(OSError):
    """The path names something other than a regular file or folder (a FIFO, a device,
    a socket): reading it could block forever or never end."""

    def __init__(self, path: str | os.PathLike, kind: str):
        super().__init__(errno.EINVAL, f"not a regular file ({kind})", str(path))
        self.kind = kind


class FileTooLarge(OSError):
    """The file is larger than what stylekit reads of its kind."""

    def __init__(self, path: str | os.PathLike, limit: int, what: str = "file"):
        super().__init__(errno.EFBIG, f"larger than {human_size(limit)}, the most stylekit reads of a {what}", str(path))
        self.limit = limit


def kind_of(mode: int) -> str:
    """What a file of this st_mode is, in words, for messages."""
    if stat.S_ISFIFO(mode):
        return "a FIFO"
    if stat.S_ISCHR(mode):
        return "a character device"
    if stat.S_ISBLK(mode):
        return "a block device"
    if stat.S_ISSOCK(mode):
        return "a socket"
    return "a special file"


def human_size(size: int) -> str:
    """The limits above in words: whole megabytes, else bytes."""
    return f"{size >> 20} MB" if size >= 1 << 20 and size % (1 << 20) == 0 else f"{size:,} bytes"


def open_regular(path: str | os.PathLike) -> BinaryIO:
    """`path` opened for reading in binary, never blocking: NotRegularFile for a FIFO, a
    device or a socket, IsADirectoryError for a folder, and the usual OSErrors
    (FileNotFoundError, PermissionError) otherwise."""
    fd = os.open(path, os.O_RDONLY | getattr(os, "O_NONBLOCK", 0) | getattr(os, "O_CLOEXEC", 0))
    try:
        mode = os.fstat(fd).st_mode
        if stat.S_ISDIR(mode):
            raise IsADirectoryError(errno.EISDIR, os.strerror(errno.EISDIR), str(path))
        if not stat.S_ISREG(mode):
            raise NotRegularFile(path, kind_of(mode))
        if hasattr(os, "O_NONBLOCK"):
            os.set_blocking(fd, True)  # a regular file: reads behave as after a plain open
        return os.fdopen(fd, "rb")
    except BaseException:
        os.close(fd)
        raise


def read_bytes(path: str | os.PathLike, limit: int, what: str = "file") -> bytes:
    """The contents of the regular file `path`, or FileTooLarge (naming it as `what`) if
    it holds more than `limit` bytes (as read, not as its size says: a file may grow)."""
    with open_regular(path) as handle:
        data = handle.read(limit + 1)
    if len(data) > limit:
        raise FileTooLarge(path, limit, what)
    return data


def regular_kind(path: str | os.PathLike) -> str | None:
    """None where `path` is a regular file, a folder or missing; else what it is (`kind_of`),
    without opening it."""
    try:
        mode = os.stat(path).st_mode
    except (OSError, ValueError):
        return None
    return None if stat.S_ISREG(mode) or stat.S_ISDIR(mode) else kind_of(mode)
