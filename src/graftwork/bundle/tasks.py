"""Multi-task bundles: one encoder on disk, the first task at the root, `tasks/NAME/` the others.

The layout (written by `runs.multitask`):
```
BUNDLE/
  graftwork.json       the first task's manifest, `multitask.tasks` (every task and its folder),
                       `encoder: "."`, and the sha256 of every file below, task folders included
  config.json          the first task's model: a standard Hugging Face folder, which
  model.safetensors    `AutoModelFor….from_pretrained(BUNDLE)` loads without graftwork; its
  tokenizer files      weights hold the encoder all tasks share, and the first task's head
  tasks/NAME/
    graftwork.json     the task's manifest, `multitask_of: "../.."`, `encoder: "../.."`
    config.json        the task's model config (architecture, labels)
    head.safetensors   the task's weights outside the encoder (its head) alone
    tokenizer files    (the bundle's tokenizer, so the folder reads on its own)
```
Without graftwork, a task folder loads as its config's model built on the root's weights (which
gives its head fresh weights) with its head then read in:
`m = AutoModelForTokenClassification.from_pretrained(BUNDLE, config=AutoConfig.from_pretrained(
BUNDLE/"tasks/ner"), ignore_mismatched_sizes=True)`, then
`m.load_state_dict(safetensors.torch.load_file(BUNDLE/"tasks/ner/head.safetensors"),
strict=False)`. `inference.multitask` loads it so, with the encoder once in memory for all
tasks. Bundles written before the encoder was shared (each task folder a whole model, no
`encoder` key) load as they did.

`task_folder` finds one task's folder (for `graftwork.load(bundle, task=…)`); `expand` turns a
serve spec naming a multi-task bundle into one spec per task; `save_head` writes a task
folder's model part.

Left out: sharing between bundles (two bundles trained apart hold two encoders), and tokenizers
shared on disk (a tokenizer is small beside an encoder).
"""

from __future__ import annotations

import copy
from pathlib import Path

from graftwork.bundle.manifest import HEAD, MANIFEST, Manifest, read_manifest
from graftwork.errors import BundleError


def head_state(model) -> dict:
    """A task model's weights outside its encoder (`base_model_prefix`): its head."""
    prefix = f"{model.base_model_prefix}."
    return {k: v for k, v in model.state_dict().items() if not k.startswith(prefix)}


def save_head(model, folder: Path) -> None:
    """A multi-task task folder's model part: the model's config and its head's weights alone
    (`head.safetensors`); the encoder's weights are the root's."""
    from safetensors.torch import save_file  # torch

    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    config = copy.deepcopy(model.config)
    config.architectures = [type(model).__name__]  # as save_pretrained records it
    config.save_pretrained(str(folder))
    head = {k: v.detach().contiguous().cpu() for k, v in head_state(model).items()}
    save_file(head, str(folder / HEAD), metadata={"format": "pt"})


def parse_spec(spec: str) -> tuple[str | None, Path]:
    """`PATH` or `NAME=PATH` → (NAME or None, PATH)."""
    if "=" in spec and not Path(spec).exists():
        name, path = spec.split("=", 1)
        return name, Path(path)
    return None, Path(spec)


def task_folder(bundle: Path, manifest: Manifest, task: str | None) -> Path:
    """The folder of `task` inside a multi-task bundle (the bundle itself for the first)."""
    tasks = manifest.multitask.tasks if manifest.multitask else None
    if task is None:
        return bundle
    if not tasks:
        raise BundleError(f"bundle {bundle} holds one task; drop the task option")
    if task not in tasks:
        raise BundleError(f"bundle {bundle} has no task '{task}'; its tasks: {', '.join(tasks)}")
    return bundle / tasks[task].path


def expand(specs: list[str]) -> list[str]:
    """Serve specs with every task of a multi-task bundle as its own NAME=PATH."""
    out = []
    for spec in specs:
        name, path = parse_spec(spec)
        manifest = read_manifest(path, verify=False) if (path / MANIFEST).is_file() else None
        tasks = manifest.multitask.tasks if manifest and manifest.multitask else None
        if not tasks:
            out.append(spec)
            continue
        base = name or manifest.name or path.resolve().name
        out += [f"{base}-{task}={path / entry.path}" for task, entry in tasks.items()]
    return out
