"""Training objectives beyond the task loss, one module per objective.

A method (`graftwork.methods`) decides which parameters train; an objective decides what
training minimises besides the task loss. `dann` adds a domain classifier behind a
gradient-reversal layer, fed unlabelled target-domain text; `ewc` pulls the encoder towards a
previous task's weights, weighted by that task's Fisher information. A recipe holds at most one,
in its `objective:` section (`objective=null` on the command line trains without it).

Each objective module implements `objectives.base.Objective`: a pydantic config (with a
`type` literal) and `prepare(recipe, model, splits) -> Hooks`: the `loss_fn` and `on_step` the
training loop takes (`train.loop.fit`), what the bundle manifest records under `objective`, how
to take the objective's own modules out of the model before the bundle is written (the bundle
stays a plain transformers folder), and metrics to add once the bundle exists. The fine-tuning
run calls `prepare` after the method is applied. Adding an objective is one module and one line
in `graftwork.registry.OBJECTIVES`.

Leaves out: combining objectives in one run (DANN and EWC together), and objectives for the
compression stages (distillation has its own loss in `compress/distill.py`).
"""

from __future__ import annotations

from graftwork import registry
from graftwork.objectives.base import Hooks


def prepare(recipe, model, splits) -> Hooks:
    """The recipe's objective, ready for the loop (no-op hooks when the recipe has none)."""
    if recipe.objective is None:
        return Hooks()
    return registry.objective(recipe.objective.type).prepare(recipe, model, splits)
