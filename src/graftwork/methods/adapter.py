"""Bottleneck adapters (Houlsby, Pfeiffer): a small residual MLP per layer, backbone frozen.

An adapter maps a hidden state h to h + up(act(down(h))), with `down` to hidden // reduction
units. `up` starts at zero, so a freshly adapted model computes exactly what the backbone does.
Houlsby places one after each layer's attention output projection and one after its FFN output
projection (`attention.output.dense`, `output.dense`), Pfeiffer only the FFN one; in both, the
adapter acts before the layer's dropout, residual sum and LayerNorm. The adapters are
`nn.Module`s registered as the child `adapter` of `BertSelfOutput`/`BertOutput` (so
`named_parameters`, `state_dict`, optimizers and checkpoints see them) and run by a forward
hook on the projection; the transformers model is neither subclassed nor wrapped. The backbone
is frozen; the adapters and the task head (`head_modules`) train. The module and its insertion
live in `methods/bottleneck.py` (torch); this module holds the config, the method's protocol
functions and the adapter files, and imports torch only inside them.

A bundle trained this way holds:
- at its root, a standard Hugging Face folder with the frozen backbone and the trained head,
  *without* the adapter. Adapters are non-linear, so (unlike LoRA) they cannot be merged into
  the linear weights, and transformers cannot load the adapted architecture: a full copy would
  be dropped as unexpected keys just the same. Plain `from_pretrained(bundle)` therefore gives
  the backbone and head without the adapter, whose predictions are NOT the trained model's;
- `adapters/NAME/adapter_model.safetensors` (adapter and head weights only: a few hundred KB
  for MiniLM) and `adapters/NAME/adapter_config.json` (the config, labels, architecture and
  the sha256 of the frozen backbone it was trained on).
`graftwork.load(bundle)` re-inserts the adapter the bundle was trained with (`select`, `load`);
`graftwork.load(bundle, adapter="finance")` another one put there by `add_adapter`, which
accepts only adapters trained on the same frozen backbone (same sha256). The manifest lists
every adapter through its hashed files (`adapters/NAME/...` in `files`).

Written by hand: `adapters` (the maintained bottleneck-adapter library; 1.3.0 requires
transformers ~=4.57.6, and graftwork runs on transformers 5) does not install beside
transformers 5, and peft has no bottleneck adapters.

Leaves out: architectures other than the BERT family (BERT, RoBERTa, ELECTRA, MiniLM:
`base_model.encoder.layer[i]`); Pfeiffer's re-use of the layer's own LayerNorm around the
adapter (the `adapters` library's SeqBn layout) and adapters without their own residual;
parallel, stacked and fused adapters; more than one adapter active in one model at a time
(switch by loading the bundle with another `adapter=`).
"""

from __future__ import annotations

import json
import re
import shutil
from pathlib import Path
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field

from graftwork.backbones.quiet import quiet
from graftwork.bundle import Manifest, atomic, read_manifest, save_manifest, sha256
from graftwork.errors import BundleError, GraftError
from graftwork.methods import head_modules, train_head_only
from graftwork.methods.base import (
    FROZEN_ENCODER,
    files_bytes,
    load_plain,
    no_choice,
    no_schedule,
    one_lr,
    supported,
)

ADAPTERS_DIR = "adapters"
WEIGHTS = "adapter_model.safetensors"
CONFIG_FILE = "adapter_config.json"
FORMAT = "graftwork-adapter/1"
NAME_PATTERN = r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$"


class AdapterConfig(BaseModel):
    model_config = ConfigDict(extra="forbid")
    type: Literal["adapter"] = "adapter"
    placement: Literal["houlsby", "pfeiffer"] = Field(
        "houlsby",
        description="houlsby: after attention and after FFN in every layer; pfeiffer: FFN only.",
    )
    reduction: int = Field(16, ge=1, description="Bottleneck size is hidden_size // reduction.")
    activation: Literal["relu", "gelu"] = "relu"
    name: str = Field(
        "default", pattern=NAME_PATTERN, description="Folder under adapters/ in the bundle."
    )
    init_scale: float = Field(
        0.02, gt=0, description="Std of the down projection's init; up starts at zero."
    )


Config = AdapterConfig  # the registry reads each method's and objective's config here
DEFAULT_LR = 3e-3  # 3e-3 beat 1e-3 and 1e-2 on SST-2 (BENCHMARKS.md, "Adaptation methods")
REFUSES = {
    **FROZEN_ENCODER,
    "distill": "{where} keeps its adapter outside the model weights; distil from a full or "
    "LoRA bundle (a copied student would lose the adapter)",
    "prune": "{where} was trained with bottleneck adapters on a frozen backbone; pruning would "
    "change the backbone the adapters were trained for. Prune a full or LoRA bundle.",
    "ewc_previous": "objective.previous: {where} was trained with adapters, which stay outside "
    "its encoder weights; EWC continues from a bundle trained with method full or lora",
}
SUPPORTS = supported(REFUSES)


