"""Atomic writes: a reader sees the old file or folder, or the new one whole, never a half.

Everything is built under a hidden temporary sibling (`.NAME.tmp-PID`) and renamed into place
on the same file system. `write_text` / `write_json` do that for one file; `building` fills a
temporary folder and renames it over the target, removing the temporary one if the block
fails; `place` is that last rename on its own, for writers that fill the folder themselves
(a checkpoint, filled by every training process); `scratch` is a working folder beside a
target that is removed however its block ends. Files get the mode the umask gives (0644 by
default), as a plain `open` would, not the 0600 of `tempfile.mkstemp`.

A write that fails leaves nothing behind. One whose process was killed leaves its temporary
sibling, named with the dead process's id: `remove_stale` removes those (and puts back a
folder a killed `place` had moved aside), and the next write to the same target calls it.
A full disk is a `DiskFullError` saying what was being written, where, how much it needs and
how much is free, instead of the OSError (or safetensors' or torch's own error) that said so.

Left out: fsync. The writes survive a killed process (the page cache is the kernel's), not a
power cut. Replacing an existing folder takes two renames (the old one aside, the new one in),
so in between a reader can find no folder, but never a partial one.
"""

from __future__ import annotations

import errno
import json
import os
import re
import shutil
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path

from graftwork.errors import GraftError

# a temporary sibling and the process that made it: `.NAME.tmp-PID`, `.NAME.old-PID`, …
TEMPORARY = re.compile(r"^\.(?P<name>.+)\.(?P<kind>tmp|old|work)-(?P<pid>\d+)$")
# words of errors that mean a full disk without an errno (safetensors' Rust I/O error, torch's
# PytorchStreamWriter); the last two only count when the disk is in fact (nearly) full
FULL_WORDS = ("no space left", "storagefull", "os error 28", "disk quota exceeded")
WRITE_FAILED = ("write failed", "unexpected pos")
NEARLY_FULL = 64 << 20  # bytes


class DiskFullError(GraftError):
    """A write ran out of disk space; nothing half-written was left."""


def temp_path(final: Path, unique: bool = True, kind: str = "tmp") -> Path:
    """The hidden sibling `final` is built under: `.NAME.tmp-PID`, or `.NAME.tmp` when several
    processes must agree on it (`unique=False`)."""
    final = Path(final)
    suffix = f".{kind}-{os.getpid()}" if unique else f".{kind}"
    return final.with_name(f".{final.name}{suffix}")


def write_text(path: Path, text: str) -> Path:
    """Write `text` (UTF-8) to `path` atomically."""
    path = Path(path)
    tmp = temp_path(path)
    try:
        tmp.write_text(text, encoding="utf-8")
        os.replace(tmp, path)
    except BaseException as exc:
        written = size(tmp)
        tmp.unlink(missing_ok=True)
        if no_space(exc, path.parent):
            raise disk_full(path, len(text.encode("utf-8")), written) from exc
        raise
    return path


def write_json(path: Path, data) -> Path:
    """Write `data` as indented JSON to `path` atomically."""
    return write_text(path, json.dumps(data, indent=2))


def place(tmp: Path, final: Path) -> Path:
    """Rename the finished `tmp` (a file or a folder) to `final`, replacing what is there."""
    tmp, final = Path(tmp), Path(final)
    old = None
    if tmp.is_dir() and final.is_dir():  # a rename does not replace a folder that has files
        old = temp_path(final, kind="old")
        shutil.rmtree(old, ignore_errors=True)
        final.rename(old)
    os.replace(tmp, final)
    if old is not None:
        shutil.rmtree(old, ignore_errors=True)
    return final


@contextmanager
def building(final: Path, needed: Callable[[], int] | None = None) -> Iterator[Path]:
    """Yield an empty temporary folder; when the block ends, rename it to `final` (replacing
    an existing folder). If the block fails, the temporary folder is removed and `final` is
    left as it was; a full disk says how much the folder needs (`needed()`, else the size of
    the folder it replaces or of what was written before the disk filled)."""
    final = Path(final)
    final.parent.mkdir(parents=True, exist_ok=True)
    remove_stale(final.parent, final.name)
    tmp = temp_path(final)
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir()
    try:
        yield tmp
        place(tmp, final)
    except BaseException as exc:
        written = size(tmp)
        full = not isinstance(exc, DiskFullError) and no_space(exc, final.parent)
        shutil.rmtree(tmp, ignore_errors=True)
        if full:
            raise disk_full(final, needed() if needed else size(final), written) from exc
        raise


