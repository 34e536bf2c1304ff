"""report.html of a `graft tune` study: the best trial, the optimisation history, the
intermediate evaluations (where pruning acted), the parameter importances and every trial.

The plots are Optuna's own matplotlib ones (`optuna.visualization.matplotlib`), inlined as
SVG, on the page every report shares (`runs.report.write_page`). Importances use Optuna's
fANOVA evaluator with a fixed seed; they need at least two complete trials that differ, and
the report says so when there are not.
"""

from __future__ import annotations

import html
import warnings
from pathlib import Path

from graftwork.runs.report import write_page
from graftwork.tasks.html import pyplot, svg, table


def _plot(draw, study, **kwargs) -> str:
    """One of Optuna's matplotlib plots as SVG, or why it could not be drawn."""
    pyplot()  # the Agg backend before Optuna imports pyplot
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # Optuna marks these plots experimental
            axes = draw(study, **kwargs)
    except (ValueError, RuntimeError) as exc:
        return f"<p>not drawn: {html.escape(str(exc))}</p>"
    figure = axes.figure if hasattr(axes, "figure") else axes.flat[0].figure
    figure.set_size_inches(7, 4)
    return svg(figure)


def importances(study) -> str:
    from optuna.importance import FanovaImportanceEvaluator
    from optuna.trial import TrialState
    from optuna.visualization.matplotlib import plot_param_importances

    values = {t.value for t in study.trials if t.state == TrialState.COMPLETE}
    if len(values) < 2:
        return "<p>not drawn: importances need at least two complete trials that differ</p>"
    return _plot(plot_param_importances, study, evaluator=FanovaImportanceEvaluator(seed=0))


def write_tune_report(path: Path, study, summary: dict) -> Path:
    from optuna.visualization.matplotlib import (
        plot_intermediate_values,
        plot_optimization_history,
    )

    name, metric = summary["study"], summary["metric"]
    counts, best = summary["counts"], summary["best"]
    parts = [f"<h1>graftwork tune: {html.escape(name)}</h1>"]
    facts = [
        ["metric (eval split)", metric],
        ["trials complete / pruned / failed", " / ".join(str(v) for v in counts.values())],
        ["time in trials (s)", round(summary["seconds"], 1)],
        ["time pruning saved, estimated (s)", round(summary["pruning_saved_seconds"], 1)],
    ]
    if best is not None:
        facts.append(["best trial", f"{best['number']}: {metric} {best['value']:.4f}"])
        facts += [[f"  {key}", value] for key, value in best["params"].items()]
    parts.append(table(["", ""], facts))
    parts.append("<h2>optimisation history</h2>" + _plot(plot_optimization_history, study))
    parts.append(
        "<h2>evaluations during training (x: training examples seen)</h2>"
        + _plot(plot_intermediate_values, study)
    )
    parts.append("<h2>parameter importances (fANOVA)</h2>" + importances(study))
    keys = sorted({k for row in summary["trials"] for k in row["params"]})
    header = ["trial", "state", metric, *keys, "seconds", "examples seen"]
    rows = [
        [
            row["number"],
            row["state"],
            row["value"] if row["value"] is not None else "-",
            *[row["params"].get(k, "-") for k in keys],
            round(row["seconds"], 1) if row["seconds"] else "-",
            row["examples_seen"] or "-",
        ]
        for row in summary["trials"]
    ]
    parts.append("<h2>trials</h2>" + table(header, rows))
    return write_page(path, f"tune: {name}", parts)
