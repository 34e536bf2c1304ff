"""`graft compress-report`: every artifact of some bundles (a teacher, its student, a pruned
model; PyTorch and each exported graph they hold: ONNX FP32/INT8, OpenVINO FP32/INT8) in one
table and one accuracy-vs-throughput plot, marker area by file size, the Pareto front marked,
so a user can pick the point to deploy. The compress chain (`runs.compress`) measures its
stages with the same functions and writes the same report.

Accuracy is what each bundle's manifest records (the headline metric of its eval split, or
test, plus the `change_points` its export measured for an INT8 artifact; FP32 graphs passed
their parity check, so they carry the PyTorch figure), or, with `measure`, the metric of each
artifact on the eval examples. Manifests record no speed, so throughput is always measured:
`predict` over the eval texts (the first `limit`), best of `repeats` passes after a warm-up,
tokenization included, as `graft predict` runs. Size is the artifact's files on disk.
The Pareto front is over the three at once: an artifact is on it when no other is at least as
accurate, as fast and as small, and better in one.

Writes `report.html` and `compress_report.json` in the output folder, each atomically. The
page is built with `runs.report` (page, plot) and the table's columns are `compare_report`'s
`Column`s. Left out: latency percentiles (`benchmarks/latency.py`) and memory.
"""

from __future__ import annotations

import html
import logging
import time
from pathlib import Path

from graftwork import registry
from graftwork.bundle import atomic, read_manifest
from graftwork.data.readers import read_examples
from graftwork.export import parity_examples
from graftwork.inference.forward import evaluate_examples
from graftwork.inference.predictor import Predictor
from graftwork.runs.compare_report import Column, cells
from graftwork.runs.report import tradeoff_plot, write_page
from graftwork.tasks.base import headline
from graftwork.tasks.html import table

log = logging.getLogger("graftwork")

LIMIT = 256  # eval texts each artifact is timed on by default
COLUMNS = (
    Column("stage", "bundle", "bundle"),
    Column("backend", "backend", "backend"),
    Column("precision", "precision", "precision"),
    Column("value", "metric", "metric", ".4f"),
    Column("accuracy_from", "metric from"),
    Column("inputs_per_second", "inputs/s", "inputs/s", ".1f"),
    Column("size_mb", "size (MB)", "MB", ".1f"),
    Column("pareto", "on the Pareto front", "front"),
)
SHORT = tuple(c for c in COLUMNS if c.short)  # what `graft compress-report` prints
OBJECTIVES = (("value", 1), ("inputs_per_second", 1), ("size_mb", -1))  # 1: more is better


def pareto(rows: list[dict], objectives=OBJECTIVES) -> list[bool]:
    """For each row, whether no other row is at least as good in every objective and better in
    one (rows missing an objective are never on the front, and dominate nothing)."""
    scored = [r for r in rows if all(r.get(k) is not None for k, _ in objectives)]

    def dominates(a: dict, b: dict) -> bool:
        pairs = [(sign * a[k], sign * b[k]) for k, sign in objectives]
        return all(x >= y for x, y in pairs) and any(x > y for x, y in pairs)

    return [
        any(r is row for r in scored) and not any(dominates(o, row) for o in scored) for row in rows
    ]


def kind(manifest) -> str:
    """What a bundle is in a compression chain: pruned, distilled (a student) or trained."""
    if manifest.pruning:
        return "pruned"
    return "distilled" if manifest.distillation else "trained"


def backends(manifest) -> tuple[list[str], list[str]]:
    """The backends that run a bundle here, PyTorch first then each artifact it holds (the
    reverse of auto's preference); and the artifacts held that cannot run here."""
    held = [n for n in reversed(registry.BACKENDS) if n == "torch" or n in manifest.artifacts]
    usable = [n for n in held if registry.backend(n).available(manifest, n)]
    return usable, [n for n in held if n not in usable]


def size_mb(bundle: Path, manifest, backend: str) -> float:
    """Megabytes of the files a backend loads: an artifact's, or the bundle's PyTorch weights."""
    if backend == "torch":
        files = [f for f in manifest.files if f.endswith((".safetensors", ".bin")) and "/" not in f]
    else:
        info = manifest.artifacts[backend]
        files = info.get("files", [info["path"]])
    return sum((bundle / f).stat().st_size for f in files) / 1e6


def recorded(manifest, backend: str, metric: str) -> tuple[float | None, str]:
    """The metric the manifest records for an artifact, and where it comes from."""
    split = next((s for s in ("eval", "test") if metric in manifest.metrics.get(s, {})), None)
    if split is None:
        return None, "not recorded (use --measure)"
    value = manifest.metrics[split][metric]
    change = manifest.artifacts.get(backend, {}).get("change_points")
    if change is None:
        return value, f"manifest ({split})"
    return value + change / 100, f"manifest ({split}, {change:+.2f} points by the export)"


