"""`graft distill`, `graft prune`, `graft export`: smaller and faster bundles from a bundle;
`graft compress-report`: their artifacts side by side (`runs.compress_report`).

Each verb calls one function of `graftwork.runs` / `compress` / `export` and prints what it
measured; the prune table shows the task's headline metric (`tasks.base.headline`). The
flags' defaults and help are the recipe sections' (`config.compress.PruneConfig`,
`ExportConfig`), and the prune flags are checked by the same rules, named as flags.
Left out: chaining them (a recipe's `compress:` section does that, through `graft run`).
"""

from __future__ import annotations

from pathlib import Path

import typer
from pydantic import ValidationError

from graftwork.backbones.quiet import quiet_libraries
from graftwork.bundle import read_manifest
from graftwork.cli import render
from graftwork.cli.inputs import OVERRIDES, RESUME
from graftwork.config.compress import EXPORT, PRUNE, ExportConfig, PruneConfig
from graftwork.errors import GraftError
from graftwork.export import export_bundle
from graftwork.runs import compress_report as tradeoffs
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


def helped(section: type, field: str) -> str:
    """The help of a flag: the description of the recipe section's field it sets."""
    return section.model_fields[field].description or ""


def prune_settings(**values) -> PruneConfig:
    """The prune flags checked as the recipe's `compress.prune` section, errors named as flags."""
    try:
        return PruneConfig(**values)
    except ValidationError as err:
        problems = "; ".join(
            f"--{str(e['loc'][0]).replace('_', '-')}: {e['msg']} (got {e['input']!r})"
            for e in err.errors()
        )
        raise GraftError(f"graft prune: {problems}") from None


def prune(
    bundle: Path = typer.Argument(..., help="A bundle folder."),
    heads: float = typer.Option(PRUNE.heads, "--heads", help=helped(PruneConfig, "heads")),
    ffn: float = typer.Option(PRUNE.ffn, "--ffn", help=helped(PruneConfig, "ffn")),
    target: Path = typer.Option(None, "--out", help="New bundle folder (default: BUNDLE-pruned)."),
    data: Path = typer.Option(None, "--data", help="Training file (default: the recipe's)."),
    recovery_epochs: float = typer.Option(
        PRUNE.recovery_epochs, "--recovery-epochs", help=helped(PruneConfig, "recovery_epochs")
    ),
    recovery_lr: float = typer.Option(
        PRUNE.recovery_lr, "--recovery-lr", help=helped(PruneConfig, "recovery_lr")
    ),
    max_examples: int = typer.Option(
        PRUNE.max_examples, "--max-examples", help=helped(PruneConfig, "max_examples")
    ),
):
    """Remove the least important heads and FFN neurons, fine-tune briefly, write a bundle."""
    settings = prune_settings(
        heads=heads,
        ffn=ffn,
        recovery_epochs=recovery_epochs,
        recovery_lr=recovery_lr,
        max_examples=max_examples,
    )
    setup_logging(None)
    quiet_libraries()
    target = target or bundle.with_name(bundle.name + "-pruned")
    report = prune_bundle(bundle, target, data=data, **settings.model_dump())
    task = read_manifest(target, verify=False)["task"]
    render.pruning(f"{bundle} → {target}", report, headline(task))


def export(
    bundle: Path = typer.Argument(..., help="A bundle folder."),
    onnx: bool = typer.Option(True, "--onnx/--no-onnx", help="Export FP32 ONNX (the base of all)."),
    int8: bool = typer.Option(EXPORT.int8, "--int8/--no-int8", help=helped(ExportConfig, "int8")),
    keep_attention_fp32: bool = typer.Option(
        EXPORT.keep_attention_fp32,
        "--keep-attention-fp32",
        help=helped(ExportConfig, "keep_attention_fp32"),
    ),
    data: Path = typer.Option(None, "--data", help="Labelled file for the parity check."),
    limit: int = typer.Option(None, "--limit", min=1, help="Check on the first N examples."),
    openvino: bool = typer.Option(
        EXPORT.openvino, "--openvino", help=helped(ExportConfig, "openvino")
    ),
    max_drop: float = typer.Option(
        EXPORT.max_drop, "--max-drop", min=0.0, help=helped(ExportConfig, "max_drop")
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


def compress_report(
    bundles: list[Path] = typer.Argument(
        ..., help="Bundle folders: a teacher, its student, a pruned model, ..."
    ),
    output: Path = typer.Option(
        Path("compress-report"), "--output", help="Folder for report.html and compress_report.json."
    ),
    data: Path = typer.Option(
        None, "--data", help="Labelled file (default: each bundle's recipe eval file)."
    ),
    examples: int = typer.Option(
        tradeoffs.LIMIT,
        "--examples",
        min=1,
        help="Time each artifact on the first N examples (and score them with --measure).",
    ),
    measure: bool = typer.Option(
        False,
        "--measure",
        help="Score each artifact on those examples instead of the metric its manifest records.",
    ),
    threads: int = typer.Option(None, "--threads", min=1, help="Threads per backend."),
):
    """Every artifact of the bundles (PyTorch, ONNX, OpenVINO; FP32, INT8) in one table and one
    accuracy-vs-throughput plot (marker area: size), the Pareto front marked."""
    setup_logging(None)
    quiet_libraries()
    rows, page = tradeoffs.compress_report(bundles, output, data, examples, measure, threads)
    header = [c.short for c in tradeoffs.SHORT]
    if rows:
        header[3] = rows[0]["metric"]
    render.table("compress-report", header, tradeoffs.terminal_rows(rows), left=3)
    render.out.print(f"table: {output / 'compress_report.json'}\nreport: {page}")