@contextmanager
def scratch(final: Path, needed: Callable[[], int] | None = None) -> Iterator[Path]:
    """A working folder beside `final` (`.NAME.work-PID`, same file system, so what is made
    there can be linked into `final`), removed when the block ends, however it ends; a full
    disk says how much the work for `final` needs (`needed()`)."""
    final = Path(final)
    remove_stale(final.parent, final.name)
    work = temp_path(final, kind="work")
    shutil.rmtree(work, ignore_errors=True)
    work.mkdir(parents=True)
    try:
        yield work
    except BaseException as exc:
        if not isinstance(exc, DiskFullError) and no_space(exc, work):
            raise disk_full(final, needed() if needed else 0, size(work)) from exc
        raise
    finally:
        shutil.rmtree(work, ignore_errors=True)


# ---------------------------------------------------------------- leftovers of killed writes


def alive(pid: int) -> bool:
    """Whether process `pid` exists (on this machine)."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # someone else's process
        return True
    return True


def remove_stale(folder: Path, name: str | None = None) -> list[Path]:
    """Remove the temporary siblings in `folder` (of `name`, or of every target) that a
    process no longer running left behind; a folder a killed `place` had moved aside is put
    back when its target is missing. Returns what was removed."""
    folder = Path(folder)
    if not folder.is_dir():
        return []
    removed = []
    for path in sorted(folder.iterdir()):
        match = TEMPORARY.match(path.name)
        if match is None or (name is not None and match["name"] != name):
            continue
        if int(match["pid"]) == os.getpid() or alive(int(match["pid"])):
            continue
        target = folder / match["name"]
        if match["kind"] == "old" and not target.exists():
            path.rename(target)  # the only copy: the new folder never took its place
            continue
        remove(path)
        removed.append(path)
    return removed


def remove(path: Path) -> None:
    """Remove a file or a folder, whichever `path` is (nothing if neither)."""
    if path.is_dir() and not path.is_symlink():
        shutil.rmtree(path, ignore_errors=True)
    else:
        path.unlink(missing_ok=True)


# ---------------------------------------------------------------- a full disk


def size(path: Path) -> int:
    """Bytes of a file, or of every file under a folder (0 when it is missing)."""
    path = Path(path)
    if path.is_file():
        return path.stat().st_size
    if not path.is_dir():
        return 0
    return sum(p.stat().st_size for p in path.rglob("*") if p.is_file() and not p.is_symlink())


def free_bytes(path: Path) -> int:
    """Free bytes on the file system of `path` (or of its nearest existing parent)."""
    path = Path(path).absolute()
    while not path.exists() and path != path.parent:
        path = path.parent
    return shutil.disk_usage(path).free


def no_space(exc: BaseException, folder: Path) -> bool:
    """Whether `exc` (or an error it came from) means the disk under `folder` is full."""
    seen: BaseException | None = exc
    while seen is not None:
        if isinstance(seen, OSError) and seen.errno in (errno.ENOSPC, errno.EDQUOT):
            return True
        text = str(seen).lower()
        if any(words in text for words in FULL_WORDS):
            return True
        if any(words in text for words in WRITE_FAILED) and free_bytes(folder) < NEARLY_FULL:
            return True
        seen = seen.__cause__ or seen.__context__
    return False


def megabytes(count: int) -> str:
    return f"{count / 1e6:,.1f} MB"


def disk_full(target: Path, needed: int, written: int) -> DiskFullError:
    """The error for a write of `target` that filled the disk after `written` bytes."""
    if needed > written:
        need = f"it needs about {megabytes(needed)}"
    else:
        need = f"it needs more than the {megabytes(written)} written before the disk filled"
    return DiskFullError(
        f"cannot write {target}: no space left on the disk ({need}; {megabytes(free_bytes(target))}"
        f" free there). Nothing half-written was left and {target} is as it was before; free "
        "some space, or write somewhere else (output_dir=… for a run), and try again"
    )
