"""Model bundles: a standard Hugging Face model folder plus `graftwork.json`.

The folder loads with `AutoModelFor…Classification.from_pretrained(bundle)` without graftwork
(a multi-task bundle's other tasks hold only their heads beside it: `tasks.py`).
The manifest (`manifest.py`) records the task, label map, recipe, metrics, library versions,
the sha256 of every file and of its own content, which `load` checks, and every read checks it
against the model's config.json (a manifest edited to another task is refused). A bundle is
written under a temporary name and renamed into place when complete (`atomic.py`), so a reader
never sees a half-written bundle; a write that fails (a full disk: `atomic.DiskFullError`)
leaves the old bundle as it was and no temporary folder, and the next write removes what a
killed one left.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

from graftwork.bundle import atomic
from graftwork.bundle.manifest import (
    FORMAT,
    MANIFEST,
    Manifest,
    file_hashes,
    read_manifest,
    save_manifest,
    sha256,
    versions,
    write_manifest,
)


def write_bundle(
    out_dir: Path,
    write: Callable[[Path], None],
    manifest: dict,
    needed: Callable[[], int] | None = None,
) -> Path:
    """Call `write(tmp)` to fill a temporary folder, add the manifest, then rename into place;
    `needed()` is about the bytes the bundle takes (said when the disk is full)."""
    out_dir = Path(out_dir)
    with atomic.building(out_dir, needed) as tmp:
        write(tmp)
        write_manifest(tmp, manifest)
    return out_dir


__all__ = [
    "FORMAT",
    "MANIFEST",
    "Manifest",
    "file_hashes",
    "read_manifest",
    "save_manifest",
    "sha256",
    "versions",
    "write_bundle",
    "write_manifest",
]
