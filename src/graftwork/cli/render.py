"""Everything `graft` prints: one table writer, and each verb's output built on it.

Verbs compute; this module turns what they computed into rich tables and lines on stdout
(`out`) and error messages on stderr (`err`). Predictions are JSON lines written to stdout
directly (no rich markup, so they can be piped). Left out: colours beyond rich's defaults.
"""

from __future__ import annotations

import json
import sys
from collections.abc import Callable, Iterable, Iterator, Sequence
from contextlib import contextmanager

from rich.console import Console
from rich.markup import escape
from rich.table import Table

out = Console()
err = Console(stderr=True)


def table(title: str, columns: Sequence[str], rows: Iterable[Sequence[str]], left: int = 1):
    """Print a table; the first `left` columns are left-aligned, the rest right-aligned."""
    shown = Table(title=title)
    for i, column in enumerate(columns):
        shown.add_column(column, justify="left" if i < left else "right")
    for row in rows:
        shown.add_row(*row)
    out.print(shown)


def _number(value, digits: int) -> str:
    return "-" if value is None else f"{value:,.{digits}f}"


def results(result, report: bool = False) -> None:
    """A run's metrics per split, forgetting of the previous task (EWC), speed and size; then
    where the bundle is, and the report when the verb wrote one (`graft run` does)."""
    rows = [
        (split, key, f"{value:.4f}")
        for split in ("eval", "test")
        for key, value in result.metrics.get(split, {}).items()
        if isinstance(value, float)
    ]
    task_a = result.metrics.get("task_a")  # objective ewc: the previous task, before and after
    for split, lost in (task_a or {}).get("forgetting", {}).items():
        key, where = task_a["metric"], f"task A {split}"
        rows.append((where, f"{key} before", f"{task_a['before'][split][key]:.4f}"))
        rows.append((where, f"{key} after", f"{task_a['after'][split][key]:.4f}"))
        rows.append((where, "forgetting", f"{lost:.4f}"))
    train = result.metrics.get("train", {})
    params = result.metrics.get("parameters", {})
    rows.append(("train", "examples/s", f"{train.get('examples_per_second', 0):.1f}"))
    rows.append(("train", "seconds", f"{train.get('seconds', 0):.0f}"))
    rows.append(
        (
            "model",
            "trainable params",
            f"{params.get('trainable', 0):,} ({params.get('trainable_pct', 0):.2f}%)",
        )
    )
    table(f"{result.recipe.name}: results", ("split", "metric", "value"), rows, left=2)
    written = [f"bundle: {result.bundle}"]
    if report:
        written.append(f"report: {result.run_dir / 'report.html'}")
    lines(written)


def pretraining(result) -> None:
    """Held-out perplexity and tokens per word before and after masked-LM pretraining."""
    ppl, words = result.metrics["perplexity"], result.metrics["tokens_per_word"]
    rows = [("perplexity (new head)", _number(ppl.get("before"), 2), "")]
    if "before_head_warmup" in ppl:
        rows.append(("perplexity (head warmed up)", _number(ppl["before_head_warmup"], 2), ""))
    rows.append(("perplexity", "", _number(ppl.get("after"), 2)))
    rows.append(("tokens per word", _number(words["before"], 4), _number(words["after"], 4)))
    rows.append(("vocabulary terms added", "", str(result.metrics["vocab"]["added"])))
    table(f"{result.recipe.name}: held-out text", ("", "before", "after"), rows)
    out.print(f"backbone folder: {result.bundle}")


def evaluations(title: str, results: dict[str, dict], keys: Sequence[str]) -> None:
    """One row per evaluated file, one column per metric in `keys` (counts as integers)."""
    rows = [
        (
            path,
            *[
                f"{metrics[k]:,}" if isinstance(metrics[k], int) else f"{metrics[k]:.4f}"
                for k in keys
            ],
        )
        for path, metrics in results.items()
    ]
    table(title, ("data", *keys), rows)


def as_json(value) -> None:
    out.print_json(json.dumps(value))


def json_lines(records: Iterable[dict]) -> None:
    for record in records:
        sys.stdout.write(json.dumps(record, ensure_ascii=False) + "\n")


@contextmanager
def counter(label: str, total: int) -> Iterator[Callable[[int], None]]:
    """A progress bar on stderr while the block runs (only on a terminal); yields
    `advance(n)`."""
    if not err.is_terminal:
        yield lambda n: None
        return
    from rich.progress import (
        BarColumn,
        MofNCompleteColumn,
        Progress,
        TextColumn,
        TimeRemainingColumn,
    )

    with Progress(
        TextColumn(label), BarColumn(), MofNCompleteColumn(), TimeRemainingColumn(), console=err
    ) as bar:
        task = bar.add_task(label, total=total)
        yield lambda n: bar.advance(task, n)


def streamed(output, done: dict) -> None:
    resumed = f" ({done['resumed']:,} from an earlier run)" if done["resumed"] else ""
    err.print(
        f"{done['resumed'] + done['written']:,} predictions in {escape(str(output))}{resumed}"
    )


def pruning(title: str, report: dict, key: str) -> None:
    """Parameters, and the headline metric per split, before and after pruning."""
    rows = [("parameters", f"{report['parameters_before']:,}", f"{report['parameters_after']:,}")]
    for split, metrics in report.get("metrics", {}).items():
        before = report.get("metrics_before", {}).get(split, {})
        if key in metrics and key in before:
            rows.append((f"{split} {key}", f"{before[key]:.4f}", f"{metrics[key]:.4f}"))
    table(title, ("", "before", "after"), rows)


