"""One run at a time in a run folder: an exclusive lock, held for the whole run.

Two runs writing one folder at once delete each other's checkpoints and mix their train.log.
So a run locks `RUN_FOLDER/.graft.lock` (`graftwork.locks`, an flock) without waiting, and a
second run in the same folder is refused at once with the folder and the first one's pid. The
kernel drops the lock when its process ends, however it ends (kill -9 included): a killed run
never blocks the next one, and the lock file (which stays) means nothing on its own.

In a data-parallel run only the main process writes the folder, so only it locks; it tells
the other processes whether it got the lock, and all of them stop together when it did not.

The lock is taken by `hold` (called by `runs.lifecycle.start`, after which the run may write
the folder) and kept until the outermost function marked `@whole_run` returns or fails:
`graft run` keeps it through training, compression and the report, and a stage it calls
(`train`, the student's `distill`) adds its own folder's lock to the same span. Code that
calls `start` outside any `@whole_run` function keeps the lock until its process ends.

Left out: file systems where flock does not reach other machines (some network mounts);
there two machines can still run in one folder.
"""

from __future__ import annotations

import functools
from contextvars import ContextVar
from pathlib import Path

from graftwork import locks
from graftwork.errors import GraftError

LOCK_FILE = ".graft.lock"

_held: dict[Path, int] = {}  # folder (resolved) → the open lock file of this process
_span: ContextVar[list[Path] | None] = ContextVar("graftwork_run_span", default=None)


def whole_run(function):
    """Keep the run-folder locks `hold` takes during `function` until it returns (only the
    outermost such function releases them)."""

    @functools.wraps(function)
    def run(*args, **kwargs):
        if _span.get() is not None:
            return function(*args, **kwargs)
        taken: list[Path] = []
        token = _span.set(taken)
        try:
            return function(*args, **kwargs)
        finally:
            _span.reset(token)
            for folder in reversed(taken):
                release(folder)

    return run


def hold(run_dir: Path, accelerator) -> None:
    """Lock `run_dir` for this run (the main process locks; every process learns the outcome)
    or raise the GraftError that names the folder and the pid holding it, in every process."""
    problem = None
    if accelerator.is_main_process:
        try:
            acquire(run_dir)
        except GraftError as exc:
            problem = str(exc)
    if accelerator.num_processes > 1:
        from accelerate.utils import broadcast_object_list

        problem = broadcast_object_list([problem], from_process=0)[0]
    if problem is not None:
        raise GraftError(problem)


def acquire(run_dir: Path) -> None:
    """Lock `run_dir` (created if needed) for this process, or raise if another holds it."""
    folder = Path(run_dir).resolve()
    if folder in _held:  # this process runs there already (a stage inside the run)
        return
    folder.mkdir(parents=True, exist_ok=True)
    fd = locks.take(folder / LOCK_FILE, wait=False)
    if fd is None:  # held by another run
        raise GraftError(
            f"run folder {run_dir} is in use by another run (pid "
            f"{locks.holder(folder / LOCK_FILE)}), which holds {LOCK_FILE} there; wait for it "
            "to finish or stop it, or give this run its own folder (name=… or output_dir=…)"
        )
    _held[folder] = fd
    span = _span.get()
    if span is not None:
        span.append(folder)


def release(run_dir: Path) -> None:
    """Give up this process's lock on `run_dir` (nothing if it holds none)."""
    fd = _held.pop(Path(run_dir).resolve(), None)
    if fd is not None:
        locks.release(fd)
