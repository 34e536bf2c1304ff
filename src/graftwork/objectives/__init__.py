"""Training objectives beyond the task loss: a registry of `type → module`.

A method (`graftwork.methods`) decides which parameters train; an objective decides what
training minimises besides the task loss. `dann` adds a domain classifier behind a
gradient-reversal layer, fed unlabelled target-domain text; `ewc` pulls the encoder towards a
previous task's weights, weighted by that task's Fisher information. A recipe holds at most one,
in its `objective:` section (`objective=null` on the command line trains without it).

Each objective module holds a pydantic config (with a `type` literal) and
`prepare(recipe, model, splits) -> Hooks`: the `loss_fn` and `on_step` the training loop
takes (`train.loop.fit`), what the bundle manifest records under `objective`, how to take the
objective's own modules out of the model before the bundle is written (the bundle stays a
plain transformers folder), and metrics to add once the bundle exists. `pipeline.train` calls
`prepare` after the method is applied. Adding an objective is one module and one line in
`graftwork.registry.OBJECTIVES`.

Leaves out: combining objectives in one run (DANN and EWC together), and objectives for the
compression stages (distillation has its own loss in `compress/distill.py`).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from types import SimpleNamespace
from typing import Any

from graftwork import registry


@dataclass
class Hooks:
    """What an objective hands the training pipeline (the defaults change nothing)."""

    loss_fn: Callable | None = None  # (model, batch) -> loss summed over the labelled items
    on_step: Callable[[int, int], None] | None = None  # (optimizer step, total steps)
    manifest: dict | None = None  # recorded as `objective` when the bundle is written
    strip: Callable[[Any], None] | None = None  # remove the objective's modules from the model
    after: Callable[[Path], dict] | None = None  # bundle folder -> metrics to add
    lr_scales: dict[str, float] | None = None  # parameter name -> multiple of train.lr

    def method(self, method):
        """`method` whose `finish` first strips the objective's modules from the model."""
        if self.strip is None:
            return method
        strip = self.strip

        def finish(model, out_dir: Path):
            strip(model)
            return method.finish(model, out_dir)

        return SimpleNamespace(apply=method.apply, finish=finish)

    def steps(self, other: Callable[[int, int], None] | None):
        """One `on_step` that runs `other` (the method's schedule, if any), then the objective's."""
        mine = self.on_step
        if mine is None or other is None:
            return mine or other

        def both(step: int, steps: int) -> None:
            other(step, steps)
            mine(step, steps)

        return both

    def scales(self, other: dict[str, float] | None) -> dict[str, float] | None:
        """The method's learning-rate multipliers (`other`) with the objective's added."""
        if not self.lr_scales:
            return other
        return {**(other or {}), **self.lr_scales}

    def manifest_extra(self) -> dict | None:
        return None if self.manifest is None else {"objective": self.manifest}


def prepare(recipe, model, splits) -> Hooks:
    """The recipe's objective, ready for the loop (no-op hooks when the recipe has none)."""
    if recipe.objective is None:
        return Hooks()
    return registry.objective(recipe.objective.type).prepare(recipe, model, splits)
