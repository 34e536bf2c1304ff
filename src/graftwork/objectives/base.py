"""The objective protocol, and `Hooks`: what an objective hands the fine-tuning run.

An objective is a module (`objectives/dann.py`, `objectives/ewc.py`) registered by name in
`graftwork.registry.OBJECTIVES`: a pydantic `Config` (with a `type` literal; the recipe's
`objective:` section) and `prepare(recipe, model, splits) -> Hooks`, called by the run after
the method is applied. `tests/test_protocols.py` checks every registered objective.
Module-level code imports no torch, so the recipe schema can read `Config` without it.

Leaves out: combining objectives in one run, and hooks for the compression stages.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol, runtime_checkable

from graftwork.methods.base import Finisher, Method


@dataclass
class Hooks:
    """What an objective hands the training run (the defaults change nothing)."""

    loss_fn: Callable | None = None  # (model, batch) -> loss summed over the labelled items
    on_step: Callable[[int, int], None] | None = None  # (optimizer step, total steps)
    manifest: dict | None = None  # recorded as `objective` when the bundle is written
    strip: Callable[[Any], None] | None = None  # remove the objective's modules from the model
    after: Callable[[Path], dict] | None = None  # bundle folder -> metrics to add
    lr_scales: dict[str, float] | None = None  # parameter name -> multiple of train.lr

    def finisher(self, method: Method) -> Finisher:
        """`method`'s `finish`, after the objective's modules are stripped from the model."""
        if self.strip is None:
            return Finisher(method.finish)
        strip = self.strip

        def finish(model, out_dir: Path):
            strip(model)
            return method.finish(model, out_dir)

        return Finisher(finish)

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


@runtime_checkable
class Objective(Protocol):
    Config: type  # the pydantic model of its recipe section, with `type: Literal[name]`

    def prepare(self, recipe, model, splits) -> Hooks:
        """Ready the objective for this run (read its data, attach its modules to `model`);
        the hooks the run passes to the loop and the bundle writer."""
