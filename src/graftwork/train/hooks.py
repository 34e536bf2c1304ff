"""What a run hands the training loop besides the model and the examples, in two objects.

`Training` is where and how the loop trains: the recipe's `train` section, the run folder its
checkpoints go to, what a checkpoint must agree with to be resumed from, and whether to resume.
`Hooks` are the functions a run, a method's schedule or an objective (`objectives.base`) hangs
on the loop and on the bundle writer (`runs.stages.train_and_save`); the defaults change
nothing. `train.loop.fit` takes both.

Leaves out: the loop itself (`train.loop`) and evaluation during training (`train.evaluation`,
whose `Evaluator` a run puts into `Hooks.evaluator`).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from graftwork.config.train import TrainConfig
from graftwork.methods.base import Finisher, Method


@dataclass(frozen=True)
class Training:
    """Where and how the loop trains."""

    cfg: TrainConfig  # the recipe's train section
    run_dir: Path  # checkpoints go to run_dir/checkpoints
    fingerprint: dict = field(default_factory=dict)  # what a checkpoint must agree with
    resume: bool = False  # continue from the folder's latest checkpoint


@dataclass
class Hooks:
    """What the loop and the bundle writer call (the defaults change nothing).

    `loss_fn(model, batch)` is the loss summed over the batch's labelled items (default: the
    task's `loss`). `on_step(step, steps)` is called before every batch with the optimizer step
    it belongs to (0-based) and the total: schedules that depend on progress (gradual
    unfreezing, the DANN λ) hang there, and because the step is restored on resume, so are
    they. `lr_scales` maps parameter names to multipliers of `train.lr` (layer-wise decay).
    `batch_plan(epoch)` gives the epoch's global batches (lists of example indices; default:
    length-grouped batches of all examples) and must be a pure function of the epoch for resume
    to stay exact. `lr_schedule(optimizer, steps)` builds the scheduler (default: linear
    warm-up, then linear decay). `evaluator` (a `train.evaluation.Evaluator`) evaluates during
    training. `on_log(step, values)` gets the mean loss since the last log, the learning rate
    and examples/s at each logging step (trackers hang there). `evaluate(model) -> metrics`
    replaces the evaluation of every split after training (a multi-task run's). `manifest`
    holds entries added to the bundle's graftwork.json; `strip(model)` removes an objective's
    modules from the model before it is saved; `after(bundle) -> metrics` adds metrics once
    the bundle exists."""

    loss_fn: Callable | None = None
    on_step: Callable[[int, int], None] | None = None
    lr_scales: dict[str, float] | None = None
    batch_plan: Callable[[int], list[list[int]]] | None = None
    lr_schedule: Callable | None = None
    evaluator: Any = None
    on_log: Callable[[int, dict], None] | None = None
    evaluate: Callable[[Any], dict] | None = None
    manifest: dict | None = None
    strip: Callable[[Any], None] | None = None
    after: Callable[[Path], dict] | None = None

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
        """One `on_step` that runs `other` (the method's schedule, if any), then this one."""
        mine = self.on_step
        if mine is None or other is None:
            return mine or other

        def both(step: int, steps: int) -> None:
            other(step, steps)
            mine(step, steps)

        return both

    def scales(self, other: dict[str, float] | None) -> dict[str, float] | None:
        """The method's learning-rate multipliers (`other`) with these added."""
        if not self.lr_scales:
            return other
        return {**(other or {}), **self.lr_scales}
