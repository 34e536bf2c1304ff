"""A run, stage by stage: read → encode → build → train → evaluate → bundle → report.

`train()` is what `graft train` does (up to the bundle and metrics.json): a recipe with a
`multitask:` section goes to `runs.multitask`, any other is one task on one model, built here
(backbone, method, objective) and trained with `runs.stages`. `run()` adds the recipe's
`compress:` chain (`runs.compress`) and the report. The CLI, the Python API and the tests all
come through here; nothing below imports this module.

Leaves out: the stages themselves (`runs.stages`) and what every run does around them (its
folder, log, lock and tracking record: `runs.lifecycle`).
"""

from __future__ import annotations

import logging
from dataclasses import replace
from pathlib import Path

import torch

from graftwork import registry
from graftwork.backbones import load as backbones
from graftwork.config.recipe import Recipe
from graftwork.errors import GraftError
from graftwork.objectives import prepare as prepare_objective
from graftwork.runs import multitask
from graftwork.runs.compress import run_compress
from graftwork.runs.lifecycle import setup_logging, start, whole_run, write_json
from graftwork.runs.report import write_report
from graftwork.runs.stages import RunResult, read_splits, train_and_save

log = logging.getLogger("graftwork")

__all__ = ["RunResult", "method_schedules", "run", "setup_logging", "train"]


@whole_run
def train(
    recipe: Recipe | str | Path | dict,
    overrides: list[str] | None = None,
    resume: bool = False,
    overwrite: bool = False,
    on_eval=None,
) -> RunResult:
    """Train the recipe's model, evaluate it, and write the bundle and metrics.json.

    `on_eval(step, metrics)`: called after each evaluation during training (recipes with
    `train.eval_every`; see `train.evaluation`), e.g. to report to a tracker or a tuner."""
    recipe, accelerator = start(recipe, overrides, resume, overwrite)
    if recipe.multitask is not None:
        return multitask.train(recipe, accelerator, resume=resume, on_eval=on_eval)
    folder = backbones.resolve(recipe.backbone)
    tokenizer = backbones.load_tokenizer(folder, recipe.backbone)
    splits = read_splits(recipe, tokenizer)
    log.info("backbone %s; method %s", recipe.backbone.name, recipe.method.type)
    torch.manual_seed(recipe.train.seed)
    model = backbones.load_model(
        folder, recipe.backbone, splits.task.model_class(), splits.labels, tokenizer
    )
    if recipe.train.gradient_checkpointing:
        model.gradient_checkpointing_enable(gradient_checkpointing_kwargs={"use_reentrant": False})
    method = registry.method(recipe.method.type)
    model = method.apply(model, recipe.method)
    lr_scales, on_step = method_schedules(method, model, recipe, accelerator)
    objective = prepare_objective(recipe, model, splits)  # DANN, EWC; a no-op without one
    hooks = replace(
        objective,
        on_step=objective.steps(on_step),
        lr_scales=objective.scales(lr_scales),
    )
    result = train_and_save(
        recipe, accelerator, splits, model, objective.finisher(method), hooks, resume, on_eval
    )
    if objective.after is not None and result.metrics:  # main process: e.g. EWC's task A
        result.metrics.update(objective.after(result.bundle))
        write_json(result.run_dir / "metrics.json", result.metrics)
    return result


def method_schedules(method, model, recipe: Recipe, accelerator):
    """The method's learning-rate multipliers and step schedule (None: it has none)."""
    lr_scales = method.lr_scales(model, recipe.method)
    on_step = method.schedule(model, recipe.method)
    if on_step is not None and accelerator.num_processes > 1:
        raise GraftError(
            f"recipe {recipe.name}: gradual unfreezing changes which parameters train during the "
            "run, which data-parallel training cannot follow; run it with one process"
        )
    return lr_scales, on_step


@whole_run
def run(
    recipe: Recipe | str | Path | dict,
    overrides: list[str] | None = None,
    resume: bool = False,
    overwrite: bool = False,
    on_eval=None,
) -> RunResult:
    """The whole recipe: train, evaluate, bundle, then the report (`on_eval`: see `train`)."""
    result = train(recipe, overrides, resume=resume, overwrite=overwrite, on_eval=on_eval)
    if not result.metrics:  # not the main process
        return result
    compress = result.recipe.compress
    if any(getattr(compress, stage) is not None for stage in ("distill", "prune", "export")):
        result.metrics["stages"] = run_compress(result.recipe, result.bundle)
        setup_logging(result.run_dir)  # distillation set up its own run's log
        write_json(result.run_dir / "metrics.json", result.metrics)
    write_report(result)
    return result
