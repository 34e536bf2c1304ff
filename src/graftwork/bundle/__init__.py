"""Model bundles: a standard Hugging Face model folder plus `graftwork.json`.

The folder loads with `AutoModelFor…Classification.from_pretrained(bundle)` without graftwork.
The manifest records the task, label map, recipe, metrics, library versions and the sha256 of
every file, which `load` checks. A bundle is written under a temporary name and renamed into
place when complete, so a reader never sees a half-written bundle.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import time
from collections.abc import Callable
from importlib import metadata
from pathlib import Path

from graftwork.bundle import atomic
from graftwork.errors import BundleError

MANIFEST = "graftwork.json"
FORMAT = "graftwork-bundle/1"


def sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as fh:
        for chunk in iter(lambda: fh.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


def versions() -> dict[str, str]:
    out = {}
    for name in ("graftwork", "torch", "transformers", "peft", "accelerate", "tokenizers"):
        with contextlib.suppress(metadata.PackageNotFoundError):
            out[name] = metadata.version(name)
    return out


def file_hashes(folder: Path) -> dict[str, str]:
    return {
        str(p.relative_to(folder)): sha256(p)
        for p in sorted(folder.rglob("*"))
        if p.is_file() and p.name != MANIFEST
    }


def write_manifest(folder: Path, manifest: dict) -> dict:
    """Add format, versions, time and the sha256 of every file in `folder`; write it there."""
    manifest = {"format": FORMAT, **manifest, "versions": versions()}
    manifest["created"] = time.strftime("%Y-%m-%dT%H:%M:%S%z")
    manifest["files"] = file_hashes(folder)
    atomic.write_json(folder / MANIFEST, manifest)
    return manifest


def write_bundle(out_dir: Path, write: Callable[[Path], None], manifest: dict) -> Path:
    """Call `write(tmp)` to fill a temporary folder, add the manifest, then rename into place."""
    out_dir = Path(out_dir)
    with atomic.building(out_dir) as tmp:
        write(tmp)
        write_manifest(tmp, manifest)
    return out_dir


def read_manifest(bundle: Path, verify: bool = True) -> dict:
    bundle = Path(bundle)
    path = bundle / MANIFEST
    if not bundle.is_dir():
        raise BundleError(
            f"bundle {bundle} does not exist; pass the folder a run wrote (runs/NAME/bundle)"
        )
    if not path.is_file():
        raise BundleError(
            f"{bundle} is not a graftwork bundle (no {MANIFEST}); pass the folder a run wrote"
        )
    try:
        manifest = json.loads(path.read_text(encoding="utf-8"))
    except json.JSONDecodeError as exc:
        raise BundleError(f"{path} is not valid JSON ({exc}); the bundle is damaged") from None
    if verify:
        for rel, expected in manifest.get("files", {}).items():
            file = bundle / rel
            if not file.is_file():
                raise BundleError(f"bundle {bundle}: {rel} is missing; the bundle is incomplete")
            if sha256(file) != expected:
                raise BundleError(
                    f"bundle {bundle}: {rel} changed after the bundle was written (sha256 "
                    "mismatch); re-create the bundle, or load with verify=False if you changed "
                    "it on purpose"
                )
    return manifest
