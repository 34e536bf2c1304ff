"""Multi-task bundles: the root folder is the first task, `tasks/NAME/` each other one.

`task_folder` finds one task's folder (for `graftwork.load(bundle, task=…)`); `expand` turns a
serve spec naming a multi-task bundle into one spec per task. Written by `runs.multitask`.
"""

from __future__ import annotations

from pathlib import Path

from graftwork.bundle.manifest import MANIFEST, Manifest, read_manifest
from graftwork.errors import BundleError


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
