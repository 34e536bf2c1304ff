"""`graftwork.json`, the bundle manifest: a pydantic model, and reading and writing it.

The manifest says what model a bundle holds and how it was made: task, labels, method,
backbone, the recipe, metrics, ONNX artifacts, what pruning / distillation / an extra
objective / multi-task training recorded, the sha256 of every file, library versions and the
time it was written. Writers build a dict and `write_manifest` validates it through `Manifest`;
`read_manifest` validates the JSON and returns a `Manifest`, read by attribute.

Keys the model does not name are kept (`extra="allow"`: a pretrained backbone's `mask_ratio`,
a task folder's `multitask_of`, and whatever a newer graftwork adds; `encoder` is where a
multi-task bundle's shared encoder is, see `tasks.py`), and a manifest is written
back with exactly the keys it was read or built with. The nested records (recipe, metrics,
artifacts, pruning, …) stay dicts: each is written and read by one module.

`get`, `[key]`, `keys` and `items` read a manifest as the dict it was until this model came:
`Predictor.manifest` is public, and `apply_pruning` takes either form. New code reads
attributes.

The manifest vouches for itself as well as for the files: `manifest_sha256` is the sha256 of
its own content (every other key, as canonical JSON), so a verified read notices an edited
`graftwork.json` (a task changed from QA to classification, generation limits raised). And
every read, verified or not, checks the manifest against the bundle's `config.json`
(`contradiction`): the architecture must be one the task's model class loads (a QA manifest
needs a …ForQuestionAnswering model), and a task with a label vocabulary must list the labels
of the head's `id2label`, in its order; a contradictory bundle cannot load the model it claims,
so `verify=False` does not let it through. A bundle written before the manifest hash existed
(no `manifest_sha256`) is checked for consistency only. The hash is a checksum, not a
signature: it catches edits, not someone who recomputes it.

Left out: migrations between formats (there is one, `graftwork-bundle/1`); checking tasks the
registry does not know (a pretrained backbone's `mlm`), a config without `architectures`, and
the architecture of a task whose model class is not a transformers auto class (seq2seq's
wrapper: an architecture another task's class loads is still refused).
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

from graftwork import registry
from graftwork.bundle import atomic
from graftwork.errors import BundleError

MANIFEST = "graftwork.json"
FORMAT = "graftwork-bundle/1"
CONFIG = "config.json"
WEIGHTS = ("model.safetensors", "model.safetensors.index.json")  # what a bundle's model loads
HEAD = "head.safetensors"  # a multi-task bundle's task folder: its head (`bundle.tasks`)
DIGEST = "manifest_sha256"  # the sha256 of the manifest's other keys (module docstring)


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
    # a multi-task bundle's task folder: the folder (relative) whose weights hold the encoder
    encoder: str | None = None
    versions: dict[str, str] = {}
    created: str | None = None
    files: dict[str, str] = {}  # path inside the bundle → sha256
    manifest_sha256: str | None = None  # of every other key (`digest`); None: an older bundle

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


def digest(data: dict) -> str:
    """The sha256 of a manifest's content: every key but `manifest_sha256`, as canonical JSON
    (sorted keys, no spaces), the same before writing and after reading back."""
    body = json.loads(json.dumps({k: v for k, v in data.items() if k != DIGEST}))
    text = json.dumps(body, sort_keys=True, separators=(",", ":"), ensure_ascii=True)
    return hashlib.sha256(text.encode("utf-8")).hexdigest()


def write_manifest(folder: Path, manifest: dict) -> Manifest:
    """Add format, versions, time and the sha256 of every file in `folder`; write it there."""
    data = {"format": FORMAT, **manifest, "versions": versions()}
    data["created"] = time.strftime("%Y-%m-%dT%H:%M:%S%z")
    data["files"] = file_hashes(folder)
    written = validate(data, Path(folder) / MANIFEST)
    save_manifest(folder, written)
    return written


def save_manifest(folder: Path, manifest: Manifest) -> Path:
    """Write `manifest` into `folder` as it is (its `files` already up to date), with the
    hash of its content (`manifest_sha256`, set on `manifest` too)."""
    data = manifest.dump()
    manifest.manifest_sha256 = digest(data)
    return atomic.write_json(Path(folder) / MANIFEST, {**data, DIGEST: manifest.manifest_sha256})


def _head_names(task: str, method: str | None = None) -> frozenset[str] | None:
    """The architectures the task's model class loads (transformers' table of its auto class),
    or None when the class is not an auto class. A method whose bundles hold a model of its
    own (setfit: the bare encoder) names its class as `model_class`, which replaces the task's."""
    owner = registry.task(task)
    if method in registry.METHODS and hasattr(registry.method(method), "model_class"):
        owner = registry.method(method)
    table = getattr(getattr(owner.model_class(), "_model_mapping", None), "_model_mapping", None)
    if table is None:
        return None
    names: set[str] = set()
    for value in table.values():
        names.update(value if isinstance(value, tuple | list) else [value])
    return frozenset(names)


