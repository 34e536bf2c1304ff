"""report.html: one self-contained page per run (plots inlined as SVG; no network needed),
and the page builder every report uses (`page`, `write_page`, `scatter`: the compare report in
`runs.compare_report` and the tune report in `runs.tune_report` are built on them).

A run's page shows the headline metrics, the training-loss curve, and for each evaluated split
the task's own sections (`Task.report_sections`: a confusion matrix for classification, a
per-entity-type table for NER). Plots use matplotlib; tables and SVG come from `tasks.html`.
Left out: what another verb's page shows (its own module).
"""

from __future__ import annotations

import html
from pathlib import Path

from graftwork import registry
from graftwork.bundle import atomic
from graftwork.tasks.html import pyplot, svg, table


def loss_plot(history: list[list[float]]) -> str:
    plt = pyplot()
    fig, ax = plt.subplots(figsize=(6, 3))
    if history:
        steps, losses = zip(*history, strict=True)
        ax.plot(steps, losses, marker="." if len(steps) < 30 else None)
    ax.set_xlabel("optimizer step")
    ax.set_ylabel("training loss")
    ax.grid(alpha=0.3)
    return svg(fig)


def eval_plot(history: list[list], headline: str, best_step: int) -> str:
    """The eval split's headline metric at each evaluation during training; the best circled."""
    plt = pyplot()
    fig, ax = plt.subplots(figsize=(6, 3))
    steps = [step for step, _ in history]
    values = [metrics.get(headline) for _, metrics in history]
    ax.plot(steps, values, marker="." if len(steps) < 30 else None)
    if best_step in steps:
        best = values[steps.index(best_step)]
        ax.scatter([best_step], [best], s=80, facecolors="none", edgecolors="C3", label="best")
        ax.legend()
    ax.set_xlabel("optimizer step")
    ax.set_ylabel(f"eval {headline}")
    ax.grid(alpha=0.3)
    return svg(fig)


def scatter(points: list[tuple], xlabel: str, ylabel: str, log_x: bool = False, marked=()) -> str:
    """One labelled marker per (x, y, marker area, label) point; the points whose entry in
    `marked` is true are ringed (a Pareto front)."""
    plt = pyplot()
    fig, ax = plt.subplots(figsize=(6, 4))
    for i, (x, y, area, label) in enumerate(points):
        ax.scatter(x, y, s=area, alpha=0.6)
        if i < len(marked) and marked[i]:
            ax.scatter(x, y, s=area + 60, facecolors="none", edgecolors="C3", linewidths=1.5)
        ax.annotate(label, (x, y))
    if log_x:
        ax.set_xscale("log")
    ax.set_xlabel(xlabel)
    ax.set_ylabel(ylabel)
    ax.grid(alpha=0.3)
    return svg(fig)


def tradeoff_plot(rows: list[dict], front=()) -> str:
    """Metric against inputs/s for every stage and backend; marker area ∝ size on disk; rows
    whose entry in `front` is true ringed (`runs.compress_report.pareto`)."""
    points = [
        (r["inputs_per_second"], r["value"], 10 + 3 * r["size_mb"], f"{r['stage']} {r['backend']}")
        for r in rows
    ]
    ylabel = rows[0]["metric"] if rows else "metric"
    return scatter(points, "inputs / second (eval set)", ylabel, marked=front)


def render(name: str, metrics: dict, manifest_info: dict, task_name: str) -> str:
    task = registry.task(task_name)
    parts = [f"<h1>graftwork run: {html.escape(name)}</h1>"]
    info = [[k, v] for k, v in manifest_info.items()]
    parts.append(table(["", ""], info))
    for split in ("eval", "test"):
        m = metrics.get(split)
        if not m:
            continue
        flat = [[k, v] for k, v in m.items() if isinstance(v, (int, float))]
        parts.append(f"<h2>{split}</h2>" + table(["metric", "value"], flat))
        parts.extend(task.report_sections(m))
    stages = metrics.get("stages")
    if stages:
        parts.append("<h2>compression: accuracy vs throughput vs size</h2>")
        header = ["stage", "backend", stages[0]["metric"], "inputs/s", "size (MB)"]
        rows = [
            [r["stage"], r["backend"], r["value"], r["inputs_per_second"], r["size_mb"]]
            for r in stages
        ]
        parts.append(table(header, rows))
        parts.append(tradeoff_plot(stages, [r.get("pareto", False) for r in stages]))
    train = metrics.get("train", {})
    parts.append("<h2>training</h2>")
    parts.append(
        table(
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
    if train.get("eval_history"):
        stopped = " (stopped early)" if train.get("stopped_early") else ""
        parts.append(f"<h2>evaluation during training{stopped}</h2>")
        parts.append(f"<p>bundle weights: {html.escape(str(train.get('bundle_weights')))}</p>")
        parts.append(eval_plot(train["eval_history"], task.HEADLINE, train.get("best_step", 0)))
    return page(name, parts)


def page(title: str, parts: list[str]) -> str:
    """A whole self-contained HTML page of `parts` (HTML pieces) titled `title`."""
    style = (
        "body{font-family:system-ui,sans-serif;max-width:1000px;margin:2em auto}"
        "table{border-collapse:collapse;margin:1em 0}td,th{border:1px solid #ccc;padding:4px 10px}"
    )
    return (
        f"<!doctype html><html><head><meta charset='utf-8'><title>{html.escape(title)}</title>"
        f"<style>{style}</style></head><body>{''.join(parts)}</body></html>"
    )


def write_page(path: Path, title: str, parts: list[str]) -> Path:
    """Write the page of `parts` to `path` atomically."""
    return atomic.write_text(path, page(title, parts))


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
    task = recipe.task
    if recipe.multitask is not None:  # the top-level metrics are the first task's
        task = next(iter(recipe.multitask.tasks.values())).task
    return atomic.write_text(
        Path(result.run_dir) / "report.html", render(recipe.name, result.metrics, info, task.type)
    )