def exports(title: str, artifacts: dict[str, dict]) -> None:
    """Each exported artifact with its parity against the PyTorch model."""
    rows = [
        (
            info["path"],
            f"{info['max_abs_logit_diff']:.2e}",
            f"{info['label_agreement']:.4f}",
            _change(info),
        )
        for info in artifacts.values()
    ]
    columns = ("artifact", "max |Δlogit|", "label agreement", "metric change")
    table(title, columns, rows)


def _change(info: dict) -> str:
    """An INT8 artifact's metric change, its budget and the operations kept in FP32."""
    if "change_points" not in info:
        return "-"
    shown = f"{info['change_points']:+.2f} pts"
    if "max_drop" in info:
        shown += f" (budget -{info['max_drop']:.2f})"
    if info.get("kept_fp32"):
        shown += f", {len(info['kept_fp32'])} ops kept FP32"
    return shown


def parity(artifact: dict) -> str:
    """An export's recorded parity in one line: label agreement, largest logit difference and
    the headline metric's change (INT8), each as far as the manifest records it."""
    parts = []
    if "label_agreement" in artifact:
        parts.append(f"label agreement {artifact['label_agreement']:.4f}")
    if "max_abs_logit_diff" in artifact:
        parts.append(f"max |Δlogit| {artifact['max_abs_logit_diff']:.2e}")
    if "change_points" in artifact:
        before, after = artifact.get("pytorch"), artifact.get("int8")
        scores = f" {before:.4f} → {after:.4f}" if before is not None and after is not None else ""
        parts.append(
            f"{artifact.get('metric', 'metric')}{scores} ({artifact['change_points']:+.2f} pts)"
        )
    return ", ".join(parts) or "not recorded"


def manifest(manifest: dict) -> None:
    """What a bundle holds: task, method, labels, metrics, artifacts with their parity, files,
    versions; every line whole (never cut or wrapped to the terminal's width)."""
    out.print(f"[bold]{escape(str(manifest.get('name')))}[/bold]  ({manifest.get('format')})")
    shown = [f"{key}: {manifest.get(key)}" for key in ("task", "method", "backbone", "created")]
    shown.append(f"labels: {', '.join(manifest.get('labels', []))}")
    for split, metrics in manifest.get("metrics", {}).items():
        values = {k: round(v, 4) for k, v in metrics.items() if isinstance(v, (int, float))}
        shown.append(f"{split}: {values}")
    for name, artifact in manifest.get("artifacts", {}).items():
        shown.append(f"artifact {name}: {artifact.get('path')}")
        shown.append(f"  parity: {parity(artifact)}")
        if "checked_on" in artifact:
            shown.append(f"  checked on: {artifact['checked_on']}")
    shown.append(f"files: {', '.join(manifest.get('files', {}))}")
    shown.append(f"versions: {manifest.get('versions')}")
    lines(shown)


def served_by(backend: str, passed: list[str]) -> None:
    """`graft info`: which backend `auto` picks, and why it passes over the ones before it."""
    lines([f"auto serves it with: {backend}", *(f"  passed over {why}" for why in passed)])


def comparison(title: str, columns: Sequence[str], rows, folder) -> None:
    """`graft compare`: one right-aligned row per method, then where the table and report are."""
    table(title, columns, rows, left=0)
    out.print(f"table: {folder / 'compare.json'}\nreport: {folder / 'report.html'}")


def tuning(summary: dict, folder) -> None:
    """`graft tune`: the best trials (five at most), the counts, then where the outputs are."""
    metric = summary["metric"]
    done = [t for t in summary["trials"] if t["state"] == "complete"]
    done.sort(key=lambda t: -t["value"])
    keys = sorted({k for t in done for k in t["params"]})
    rows = [
        [str(t["number"]), f"{t['value']:.4f}", *(_shown(t["params"].get(k)) for k in keys)]
        for t in done[:5]
    ]
    table(f"{summary['study']}: best trials", ("trial", metric, *keys), rows)
    counts = summary["counts"]
    written = [
        f"trials: {counts['complete']} complete, {counts['pruned']} pruned, "
        f"{counts['failed']} failed; pruning saved about {summary['pruning_saved_seconds']:.0f} s"
    ]
    if done:
        written.append(f"best recipe: {folder / 'best.yaml'}")
    lines([*written, f"report: {folder / 'report.html'}"])


def _shown(value) -> str:
    return f"{value:.3g}" if isinstance(value, float) else str(value)


def advice(advice) -> None:
    """`graft advise`: the recommendation, then each rule that led to it."""
    for key in ("backbone", "method", "compression"):
        out.print(f"[bold]{key}[/bold]: {getattr(advice, key)}")
    out.print("\nwhy (each rule and the measurement behind it, see BENCHMARKS.md):")
    for reason in advice.reasons:
        out.print(f"- {reason}")


def lines(text: Iterable[str]) -> None:
    """Plain lines (no markup, no highlighting, never wrapped), flushed at once."""
    for line in text:
        out.print(line, markup=False, highlight=False, soft_wrap=True)
    sys.stdout.flush()


def error(message: str) -> None:
    err.print(f"[red]error:[/red] {message}", highlight=False, soft_wrap=True)
