"""Backbones converted once from a packaged file, kept in a cache folder.

The cache is the GGUF backbones' (`gguf.cache_root`: `$GRAFT_CACHE`, default
`~/.cache/graftwork`), one folder per key. `converted`
returns the folder for a key, building it on first use: under an exclusive lock on
`.KEY.lock`, into `.KEY.tmp`, renamed to `KEY` when complete. A second process waits for the
first and then uses its folder; a conversion that was killed leaves only `.KEY.tmp`, which the
next one (holding the lock, so no one else is writing it) removes.
"""

from __future__ import annotations

import fcntl
import os
import shutil
from collections.abc import Callable
from pathlib import Path

from graftwork.backbones.gguf import CACHE_ENV, cache_root
from graftwork.errors import BackboneError


def converted(key: str, build: Callable[[Path], object], what: str) -> Path:
    """The cache folder `key`, made by `build(empty_folder)` if it is not there yet."""
    root = cache_root()
    final = root / key
    if (final / "config.json").is_file():
        return final
    try:
        root.mkdir(parents=True, exist_ok=True)
        lock = open(root / f".{key}.lock", "w")  # noqa: SIM115 (held until the folder is in place)
    except OSError as exc:
        raise BackboneError(
            f"cannot write the backbone cache {root} ({exc.strerror}); set {CACHE_ENV} to a "
            f"writable folder"
        ) from None
    with lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        if (final / "config.json").is_file():  # another process made it while we waited
            return final
        tmp = root / f".{key}.tmp"
        shutil.rmtree(tmp, ignore_errors=True)  # left by a killed conversion
        shutil.rmtree(final, ignore_errors=True)  # incomplete (no config.json)
        try:
            build(tmp)
            os.replace(tmp, final)
        except OSError as exc:
            shutil.rmtree(tmp, ignore_errors=True)
            raise BackboneError(
                f"converting {what} into {final} failed ({exc.strerror or exc}); free disk "
                f"space or set {CACHE_ENV} to another folder"
            ) from None
        except BaseException:
            shutil.rmtree(tmp, ignore_errors=True)
            raise
    return final
