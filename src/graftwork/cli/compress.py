"""`graft distill`, `graft prune`, `graft export`: smaller and faster bundles from a bundle.

Each verb calls one function of `graftwork.runs` / `compress` / `export` and prints what it
measured; the prune table shows the task's headline metric (`tasks.base.headline`).
Left out: chaining them (a recipe's `compress:` section does that, through `graft run`).
"""

from __future__ import annotations

from pathlib import Path

import typer

from graftwork.backbones.quiet import quiet_libraries
from graftwork.bundle import read_manifest
from graftwork.cli import render
from graftwork.cli.inputs import OVERRIDES, RESUME
from graftwork.config.compress import MAX_DROP
from graftwork.errors import GraftError
from graftwork.export import export_bundle
from graftwork.runs.distill import distill as run_distill
from graftwork.runs.lifecycle import setup_logging
from graftwork.runs.prune import prune_bundle
from graftwork.tasks.base import headline


def distill(
    teacher: Path = typer.Argument(..., help="The teacher bundle."),
    overrides: list[str] = OVERRIDES,
    recipe: Path = typer.Option(
        None,
        "--recipe",
        help="Recipe with data, train and compress.distill (default: the "
        "teacher's recipe, a 3-layer student).",
    ),
    resume: bool = RESUME,
):
    """Distil a teacher bundle into a smaller student (a new bundle)."""
    result = run_distill(teacher, recipe, overrides or [], resume=resume)
    if result.metrics:
        render.results(result)


def prune(
    bundle: Path = typer.Argument(..., help="A bundle folder."),
    heads: float = typer.Option(0.3, "--heads", help="Fraction of attention heads to remove."),
    ffn: float = typer.Option(0.3, "--ffn", help="Fraction of FFN neurons to remove."),
    target: Path = typer.Option(None, "--out", help="New bundle folder (default: BUNDLE-pruned)."),
    data: Path = typer.Option(None, "--data", help="Training file (default: the recipe's)."),
    recovery_epochs: float = typer.Option(1.0, "--recovery-epochs", min=0),
    recovery_lr: float = typer.Option(None, "--recovery-lr"),
    max_examples: int = typer.Option(None, "--max-examples", min=1),
):
    """Remove the least important heads and FFN neurons, fine-tune briefly, write a bundle."""
    setup_logging(None)
    quiet_libraries()
    target = target or bundle.with_name(bundle.name + "-pruned")
    report = prune_bundle(
        bundle, target, heads, ffn, data, recovery_epochs, recovery_lr, max_examples
    )
    task = read_manifest(target, verify=False)["task"]
    render.pruning(f"{bundle} → {target}", report, headline(task))


def export(
    bundle: Path = typer.Argument(..., help="A bundle folder."),
    onnx: bool = typer.Option(True, "--onnx/--no-onnx", help="Export FP32 ONNX (the base of all)."),
    int8: bool = typer.Option(False, "--int8", help="Also write a dynamic INT8 ONNX model."),
    keep_attention_fp32: bool = typer.Option(
        False, "--keep-attention-fp32", help="INT8: leave attention products in FP32."
    ),
    data: Path = typer.Option(None, "--data", help="Labelled file for the parity check."),
    limit: int = typer.Option(None, "--limit", min=1, help="Check on the first N examples."),
    openvino: bool = typer.Option(
        False, "--openvino", help="Also write OpenVINO IRs (FP32; static INT8 with --int8)."
    ),
    max_drop: float = typer.Option(
        MAX_DROP,
        "--max-drop",
        min=0.0,
        help="INT8 accuracy budget: points of the headline metric an INT8 artifact may lose "
        "on the check examples (OpenVINO keeps operations in FP32 to stay within it; auto "
        "serves no artifact over it).",
    ),
):
    """Export to ONNX (+ INT8) and OpenVINO, check parity on real examples, record it in the
    manifest."""
    if not onnx:
        raise GraftError("ONNX is the base of every export; drop --no-onnx")
    quiet_libraries()
    artifacts = export_bundle(
        bundle, int8, keep_attention_fp32, data, limit, openvino=openvino, max_drop=max_drop
    )
    render.exports(f"{bundle}: exports", artifacts)
