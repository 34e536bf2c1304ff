"""`graft fewshot`: few-shot classification (SetFit) and zero-shot, over `runs/fewshot.py`.

The bundle it writes is a classification bundle of method setfit: `graft predict`, `graft
eval`, `graft serve`, `graft export` and `graft info` take it. `--resume` continues a killed
run from its last checkpoint. Left out: `--nproc` (few-shot training runs in one process).
"""

from __future__ import annotations

from pathlib import Path

import typer

from graftwork.cli import render
from graftwork.cli.inputs import OVERRIDES, OVERWRITE, RESUME
from graftwork.runs.fewshot import fewshot as run_fewshot


def fewshot(
    recipe: Path = typer.Argument(..., help="Few-shot recipe YAML (task, data, fewshot, train)."),
    overrides: list[str] = OVERRIDES,
    resume: bool = RESUME,
    overwrite: bool = OVERWRITE,
):
    """Few-shot classification (SetFit): contrastive tuning of the sentence encoder on pairs,
    then a logistic head; also zero-shot from label descriptions.

    Writes runs/NAME/bundle (a classification bundle of method setfit, for graft predict,
    eval, serve and export) and metrics.json. Example:
    graft fewshot recipes/fewshot-sst2.yaml fewshot.per_class=16 train.seed=2"""
    metrics = run_fewshot(recipe, overrides or [], resume=resume, overwrite=overwrite)
    shown = {"few-shot": metrics, "zero-shot": metrics.get("zero_shot", {})}
    rows = [
        (split, model, f"{found[split]['accuracy']:.4f}")
        for model, found in shown.items()
        for split in ("eval", "test")
        if split in found
    ]
    render.table("few-shot accuracy", ["split", "model", "accuracy"], rows, left=2)
