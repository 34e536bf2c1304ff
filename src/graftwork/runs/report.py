"""report.html: one self-contained page per run (plots inlined as SVG; no network needed).

Shows the headline metrics, the training-loss curve, and for classification a confusion
matrix, for NER a per-entity-type precision/recall/F1 table. Plots use matplotlib.
"""

from __future__ import annotations

import html
import io
from pathlib import Path

from graftwork.bundle import atomic


def _svg(fig) -> str:
    buf = io.StringIO()
    fig.savefig(buf, format="svg", bbox_inches="tight")
    text = buf.getvalue()
    return text[text.index("<svg") :]


def loss_plot(history: list[list[float]]) -> str:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(6, 3))
    if history:
        steps, losses = zip(*history, strict=True)
        ax.plot(steps, losses, marker="." if len(steps) < 30 else None)
    ax.set_xlabel("optimizer step")
    ax.set_ylabel("training loss")
    ax.grid(alpha=0.3)
    out = _svg(fig)
    plt.close(fig)
    return out


def confusion_plot(labels: list[str], matrix: list[list[int]]) -> str:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    size = max(3.0, 0.6 * len(labels) + 1.5)
    fig, ax = plt.subplots(figsize=(size, size))
    ax.imshow(matrix, cmap="Blues")
    ax.set_xticks(range(len(labels)), labels, rotation=45, ha="right")
    ax.set_yticks(range(len(labels)), labels)
    ax.set_xlabel("predicted")
    ax.set_ylabel("true")
    peak = max(max(row) for row in matrix) or 1
    for i, row in enumerate(matrix):
        for j, value in enumerate(row):
            color = "white" if value > peak / 2 else "black"
            ax.text(j, i, str(value), ha="center", va="center", color=color)
    out = _svg(fig)
    plt.close(fig)
    return out