def speed(predictor: Predictor, texts: list[str], repeats: int) -> float:
    """Inputs per second of `predict` over `texts`: best of `repeats` passes after a warm-up."""
    predictor.predict(texts[:8])
    best = float("inf")
    for _ in range(repeats):
        started = time.perf_counter()
        predictor.predict(texts)
        best = min(best, time.perf_counter() - started)
    return len(texts) / best


def bundle_rows(
    stage: str | None,
    bundle: Path,
    data: Path | None = None,
    shown: str | None = None,
    limit: int | None = LIMIT,
    measure: bool = False,
    repeats: int = 2,
    threads: int | None = None,
) -> list[dict]:
    """One row per backend that runs `bundle` here: metric, inputs/s, size. `data`: a labelled
    file (default: the bundle's recipe eval file), named `shown` in messages; `limit`: its
    first N examples (None: all); `measure`: score each artifact on them instead of reading
    the manifest. `stage` names the bundle (default: `kind`)."""
    bundle = Path(bundle)
    base = Predictor(bundle, backend="torch", threads=threads)
    manifest = base.manifest
    if data is None:
        examples, shown = parity_examples(base, None, limit)
    else:
        shown = shown or str(data)
        found = read_examples(Path(data), base.task_config, base.data_config, shown=shown)
        examples = found.examples[:limit] if limit else found.examples
    metric = headline(base.task_config.type)
    texts = [base.task.to_text(e, base.task_config) for e in examples]
    usable, missing = backends(manifest)
    for name in missing:
        log.warning("%s: %s cannot run here (its runtime is not installed); left out", bundle, name)
    rows = []
    for backend in usable:
        predictor = base if backend == "torch" else Predictor(bundle, False, threads, backend)
        if measure:
            scores = evaluate_examples(
                predictor.forward,
                predictor.tokenizer,
                predictor.task,
                examples,
                predictor.id2label,
                predictor.window,
                64,
                shown,
                predictor.stride,
            )
            value, source = scores[metric], f"measured on {len(examples)} examples"
        else:
            value, source = recorded(manifest, backend, metric)
        rows.append(
            {
                "stage": stage or kind(manifest),
                "bundle": str(bundle),
                "backend": backend,
                "precision": "int8" if backend.endswith("int8") else "fp32",
                "metric": metric,
                "value": value,
                "accuracy_from": source,
                "inputs_per_second": speed(predictor, texts, repeats),
                "timed_on": f"{len(texts)} texts of {shown}",
                "size_mb": size_mb(bundle, manifest, backend),
            }
        )
        log.info("%s %s: %s", rows[-1]["stage"], backend, rows[-1])
    return rows


def stage_names(bundles: list[Path]) -> list[str]:
    """A name per bundle: its kind, with the folder added where two bundles share a kind."""
    kinds = [kind(read_manifest(Path(b), verify=False)) for b in bundles]
    return [
        k if kinds.count(k) == 1 else f"{k} ({Path(b).parent.name}/{Path(b).name})"
        for k, b in zip(kinds, bundles, strict=True)
    ]


def write_compress_report(folder: Path, title: str, rows: list[dict]) -> Path:
    """Mark the Pareto front in `rows` (`pareto`), then write report.html and
    compress_report.json in `folder`; returns the page's path."""
    for row, front in zip(rows, pareto(rows), strict=True):
        row["pareto"] = front
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    atomic.write_json(folder / "compress_report.json", {"title": title, "rows": rows})
    header = [c.label for c in COLUMNS]
    if rows:
        header[3] = rows[0]["metric"]
    body = [["-" if r.get(c.key) is None else r[c.key] for c in COLUMNS] for r in rows]
    plotted = [r for r in rows if r["value"] is not None]
    parts = [
        f"<h1>graftwork compress-report: {html.escape(title)}</h1>",
        "<p>Every artifact of the bundles; marker area is the file size, ringed markers are the "
        "Pareto front (no other artifact is at least as accurate, as fast and as small).</p>",
        table(header, body),
        tradeoff_plot(plotted, [r["pareto"] for r in plotted]),
        table(["bundle", "folder"], list(dict.fromkeys((r["stage"], r["bundle"]) for r in rows))),
    ]
    return write_page(folder / "report.html", f"compress-report: {title}", parts)


def compress_report(
    bundles: list[Path],
    output: Path,
    data: Path | None = None,
    limit: int | None = LIMIT,
    measure: bool = False,
    threads: int | None = None,
) -> tuple[list[dict], Path]:
    """Measure every artifact of `bundles` (see `bundle_rows`) and write the report in
    `output`; returns the rows and the page's path. Each path is checked to be a bundle
    before anything is measured."""
    names = stage_names(bundles)
    rows = [
        row
        for name, bundle in zip(names, bundles, strict=True)
        for row in bundle_rows(name, bundle, data, None, limit, measure, threads=threads)
    ]
    title = ", ".join(str(b) for b in bundles)
    return rows, write_compress_report(output, title, rows)


def terminal_rows(rows: list[dict]) -> list[list[str]]:
    """The rows as `graft compress-report` prints them."""
    return [cells(r, SHORT) for r in rows]
