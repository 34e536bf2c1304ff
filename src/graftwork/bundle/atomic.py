"""Atomic writes: a reader sees the old file or folder, or the new one whole, never a half.

Everything is built under a hidden temporary sibling (`.NAME.tmp-PID`) and renamed into place
on the same file system. `write_text` / `write_json` do that for one file; `building` fills a
temporary folder and renames it over the target, removing the temporary one if the block
fails; `place` is that last rename on its own, for writers that fill the folder themselves
(a checkpoint, filled by every training process). Files get the mode the umask gives
(0644 by default), as a plain `open` would, not the 0600 of `tempfile.mkstemp`.

Left out: fsync. The writes survive a killed process (the page cache is the kernel's), not a
power cut. Replacing an existing folder takes two renames (the old one aside, the new one in),
so in between a reader can find no folder, but never a partial one.
"""

from __future__ import annotations

import json
import os
import shutil
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path


def temp_path(final: Path, unique: bool = True) -> Path:
    """The hidden sibling `final` is built under: `.NAME.tmp-PID`, or `.NAME.tmp` when several
    processes must agree on it (`unique=False`)."""
    final = Path(final)
    suffix = f".tmp-{os.getpid()}" if unique else ".tmp"
    return final.with_name(f".{final.name}{suffix}")


def write_text(path: Path, text: str) -> Path:
    """Write `text` (UTF-8) to `path` atomically."""
    path = Path(path)
    tmp = temp_path(path)
    try:
        tmp.write_text(text, encoding="utf-8")
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
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
        old = final.with_name(f".{final.name}.old-{os.getpid()}")
        shutil.rmtree(old, ignore_errors=True)
        final.rename(old)
    os.replace(tmp, final)
    if old is not None:
        shutil.rmtree(old, ignore_errors=True)
    return final


@contextmanager
def building(final: Path) -> Iterator[Path]:
    """Yield an empty temporary folder; when the block ends, rename it to `final` (replacing
    an existing folder). If the block fails, the temporary folder is removed and `final` is
    left as it was."""
    final = Path(final)
    final.parent.mkdir(parents=True, exist_ok=True)
    tmp = temp_path(final)
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir()
    try:
        yield tmp
        place(tmp, final)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