# ---------------------------------------------------------------- the method


def apply(model, config: AdapterConfig):
    """Freeze the backbone, insert the adapters, keep the task head trainable."""
    from graftwork.methods import bottleneck  # torch

    train_head_only(model)
    bottleneck.insert(model, config)  # new modules: the adapters train too
    return model


lr_scales = one_lr
schedule = no_schedule


def finish(model, out_dir: Path):
    """Write `adapters/NAME/` and return the model without adapters (backbone and head)."""
    from graftwork.methods import bottleneck  # torch

    adapters = bottleneck.adapters_in(model)
    if not adapters:
        raise GraftError("finish: the model holds no adapters; was it built with method adapter?")
    save_adapter(model, Path(out_dir) / ADAPTERS_DIR / adapters[0].config.name)
    bottleneck.remove(model)
    return model


def task_bytes(bundle: Path, trainable: int) -> int:
    """Every adapter folder (adapter and head weights, config)."""
    return files_bytes(Path(bundle) / ADAPTERS_DIR)


# ---------------------------------------------------------------- adapter files


def save_adapter(model, folder: Path) -> Path:
    """Write the adapter and head weights (safetensors) and `adapter_config.json`."""
    from safetensors.torch import save_file

    from graftwork.methods import bottleneck  # torch

    adapters = bottleneck.adapters_in(model)
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    state = bottleneck.adapter_state(model)
    tensors = {k: v.detach().cpu().contiguous() for k, v in state.items()}
    save_file(tensors, str(folder / WEIGHTS))
    config = model.config
    meta = {
        "format": FORMAT,
        "config": adapters[0].config.model_dump(mode="json"),
        "architecture": type(model).__name__,
        "hidden_size": adapters[0].up.out_features,
        "adapters": len(adapters),
        "labels": [config.id2label[i] for i in range(config.num_labels)],
        "head": head_modules(model),
        "backbone_sha256": bottleneck.backbone_sha256(model),
    }
    (folder / CONFIG_FILE).write_text(json.dumps(meta, indent=2), encoding="utf-8")
    return folder


def read_meta(folder: Path) -> dict:
    """`adapter_config.json` of an adapter folder, checked for the fields graftwork needs."""
    path = Path(folder) / CONFIG_FILE
    if not path.is_file() or not (Path(folder) / WEIGHTS).is_file():
        raise BundleError(
            f"{folder} is not an adapter folder (it needs {CONFIG_FILE} and {WEIGHTS}); pass "
            f"BUNDLE/{ADAPTERS_DIR}/NAME of a bundle trained with method adapter"
        )
    try:
        meta = json.loads(path.read_text(encoding="utf-8"))
    except json.JSONDecodeError as exc:
        raise BundleError(f"{path} is not valid JSON ({exc}); the adapter is damaged") from None
    if meta.get("format") != FORMAT:
        raise BundleError(f"{path}: format {meta.get('format')!r} is not {FORMAT!r}")
    return meta


def load_adapter(model, folder: Path):
    """Insert the adapter saved in `folder` into `model` and load its adapter and head weights.

    The model's head must already have as many labels as the adapter's."""
    from safetensors.torch import load_file

    from graftwork.methods import bottleneck  # torch

    meta = read_meta(folder)
    if meta["architecture"] != type(model).__name__:
        raise BundleError(
            f"adapter {folder} was trained on a {meta['architecture']}, not a "
            f"{type(model).__name__}"
        )
    try:
        config = AdapterConfig(**meta["config"])
    except ValueError as exc:
        raise BundleError(f"adapter {folder}: invalid config in {CONFIG_FILE}: {exc}") from None
    bottleneck.insert(model, config)
    tensors = load_file(str(Path(folder) / WEIGHTS))
    expected = set(bottleneck.adapter_state(model))
    missing, unexpected = sorted(expected - set(tensors)), sorted(set(tensors) - expected)
    if missing or unexpected:
        raise BundleError(
            f"adapter {folder} does not fit the model: missing {missing[:3]}, unexpected "
            f"{unexpected[:3]}; the adapter was written for another layout"
        )
    try:
        model.load_state_dict(tensors, strict=False)
    except RuntimeError as exc:
        raise BundleError(f"adapter {folder} does not fit the model: {exc}") from None
    return model


# ---------------------------------------------------------------- adapters in a bundle


def adapter_names(manifest: Manifest | dict) -> list[str]:
    """The adapters a bundle holds, from the hashed files its manifest lists."""
    names = set()
    for rel in manifest.get("files", {}):
        parts = rel.split("/")
        if len(parts) == 3 and parts[0] == ADAPTERS_DIR and parts[2] == CONFIG_FILE:
            names.add(parts[1])
    return sorted(names)


