"""The recipe's `compress:` section, run after training: distil → prune → export, then measure
every stage the same way (task metric, inputs/s and size on disk, `runs.compress_report`) for
the run report's trade-off table and plot, and the compress report (`compress-report/` in the
run folder: every stage's artifacts, the Pareto front marked). Each stage reads the previous
stage's bundle and writes a new one; the trained bundle is never changed (except that
`export` adds its ONNX files to the last bundle).
"""

from __future__ import annotations

from pathlib import Path

from graftwork.export import export_bundle
from graftwork.runs.compress_report import bundle_rows, write_compress_report
from graftwork.runs.distill import distill
from graftwork.runs.prune import prune_bundle

REPORT_DIR = "compress-report"  # beside the trained bundle, in the run folder


def run_compress(recipe, trained: Path) -> list[dict]:
    """Run the configured stages; returns one measurement row per stage and backend."""
    cfg = recipe.compress
    stages = [("trained", trained)]
    current = trained
    if cfg.distill is not None:
        student = recipe.model_dump(mode="json")
        student["name"] = f"{recipe.name}-student"
        student["method"] = {"type": "full"}
        current = distill(current, student).bundle
        stages.append(("distilled", current))
    if cfg.prune is not None:
        target = current.with_name(current.name + "-pruned")
        prune_bundle(current, target, **cfg.prune.model_dump(), seed=recipe.train.seed)
        current = target
        stages.append(("pruned", current))
    if cfg.export is not None:
        export = cfg.export
        export_bundle(
            current,
            export.int8,
            export.keep_attention_fp32,
            openvino=export.openvino,
            max_drop=export.max_drop,
        )
    eval_path = recipe.data_path("eval")
    if eval_path is None:
        return []
    shown = recipe.show_path(recipe.data.eval)
    rows = [row for name, bundle in stages for row in measure(name, bundle, eval_path, shown)]
    write_compress_report(trained.parent / REPORT_DIR, recipe.name, rows)
    return rows


def measure(
    stage: str, bundle: Path, data: Path, shown: str | None = None, repeats: int = 2
) -> list[dict]:
    """Metric on all of `data`, inputs/s (best of `repeats` passes over it) and size, for each
    backend the bundle holds (`compress_report.bundle_rows`); messages name the file as
    `shown` (a recipe path as written)."""
    return bundle_rows(stage, bundle, data, shown, limit=None, measure=True, repeats=repeats)