def _scatter(points: list[tuple], xlabel: str, ylabel: str, log_x: bool = False) -> str:
    """One labelled marker per (x, y, marker area, label) point."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(6, 4))
    for x, y, area, label in points:
        ax.scatter(x, y, s=area, alpha=0.6)
        ax.annotate(label, (x, y))
    if log_x:
        ax.set_xscale("log")
    ax.set_xlabel(xlabel)
    ax.set_ylabel(ylabel)
    ax.grid(alpha=0.3)
    out = _svg(fig)
    plt.close(fig)
    return out


def tradeoff_plot(rows: list[dict]) -> str:
    """Metric against inputs/s for every stage and backend; marker area ∝ size on disk."""
    points = [
        (r["inputs_per_second"], r["value"], 10 + 3 * r["size_mb"], f"{r['stage']} {r['backend']}")
        for r in rows
    ]
    return _scatter(points, "inputs / second (eval set)", rows[0]["metric"] if rows else "metric")


def _table(header: list[str], rows: list[list]) -> str:
    head = "".join(f"<th>{html.escape(str(h))}</th>" for h in header)
    body = "".join(
        "<tr>" + "".join(f"<td>{html.escape(_fmt(v))}</td>" for v in row) + "</tr>" for row in rows
    )
    return f"<table><tr>{head}</tr>{body}</table>"


def _fmt(value) -> str:
    return f"{value:.4f}" if isinstance(value, float) else str(value)


def render(name: str, metrics: dict, manifest_info: dict) -> str:
    parts = [f"<h1>graftwork run: {html.escape(name)}</h1>"]
    info = [[k, v] for k, v in manifest_info.items()]
    parts.append(_table(["", ""], info))
    for split in ("eval", "test"):
        m = metrics.get(split)
        if not m:
            continue
        flat = [[k, v] for k, v in m.items() if isinstance(v, (int, float))]
        parts.append(f"<h2>{split}</h2>" + _table(["metric", "value"], flat))
        if "confusion" in m:
            parts.append(confusion_plot(m["confusion"]["labels"], m["confusion"]["matrix"]))
        if "per_type" in m:
            rows = [
                [t, v["precision"], v["recall"], v["f1"], v["support"]]
                for t, v in sorted(m["per_type"].items())
            ]
            parts.append(_table(["entity type", "precision", "recall", "F1", "support"], rows))
    stages = metrics.get("stages")
    if stages:
        parts.append("<h2>compression: accuracy vs throughput vs size</h2>")
        header = ["stage", "backend", stages[0]["metric"], "inputs/s", "size (MB)"]
        rows = [
            [r["stage"], r["backend"], r["value"], r["inputs_per_second"], r["size_mb"]]
            for r in stages
        ]
        parts.append(_table(header, rows))
        parts.append(tradeoff_plot(stages))
    train = metrics.get("train", {})
    parts.append("<h2>training</h2>")
    parts.append(
        _table(
            ["examples", "steps", "examples/s", "seconds"],
            [
                [
                    train.get("examples"),
                    train.get("steps"),
                    train.get("examples_per_second"),
                    train.get("seconds"),
                ]
            ],
        )
    )
    parts.append(loss_plot(train.get("loss_history", [])))
    return _page(name, parts)


def _page(title: str, parts: list[str]) -> str:
    style = (
        "body{font-family:system-ui,sans-serif;max-width:1000px;margin:2em auto}"
        "table{border-collapse:collapse;margin:1em 0}td,th{border:1px solid #ccc;padding:4px 10px}"
    )
    return (
        f"<!doctype html><html><head><meta charset='utf-8'><title>{html.escape(title)}</title>"
        f"<style>{style}</style></head><body>{''.join(parts)}</body></html>"
    )


def _write(path: Path, text: str) -> Path:
    return atomic.write_text(path, text)


def write_report(result) -> Path:
    recipe = result.recipe
    params = result.metrics.get("parameters", {})
    info = {
        "backbone": recipe.backbone.name,
        "task": recipe.task.type,
        "method": recipe.method.type,
        "trainable parameters": (
            f"{params.get('trainable', 0):,} ({params.get('trainable_pct', 0):.2f}%)"
        ),
        "bundle": str(result.bundle),
    }
    return _write(Path(result.run_dir) / "report.html", render(recipe.name, result.metrics, info))


def compare_plot(rows: list[dict]) -> str:
    """Metric against trainable share (log scale); marker area ∝ memory training added."""
    points = [
        (r["trainable_pct"], r["value"], 20 + r["training_rss_mb"] / 4, r["method"]) for r in rows
    ]
    ylabel = rows[0]["metric"] if rows else "metric"
    return _scatter(points, "trainable parameters (%)", ylabel, log_x=True)


COMPARE_COLUMNS = (
    ("method", "method"),
    ("value", "metric"),
    ("trainable", "trainable"),
    ("trainable_pct", "trainable %"),
    ("examples_per_second", "train ex/s"),
    ("peak_rss_mb", "peak RSS MB"),
    ("training_rss_mb", "added by training MB"),
    ("peak_heap_mb", "peak heap in use MB"),
    ("training_heap_mb", "heap added by training MB"),
    ("gpu_peak_mb", "GPU peak MB"),
    ("bundle_mb", "bundle MB"),
    ("task_specific_mb", "task-specific MB"),
)


def write_compare_report(path: Path, name: str, rows: list[dict], machine: dict) -> Path:
    header = [label for _, label in COMPARE_COLUMNS]
    if rows:
        header[1] = f"{rows[0]['metric']} ({rows[0]['split']})"
    body = [[row.get(key) for key, _ in COMPARE_COLUMNS] for row in rows]
    parts = [
        f"<h1>graftwork compare: {html.escape(name)}</h1>",
        _table(["", ""], [[k, v] for k, v in machine.items()]),
        _table(header, body),
        compare_plot(rows),
    ]
    return _write(path, _page(f"compare: {name}", parts))
