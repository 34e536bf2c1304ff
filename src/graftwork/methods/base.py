"""The method protocol: what an adaptation method must tell the rest of graftwork.

A method is a module (`methods/lora.py`, …) registered by name in
`graftwork.registry.METHODS`; the fine-tuning run, compare, distillation, pruning, export, EWC
and the predictor ask it through these members instead of testing its name. A module satisfies
the protocol by defining them at top level; `tests/test_protocols.py` checks every registered
method, and `tests/test_matrix.py` runs each one through the same generic checks on every task.

Module-level code imports no torch (it is imported inside the functions), so the recipe schema
can read `Config` without it.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any, Protocol, runtime_checkable

# what other stages may do with a bundle trained by a method (`Method.SUPPORTS`)
STAGES = ("distill", "prune", "export", "ewc", "multitask", "data_parallel")


@runtime_checkable
class Method(Protocol):
    Config: type  # the pydantic model of its recipe section, with `type: Literal[name]`
    DEFAULT_LR: float  # the learning rate `graft compare` gives it unless told otherwise
    SUPPORTS: frozenset[str]  # which of STAGES accept a bundle trained with it

    def apply(self, model, config) -> Any:
        """Make `model` trainable this method's way (freeze, insert, wrap); returns the model."""

    def lr_scales(self, model, config) -> dict[str, float] | None:
        """Parameter name → multiple of train.lr (None: every parameter at train.lr)."""

    def schedule(self, model, config) -> Callable[[int, int], None] | None:
        """`on_step(step, steps)` that changes what trains during the run (None: nothing)."""

    def finish(self, model, out_dir: Path) -> Any:
        """Write what the method keeps outside the model into `out_dir`; return the plain
        transformers model to save as the bundle's weights."""

    def load(self, model_class, bundle: Path, manifest: dict, choice: str | None, **kwargs):
        """The bundle's PyTorch model with the method's own parts restored."""

    def task_files(self, bundle: Path) -> list[Path]:
        """The files only this task needs beside a shared backbone (compare's task size)."""


def refuse(method_name: str, stage: str, what: str) -> None:
    """Raise a located error when `stage` does not accept bundles trained by `method_name`."""
    from graftwork import registry
    from graftwork.errors import GraftError

    if stage not in registry.method(method_name).SUPPORTS:
        able = [n for n in registry.METHODS if stage in registry.method(n).SUPPORTS]
        raise GraftError(
            f"{what} was trained with method {method_name}, which {stage} does not accept; "
            f"use a bundle trained with {' or '.join(able)}"
        )
