"""`graft tune`: hyper-parameter search over a recipe (`graftwork.runs.tune`, Optuna)."""

from __future__ import annotations

from pathlib import Path

import typer

from graftwork.cli import render
from graftwork.cli.inputs import OVERRIDES
from graftwork.runs import tune as tuning
from graftwork.runs.finetune import setup_logging


def tune(
    recipe: Path = typer.Argument(..., help="Recipe YAML file to tune."),
    overrides: list[str] = OVERRIDES,
    space: Path = typer.Option(
        ...,
        "--space",
        help="YAML file of dotted recipe keys to ranges, e.g. "
        "train.lr: {low: 5.0e-5, high: 3.0e-4, log: true}, train.batch_size: {choices: [16, 32]}.",
    ),
    trials: int = typer.Option(20, "--trials", min=1, help="Trials to finish, in all workers."),
    storage: str = typer.Option(
        None,
        "--storage",
        help="Optuna storage URL (e.g. sqlite:///tune.db): resumable, shared by workers.",
    ),
    study: str = typer.Option(None, "--study", help="Study name (default: NAME-tune)."),
    pruner: str = typer.Option(
        "median", "--pruner", help="median, hyperband or none (acts on train.eval_every)."
    ),
):
    """Search hyper-parameters with Optuna (TPE, pruning); each trial is a normal run.

    Example: graft tune recipes/quickstart.yaml --space space.yaml --trials 20
    --storage sqlite:///tune.db train.eval_every=50
    """
    setup_logging(None)
    summary = tuning.tune(recipe, space, trials, overrides or [], storage, study, pruner)
    render.tuning(summary, Path(summary["folder"]))
