"""The objective protocol: what an objective hands the fine-tuning run is `Hooks` (`train.hooks`).

An objective is a module (`objectives/dann.py`, `objectives/ewc.py`) registered by name in
`graftwork.registry.OBJECTIVES`: a pydantic `Config` (with a `type` literal; the recipe's
`objective:` section) and `prepare(recipe, model, splits) -> Hooks`, called by the run after
the method is applied; the bundle's manifest records the objective under `objective` (the
hooks' `manifest`). `tests/test_protocols.py` checks every registered objective.
Module-level code imports no torch, so the recipe schema can read `Config` without it.

Leaves out: combining objectives in one run, and hooks for the compression stages.
"""

from __future__ import annotations

from typing import Protocol, runtime_checkable

from graftwork.train.hooks import Hooks

__all__ = ["Hooks", "Objective"]


@runtime_checkable
class Objective(Protocol):
    Config: type  # the pydantic model of its recipe section, with `type: Literal[name]`

    def prepare(self, recipe, model, splits) -> Hooks:
        """Ready the objective for this run (read its data, attach its modules to `model`);
        the hooks the run passes to the loop and the bundle writer."""
