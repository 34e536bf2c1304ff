"""`graft compare` and `graft advise`: choosing a method, by measuring or by the rule table.

`compare` runs each method in its own process (`graftwork.runs.compare`) and prints its
table; `advise` prints `graftwork.runs.advise`'s recommendation with its reasons.
"""

from __future__ import annotations

from pathlib import Path

import typer

from graftwork.cli import render
from graftwork.cli.inputs import OVERRIDES
from graftwork.runs import compare as comparing
from graftwork.runs.advise import advise as recommend
from graftwork.runs.lifecycle import setup_logging


def compare(
    recipe: Path = typer.Argument(..., help="Recipe YAML file (its task and data are kept)."),
    overrides: list[str] = OVERRIDES,
    methods: str = typer.Option(
        "full,lora,adapter,frozen",
        help="Comma-separated methods to run, each in its own process; fewshot adds graft "
        "fewshot (SetFit) on the same examples, and its zero-shot row (classification only).",
    ),
    budget_minutes: float = typer.Option(
        None, help="Training time per method (train.max_minutes); default: the recipe's epochs."
    ),
    lr: list[str] = typer.Option(
        [],
        help="METHOD=VALUE learning rate (full 1e-4, lora 1e-3, adapter 3e-3, frozen 5e-3, "
        "fewshot 2e-5).",
    ),
):
    """Run one recipe under several methods; table of metric, parameters, speed, memory, size.

    fewshot.KEY=VALUE overrides go to the fewshot entry alone (e.g. fewshot.iterations=5)."""
    setup_logging(None)
    rows, folder = comparing.compare(
        recipe,
        [m.strip() for m in methods.split(",") if m.strip()],
        overrides or [],
        budget_minutes,
        comparing.parse_lrs(lr),
    )
    columns = [label for _, label in comparing.COLUMNS]
    cells = [comparing.cells(row) for row in rows]
    render.comparison(f"compare: {recipe}", columns, cells, folder)
    render.lines(comparing.notes(rows))


def advise(
    examples: int = typer.Option(..., help="Labelled training examples you have."),
    labels: int = typer.Option(..., help="Number of labels (classes or entity tags)."),
    latency_ms: float = typer.Option(..., help="Per-request p99 latency budget on CPU, in ms."),
    languages: str = typer.Option("en", help="Comma-separated languages the model must handle."),
    tokens: int = typer.Option(25, help="Typical input length in tokens (SST-2 averages 25)."),
    tasks: int = typer.Option(1, help="Tasks that will share one backbone."),
    task: str = typer.Option(
        "classification", help="Task type: classification, ner, qa, seq2seq or causal_lm."
    ),
):
    """Recommend backbone + method + compression from graftwork's measured rule table."""
    render.advice(
        recommend(examples, labels, latency_ms, languages.split(","), tokens, tasks, task)
    )
