"""The method protocol: what an adaptation method must tell the rest of graftwork.

A method is a module (`methods/lora.py`, …) registered by name in
`graftwork.registry.METHODS`; the fine-tuning run, compare, distillation, pruning, export, EWC,
multi-task training and the predictor ask it through these members instead of testing its
name. A module satisfies the protocol by defining them at top level; `tests/test_protocols.py`
checks every registered method, and `tests/test_matrix.py` runs each one through the same
generic checks on every task. The defaults a method without parts of its own can take (the
plain bundle, one learning rate, no schedule) are here too.

Module-level code imports no torch (it is imported inside the functions, or lives in a sibling
module imported there), so the recipe schema can read `Config` without it.

`Finisher` is what the run calls when the bundle is written: a method module is one, and an
objective or multi-task training wraps one around what they must do first.

Leaves out: stages that depend on a method's options rather than the method (data-parallel
training refuses a `schedule`, whichever method returns one; `runs/finetune.py` checks that).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol, runtime_checkable

from graftwork import registry
from graftwork.backbones.quiet import quiet
from graftwork.bundle import Manifest
from graftwork.errors import BundleError, GraftError

# what other stages may do with a method (`Method.REFUSES` names those it cannot take)
STAGES = {
    "distill": "distil a student from a bundle trained with it",
    "prune": "prune a bundle trained with it",
    "export": "export a bundle trained with it to ONNX",
    "ewc_previous": "start objective ewc's task B from a bundle trained with it (task A)",
    "ewc": "train with it under objective ewc (whose penalty is on the encoder's own weights)",
    "multitask": "train several tasks on one shared encoder with it",
}

# the refusals of every method that keeps the encoder's own weights frozen
FROZEN_ENCODER = {
    "ewc": "objective ewc penalises changes to the encoder's own weights, which method "
    "{method} keeps frozen; use method: full",
    "multitask": "recipe {where}: multitask training supports method full (got {method}); for "
    "LoRA or adapters, train one bundle per task",
}


@runtime_checkable
class Method(Protocol):
    Config: type  # the pydantic model of its recipe section, with `type: Literal[name]`
    DEFAULT_LR: float  # the learning rate `graft compare` gives it unless told otherwise
    # stage → the error message when that stage cannot take it ({where}: the bundle or recipe,
    # {method}: its name); SUPPORTS is every other stage (`supported(REFUSES)`)
    REFUSES: dict[str, str]
    SUPPORTS: frozenset[str]

    def apply(self, model, config) -> Any:
        """Make `model` trainable this method's way (freeze, insert, wrap); returns the model."""

    def lr_scales(self, model, config) -> dict[str, float] | None:
        """Parameter name → multiple of train.lr (None: every parameter at train.lr)."""

    def schedule(self, model, config) -> Callable[[int, int], None] | None:
        """`on_step(step, steps)` that changes what trains during the run (None: nothing)."""

    def finish(self, model, out_dir: Path) -> Any:
        """Write what the method keeps outside the model into `out_dir`; return the plain
        transformers model to save as the bundle's weights."""

    def select(
        self, bundle: Path, manifest: Manifest, choice: str | None
    ) -> tuple[Manifest, str | None]:
        """(the manifest as seen with `choice` active, the choice resolved): which of the
        parts a bundle holds is used (adapters: None is the one it was trained with)."""

    def load(self, model_class, bundle: Path, choice: str | None, **kwargs) -> Any:
        """The bundle's PyTorch model with the method's own parts (`choice`) restored;
        `kwargs` go to `from_pretrained` (for example attn_implementation)."""

    def task_bytes(self, bundle: Path, trainable: int) -> int:
        """Bytes only this task needs beside a shared backbone (compare's task size)."""


@dataclass(frozen=True)
class Finisher:
    """What `train_and_save` calls to turn the trained model into the bundle's weights: a
    method's own `finish` (a method module serves as well), or one that does more first."""

    finish: Callable[[Any, Path], Any]  # (model, bundle folder) → the model to save


def supported(refuses: dict[str, str]) -> frozenset[str]:
    """The stages a method with these refusals takes."""
    return frozenset(STAGES) - set(refuses)


def refuse(
    method: str | None,
    stage: str,
    where: object,
    error: type = GraftError,
    task: str | None = None,
) -> None:
    """Raise `error` with the method's own message when `stage` cannot take `method`, or the
    task's (`task`: a task that names the stages it cannot take in `REFUSES`, like seq2seq).

    `method` is a recipe's or a bundle manifest's method; None (a backbone folder from
    `graft pretrain`, which holds plain weights) is refused nothing."""
    if stage not in STAGES:
        raise GraftError(f"unknown stage {stage!r}; stages: {', '.join(STAGES)}")
    if task is not None and task in registry.TASKS:
        reason = getattr(registry.task(task), "REFUSES", {}).get(stage)
        if reason is not None:
            raise error(reason.format(where=where, method=method))
    if method is None:
        return
    reason = registry.method(method).REFUSES.get(stage)
    if reason is not None:
        raise error(reason.format(where=where, method=method))


# ---------------------------------------------------------------- defaults


def one_lr(model, config) -> None:
    """`lr_scales` of a method that trains everything it trains at train.lr."""
    return None


def no_schedule(model, config) -> None:
    """`schedule` of a method whose trainable parameters stay the same all run."""
    return None


def plain_finish(model, out_dir: Path):
    """`finish` of a method that keeps nothing outside the model: the model, all trainable
    again (as a loaded bundle is)."""
    model.requires_grad_(True)
    return model


def no_choice(bundle: Path, manifest: Manifest, choice: str | None) -> tuple[Manifest, None]:
    """`select` of a method whose bundles hold one model: no choice to make."""
    if choice is not None:
        raise BundleError(
            f"bundle {bundle} holds no adapters (method {manifest.method}); "
            f"adapter='{choice}' needs a bundle trained with method adapter"
        )
    return manifest, None


def load_plain(model_class, bundle: Path, choice: str | None, **kwargs):
    """`load` of a method whose bundle weights are the whole trained model (quietly)."""
    with quiet():
        return model_class.from_pretrained(str(bundle), use_safetensors=True, **kwargs)


def files_bytes(path: Path) -> int:
    """Size of a file, or of every file under a folder (0 when it is missing)."""
    path = Path(path)
    if not path.exists():
        return 0
    files = [path] if path.is_file() else [p for p in path.rglob("*") if p.is_file()]
    return sum(p.stat().st_size for p in files)