def _config(bundle: Path) -> dict | None:
    try:
        data = json.loads((bundle / CONFIG).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None  # absent or unreadable: loading says so; the file hashes cover it
    return data if isinstance(data, dict) else None


def contradiction(bundle: Path, manifest: Manifest) -> str | None:
    """What in the manifest contradicts the bundle's config.json (None: nothing does): an
    architecture the manifest's task does not load, or labels other than the head's."""
    task, config = manifest.task, _config(bundle)
    if task not in registry.TASKS or config is None:
        return None
    where = f"bundle {bundle}: its {MANIFEST} says task '{task}'"
    fix = (
        f"{MANIFEST} was edited or comes from another bundle: restore it, or re-create the "
        "bundle (graft train)"
    )
    architectures = config.get("architectures") or []
    if architectures:
        arch, heads = architectures[0], _head_names(task, manifest.method)
        owners = [t for t in registry.TASKS if t != task and arch in (_head_names(t) or ())]
        if (heads is not None and arch not in heads) or (heads is None and owners):
            auto = registry.task(task).model_class().__name__.replace("AutoModel", "…")
            needs = f"a {auto} model" if heads is not None else "another architecture"
            held = f" (a '{owners[0]}' model)" if owners else ""
            return (
                f"{where}, but its {CONFIG} holds a {arch}{held}; task '{task}' needs {needs}. "
                f"{fix}"
            )
    if registry.task(task).LABEL_KEY and isinstance(config.get("id2label"), dict):
        head = config["id2label"]
        names = [str(head.get(str(i), head.get(i))) for i in range(len(head))]
        labels = manifest.labels
        if len(names) != len(labels):
            return (
                f"{where} with {len(labels)} labels, but the head in its {CONFIG} has "
                f"{len(names)} (id2label); {fix}"
            )
        for i, (name, label) in enumerate(zip(names, labels, strict=True)):
            if name != label:
                return (
                    f"{where} with label {i} '{label}', but the head in its {CONFIG} calls "
                    f"label {i} '{name}' (id2label); {fix}"
                )
    return None


def unverifiable(manifest: Manifest) -> str | None:
    """What a manifest's `files` fails to cover of what loading reads (None: it covers it):
    the config, the weights (one file or a sharded index) and every ONNX artifact."""
    files = manifest.files
    if not files:
        return f"lists no files ('files' is {'empty' if 'files' in manifest else 'missing'})"
    missing = [] if CONFIG in files else [CONFIG]
    # a task folder of a multi-task bundle holds its head; the root ('.') the shared encoder
    weights = (HEAD,) if manifest.encoder not in (None, ".") else WEIGHTS
    if not any(name in files for name in weights):
        missing.append(" or ".join(weights))
    missing += [
        a["path"] for a in manifest.artifacts.values() if a.get("path") and a["path"] not in files
    ]
    return f"does not list {', '.join(missing)} in its 'files'" if missing else None


def read_manifest(bundle: Path, verify: bool = True) -> Manifest:
    """The bundle's manifest, checked against the bundle's config.json (`contradiction`);
    with `verify`, also its own content against its `manifest_sha256` (a bundle without one,
    written before it existed, is checked for consistency only) and every file it lists
    against its sha256, and a manifest that does not list the config, the weights (a task
    folder of a multi-task bundle: its head) and the ONNX artifacts is a damaged bundle
    (tampered weights would otherwise load unchecked)."""
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
    contradicted = contradiction(bundle, manifest)
    if contradicted:
        raise BundleError(contradicted)
    if verify:
        unlisted = unverifiable(manifest)
        if unlisted:
            raise BundleError(
                f"bundle {bundle}: its {MANIFEST} {unlisted}, so what loads cannot be checked "
                "against what was written; the bundle is damaged. Re-create it (graft train), or "
                "load it with verify=False if you trust where it came from"
            )
        if manifest.manifest_sha256 is not None and digest(data) != manifest.manifest_sha256:
            raise BundleError(
                f"bundle {bundle}: its {MANIFEST} changed after the bundle was written (its "
                f"content does not match its {DIGEST}); restore it or re-create the bundle "
                "(graft train), or load with verify=False if you changed it on purpose"
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
