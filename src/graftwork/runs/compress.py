"""The recipe's `compress:` section, run after training: distil → prune → export, then measure
every stage the same way (task metric, inputs/s and size on disk) for the report's trade-off
table and plot. Each stage reads the previous stage's bundle and writes a new one; the trained
bundle is never changed (except that `export` adds its ONNX files to the last bundle).
"""

from __future__ import annotations

import logging
import time
from pathlib import Path

from graftwork.data.readers import read_examples
from graftwork.export import export_bundle
from graftwork.inference.predictor import Predictor
from graftwork.runs.distill import distill
from graftwork.runs.prune import prune_bundle
from graftwork.tasks.base import headline

log = logging.getLogger("graftwork")


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
    return [row for name, bundle in stages for row in measure(name, bundle, eval_path, shown)]


def measure(
    stage: str, bundle: Path, data: Path, shown: str | None = None, repeats: int = 2
) -> list[dict]:
    """Metric, inputs/s (best of `repeats` passes over `data`) and size, for each backend;
    messages name the file as `shown` (a recipe path as written)."""

    rows = []
    base = Predictor(bundle, backend="torch")
    artifacts = base.manifest.artifacts
    examples = read_examples(data, base.task_config, base.data_config, shown=shown).examples
    metric = headline(base.task_config.type)
    texts = [base.task.to_text(e, base.task_config) for e in examples]
    for backend in ("torch", *[a for a in ("onnx-fp32", "onnx-int8") if a in artifacts]):
        predictor = base if backend == "torch" else Predictor(bundle, backend=backend)
        best = float("inf")
        for _ in range(repeats):
            started = time.perf_counter()
            predictor.predict(texts)
            best = min(best, time.perf_counter() - started)
        metrics = predictor.evaluate(data, shown=shown)
        weights = "model.safetensors" if backend == "torch" else artifacts[backend]["path"]
        rows.append(
            {
                "stage": stage,
                "backend": backend,
                "bundle": str(bundle),
                "metric": metric,
                "value": metrics[metric],
                "inputs_per_second": len(texts) / best,
                "size_mb": (bundle / weights).stat().st_size / 1e6,
            }
        )
        log.info("%s %s: %s", stage, backend, rows[-1])
    return rows
