"""`graftwork.json`, the bundle manifest: a pydantic model, and reading and writing it.

The manifest says what model a bundle holds and how it was made: task, labels, method,
backbone, the recipe, metrics, ONNX artifacts, what pruning / distillation / an extra
objective / multi-task training recorded, the sha256 of every file, library versions and the
time it was written. Writers build a dict and `write_manifest` validates it through `Manifest`;
`read_manifest` validates the JSON and returns a `Manifest`, read by attribute.

Keys the model does not name are kept (`extra="allow"`: a pretrained backbone's `mask_ratio`,
a task folder's `multitask_of`, and whatever a newer graftwork adds), and a manifest is written
back with exactly the keys it was read or built with. The nested records (recipe, metrics,
artifacts, pruning, …) stay dicts: each is written and read by one module.

`get`, `[key]`, `keys` and `items` read a manifest as the dict it was until this model came:
`Predictor.manifest` is public, and `apply_pruning` takes either form. New code reads
attributes.

Left out: migrations between formats (there is one, `graftwork-bundle/1`).
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import time
from importlib import metadata
from pathlib import Path
from typing import Any

from pydantic import BaseModel, ConfigDict, ValidationError

from graftwork.bundle import atomic
from graftwork.errors import BundleError

MANIFEST = "graftwork.json"
FORMAT = "graftwork-bundle/1"
CONFIG = "config.json"
WEIGHTS = ("model.safetensors", "model.safetensors.index.json")  # what a bundle's model loads


class _Record(BaseModel):
    model_config = ConfigDict(extra="allow")


class TaskEntry(_Record):
    """One task of a multi-task bundle: its type and its folder, relative to the root."""

    type: str
    path: str


class Multitask(_Record):
    """The root manifest of a multi-task bundle: every task (the first one at the root)."""

    tasks: dict[str, TaskEntry]
    sampling: str | None = None
    weights: dict[str, float] = {}
    recipe: dict[str, Any] = {}


class Manifest(_Record):
    format: str = FORMAT
    name: str | None = None
    task: str | None = None  # a registered task, or "mlm" for a backbone `graft pretrain` wrote
    labels: list[str] = []
    method: str | None = None  # None for a pretrained backbone (plain weights)
    backbone: str | None = None
    recipe: dict[str, Any] = {}  # the recipe as JSON (`load_recipe` turns it back)
    metrics: dict[str, Any] = {}  # per split, plus parameters
    artifacts: dict[str, dict[str, Any]] = {}  # backend name → path and parity report
    pruning: dict[str, Any] | None = None
    distillation: dict[str, Any] | None = None
    objective: dict[str, Any] | None = None
    multitask: Multitask | None = None
    versions: dict[str, str] = {}
    created: str | None = None
    files: dict[str, str] = {}  # path inside the bundle → sha256

    def dump(self) -> dict:
        """The JSON form: the keys it was read or built with, and no others."""
        return self.model_dump(mode="json", exclude_unset=True)

    # dict-style reading (see the module docstring) ----------------------------------------

    def keys(self) -> list[str]:
        return list(self.dump())

    def __contains__(self, key: object) -> bool:
        return key in self.model_fields_set or key in (self.__pydantic_extra__ or {})

    def __getitem__(self, key: str):
        if key not in self:
            raise KeyError(key)
        return self.model_dump(mode="json", include={key}, exclude_unset=True)[key]

    def get(self, key: str, default=None):
        return self[key] if key in self else default  # noqa: SIM401 (this is get)

    def items(self):
        return self.dump().items()


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


def validate(data: dict, where: object) -> Manifest:
    try:
        return Manifest.model_validate(data)
    except ValidationError as exc:
        problems = "; ".join(
            f"{'.'.join(str(p) for p in e['loc']) or 'manifest'}: {e['msg']}" for e in exc.errors()
        )
        raise BundleError(
            f"{where}: not a valid {MANIFEST} ({problems}); re-create the bundle"
        ) from None


def write_manifest(folder: Path, manifest: dict) -> Manifest:
    """Add format, versions, time and the sha256 of every file in `folder`; write it there."""
    data = {"format": FORMAT, **manifest, "versions": versions()}
    data["created"] = time.strftime("%Y-%m-%dT%H:%M:%S%z")
    data["files"] = file_hashes(folder)
    written = validate(data, Path(folder) / MANIFEST)
    save_manifest(folder, written)
    return written


def save_manifest(folder: Path, manifest: Manifest) -> Path:
    """Write `manifest` into `folder` as it is (its `files` already up to date)."""
    return atomic.write_json(Path(folder) / MANIFEST, manifest.dump())


def unverifiable(manifest: Manifest) -> str | None:
    """What a manifest's `files` fails to cover of what loading reads (None: it covers it):
    the config, the weights (one file or a sharded index) and every ONNX artifact."""
    files = manifest.files
    if not files:
        return f"lists no files ('files' is {'empty' if 'files' in manifest else 'missing'})"
    missing = [] if CONFIG in files else [CONFIG]
    if not any(name in files for name in WEIGHTS):
        missing.append(" or ".join(WEIGHTS))
    missing += [
        a["path"] for a in manifest.artifacts.values() if a.get("path") and a["path"] not in files
    ]
    return f"does not list {', '.join(missing)} in its 'files'" if missing else None


def read_manifest(bundle: Path, verify: bool = True) -> Manifest:
    """The bundle's manifest; with `verify`, every file it lists is checked against its sha256,
    and a manifest that does not list the config, the weights and the ONNX artifacts is a
    damaged bundle (tampered weights would otherwise load unchecked)."""
    bundle = Path(bundle)
    path = bundle / MANIFEST
    if bundle.is_file():
        raise BundleError(
            f"bundle {bundle} is a file, not a bundle folder; pass the folder a run wrote "
            "(runs/NAME/bundle), not a file inside it"
        )
    if not bundle.is_dir():
        raise BundleError(
            f"bundle {bundle} does not exist; pass the folder a run wrote (runs/NAME/bundle)"
        )
    if not path.is_file():
        raise BundleError(
            f"{bundle} is not a graftwork bundle (no {MANIFEST}); pass the folder a run wrote"
        )
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except json.JSONDecodeError as exc:
        raise BundleError(f"{path} is not valid JSON ({exc}); the bundle is damaged") from None
    manifest = validate(data, path)
    if verify:
        unlisted = unverifiable(manifest)
        if unlisted:
            raise BundleError(
                f"bundle {bundle}: its {MANIFEST} {unlisted}, so what loads cannot be checked "
                "against what was written; the bundle is damaged. Re-create it (graft train), or "
                "load it with verify=False if you trust where it came from"
            )
        for rel, expected in manifest.files.items():
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
