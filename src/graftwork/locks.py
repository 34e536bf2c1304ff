"""File locks: an exclusive `fcntl.flock` on a lock file, the one primitive behind every lock
graftwork takes (a run folder's, `runs.lock`; the backbone cache's, `backbones.cache`; a tune
study's, `runs.tune`).

`take(path)` opens the lock file (creating it), locks it, waiting for another holder or, with
`wait=False`, not (then None), notes this process's id in it and returns the open descriptor;
`release(fd)` closes it, which drops the lock. `held(path)` is the two around a block, and
`holder(path)` reads the id a holder noted (for the message that names who holds it). The kernel
drops a lock when its process ends, however it ends (kill -9 included), so a lock file that
stays behind means nothing on its own.

It sits below every layer (it imports nothing of graftwork), so all of them can use it.
Left out: file systems where flock does not reach other machines (some network mounts), and
waiting with a timeout.
"""

from __future__ import annotations

import fcntl
import os
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path


def take(path: Path, wait: bool = True) -> int | None:
    """Lock `path` (created if missing) for this process; the open descriptor, or None when
    `wait` is False and another process holds it. An OSError opening the file is raised."""
    fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o644)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | (0 if wait else fcntl.LOCK_NB))
    except BlockingIOError:
        os.close(fd)
        return None
    except BaseException:
        os.close(fd)
        raise
    os.ftruncate(fd, 0)
    os.pwrite(fd, f"{os.getpid()}\n".encode("ascii"), 0)
    return fd


def release(fd: int) -> None:
    """Drop the lock `take` returned (closing its file)."""
    os.close(fd)


@contextmanager
def held(path: Path) -> Iterator[None]:
    """Hold the lock on `path` while the block runs (waiting for it first)."""
    fd = take(path)
    try:
        yield
    finally:
        release(fd)


def holder(path: Path) -> str:
    """The process id the holder of `path` noted in it ("unknown" when none can be read)."""
    try:
        noted = Path(path).read_text(encoding="ascii", errors="replace").strip()
    except OSError:
        noted = ""
    return noted or "unknown"