def trained_adapter(manifest: Manifest) -> str | None:
    """The adapter a bundle was trained with (its root holds that adapter's head)."""
    if manifest.method != "adapter":
        return None
    return (manifest.recipe.get("method") or {}).get("name", "default")


def select(bundle: Path, manifest: Manifest, name: str | None) -> tuple[Manifest, str | None]:
    """(manifest as seen with adapter `name` active, the adapter's name or None).

    `None` picks the adapter the bundle was trained with. For another adapter the view has its
    labels, and neither the metrics nor the ONNX artifacts (both belong to the trained one)."""
    available = adapter_names(manifest)
    trained = trained_adapter(manifest)
    if trained is not None and trained not in available:
        raise BundleError(
            f"bundle {bundle} was trained with adapter '{trained}' but holds no "
            f"{ADAPTERS_DIR}/{trained}/ (its root weights are the backbone without the "
            "adapter); re-create the bundle with graft train"
        )
    if name is None or name == trained:
        return manifest, trained
    if not available:
        no_choice(bundle, manifest, name)
    if name not in available:
        raise BundleError(
            f"bundle {bundle} has no adapter '{name}'; available: {', '.join(available)}"
        )
    view = {k: v for k, v in manifest.dump().items() if k not in ("metrics", "artifacts")}
    view["labels"] = read_meta(Path(bundle) / ADAPTERS_DIR / name)["labels"]
    return Manifest.model_validate(view), name


def load(model_class, bundle: Path, adapter: str | None, **kwargs):
    """The bundle's PyTorch model, with `adapter` (from `select`) inserted if given;
    `kwargs` go to `from_pretrained` (for example attn_implementation)."""
    if adapter is None:
        return load_plain(model_class, bundle, None, **kwargs)
    folder = Path(bundle) / ADAPTERS_DIR / adapter
    labels = read_meta(folder)["labels"]
    root = json.loads((Path(bundle) / "config.json").read_text(encoding="utf-8"))
    with quiet():
        model = model_class.from_pretrained(
            str(bundle),
            use_safetensors=True,
            num_labels=len(labels),
            id2label=dict(enumerate(labels)),
            label2id={label: i for i, label in enumerate(labels)},
            # another adapter's head may have another label count; its weights replace the root's
            ignore_mismatched_sizes=len(labels) != len(root.get("id2label", {})),
            **kwargs,
        )
    return load_adapter(model, folder)


def add_adapter(bundle: str | Path, adapter_dir: str | Path, name: str) -> list[str]:
    """Copy a trained adapter folder (OTHER_BUNDLE/adapters/NAME) into `bundle` as `name`.

    The adapter must have been trained on the same frozen backbone and architecture as the
    bundle's own adapter. Returns the names of all adapters the bundle then holds."""
    bundle, adapter_dir = Path(bundle), Path(adapter_dir)
    manifest = read_manifest(bundle, verify=True)
    _, trained = select(bundle, manifest, None)
    if trained is None:
        raise BundleError(
            f"bundle {bundle} was trained with method {manifest.method}, whose backbone "
            "is not the frozen one adapters are trained on; add adapters to a bundle trained "
            "with method adapter"
        )
    if not re.match(NAME_PATTERN, name):
        raise BundleError(
            f"adapter name {name!r} is not allowed; use letters, digits, '_', '-' and '.' "
            "(up to 64, not starting with '_', '-' or '.')"
        )
    if name in adapter_names(manifest):
        raise BundleError(f"bundle {bundle} already holds an adapter '{name}'; choose another name")
    meta = read_meta(adapter_dir)
    own = read_meta(bundle / ADAPTERS_DIR / trained)
    if meta["architecture"] != own["architecture"]:
        raise BundleError(
            f"adapter {adapter_dir} was trained on a {meta['architecture']}; bundle {bundle} "
            f"is a {own['architecture']} (same task and backbone needed)"
        )
    if meta["backbone_sha256"] != own["backbone_sha256"]:
        raise BundleError(
            f"adapter {adapter_dir} was trained on other backbone weights than bundle {bundle} "
            "(backbone_sha256 differs); an adapter only works on the backbone it was trained on"
        )
    target = bundle / ADAPTERS_DIR / name
    with atomic.building(target) as tmp:  # replaces a leftover the manifest never listed
        for file in (CONFIG_FILE, WEIGHTS):
            shutil.copyfile(adapter_dir / file, tmp / file)
    files = dict(manifest.files)
    files.update({f"{ADAPTERS_DIR}/{name}/{f}": sha256(target / f) for f in (CONFIG_FILE, WEIGHTS)})
    manifest.files = dict(sorted(files.items()))
    save_manifest(bundle, manifest)
    return adapter_names(manifest)
