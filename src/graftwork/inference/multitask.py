"""A task of a multi-task bundle in memory: the shared encoder once, each task's head on it.

`task_model(model_class, folder, manifest)` builds the task's transformers model from its
config (on the meta device: no weights are made only to be thrown away), puts the bundle's
encoder in place of its own (`base_model_prefix`) and reads its head: the first task's from the
root's weights, another task's from its `head.safetensors` (the layout is in
`graftwork.bundle.tasks`). The encoder is read once per bundle and process: a weak table keyed
by the root's weights file (its path, size, inode and modification time) hands the same module
to every task loaded from that bundle while one of them is alive, so `graftwork.load(bundle,
task=…)` for each task, and `graft serve BUNDLE`, hold one encoder, not one per task.

Left out: training through a loaded task (the encoder is shared: changing it changes every task
of the bundle loaded in this process), and pruned or adapter-trained multi-task models
(multi-task training takes method full; pruning writes a single-task bundle).
"""

from __future__ import annotations

import json
import weakref
from itertools import chain
from pathlib import Path

from graftwork.backbones.quiet import quiet
from graftwork.bundle.manifest import HEAD, WEIGHTS, Manifest
from graftwork.errors import BundleError

_ENCODERS: weakref.WeakValueDictionary = weakref.WeakValueDictionary()


def weight_files(root: Path) -> list[Path]:
    """The root's safetensors files: one, or the shards its index names."""
    single, index = (root / name for name in WEIGHTS)
    if single.is_file():
        return [single]
    if index.is_file():
        shards = json.loads(index.read_text(encoding="utf-8"))["weight_map"].values()
        return [root / name for name in sorted(set(shards))]
    raise BundleError(
        f"bundle {root}: it holds no {' or '.join(WEIGHTS)}, where the encoder its tasks share "
        "is; the bundle is incomplete: re-create it (graft train)"
    )


def shared_encoder(root: Path):
    """The bundle's encoder (`AutoModel` of the root), read once while a task holds it."""
    from transformers import AutoModel  # torch

    first = weight_files(root)[0]
    stat = first.stat()
    key = (str(first.resolve()), stat.st_size, stat.st_ino, stat.st_mtime_ns)
    encoder = _ENCODERS.get(key)
    if encoder is None:
        with quiet():
            encoder = AutoModel.from_pretrained(str(root), use_safetensors=True).eval()
        _ENCODERS[key] = encoder
    return encoder


def head_weights(folder: Path, root: Path, prefix: str) -> dict:
    """A task's head: its head.safetensors, or for the root task the root's other weights."""
    from safetensors import safe_open  # torch
    from safetensors.torch import load_file

    if folder.resolve() != root.resolve():
        return load_file(str(folder / HEAD))
    head = {}
    for path in weight_files(root):
        with safe_open(str(path), framework="pt") as weights:
            names = list(weights.keys())  # a safetensors file is not a dict
            head.update({k: weights.get_tensor(k) for k in names if not k.startswith(prefix)})
    return head


def task_model(model_class, folder: Path, manifest: Manifest):
    """The task model of the multi-task task folder `folder` (its manifest names `encoder`),
    on the bundle's shared encoder, in eval mode."""
    import torch
    from transformers import AutoConfig

    folder = Path(folder)
    root = folder / str(manifest.encoder)
    encoder = shared_encoder(root)
    with quiet():
        config = AutoConfig.from_pretrained(str(folder))
        with torch.device("meta"):
            model = model_class.from_config(config)
    prefix = model.base_model_prefix
    setattr(model, prefix, encoder)
    head = head_weights(folder, root, f"{prefix}.")
    missing, unexpected = model.load_state_dict(head, strict=False, assign=True)
    missing = [k for k in missing if not k.startswith(f"{prefix}.")]
    left = [n for n, t in chain(model.named_parameters(), model.named_buffers()) if t.is_meta]
    if missing or unexpected or left:
        raise BundleError(
            f"bundle {folder}: its head weights do not fit its config.json (missing: "
            f"{', '.join(missing + left) or 'none'}; unexpected: {', '.join(unexpected) or 'none'})"
            "; the bundle is damaged: re-create it (graft train)"
        )
    return model.eval()
