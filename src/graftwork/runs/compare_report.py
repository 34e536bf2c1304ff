"""The columns of `graft compare`'s table, defined once, and its report.html.

`COLUMNS` names each column's row key, its header in report.html, its header in the terminal
table (None: the report only, which has room for every memory figure) and its format there;
`runs.compare` builds the terminal table from it, `write_compare_report` the page (the machine,
the table, the notes of rows that differ from a method's, and metric against trainable share).
Left out: running the methods (`runs.compare`).
"""

from __future__ import annotations

import html
from dataclasses import dataclass
from pathlib import Path

from graftwork.runs.report import scatter, write_page
from graftwork.tasks.html import table


@dataclass(frozen=True)
class Column:
    key: str  # in a compare row
    label: str  # report.html's header
    short: str | None = None  # the terminal table's header; None: in the report only
    spec: str = ""  # the terminal cell's format


COLUMNS = (
    Column("method", "method", "method"),
    Column("value", "metric", "metric", ".4f"),
    Column("trainable", "trainable", "trainable", ","),
    Column("trainable_pct", "trainable %", "%", ".2f"),
    Column("examples_per_second", "train ex/s", "ex/s", ".1f"),
    Column("peak_rss_mb", "peak RSS MB", "peak RSS MB", ".0f"),
    Column("training_rss_mb", "added by training MB", "+training MB", ".0f"),
    Column("peak_heap_mb", "peak heap in use MB", "heap MB", ".0f"),
    Column("training_heap_mb", "heap added by training MB"),
    Column("gpu_peak_mb", "GPU peak MB"),
    Column("bundle_mb", "bundle MB"),
    Column("task_specific_mb", "task-specific MB", "task MB", ".2f"),
)
SHORT = tuple(c for c in COLUMNS if c.short)  # the terminal table's columns


def cells(row: dict, columns: tuple[Column, ...] = SHORT) -> list[str]:
    """A row as the terminal table shows it ("-" where a column does not apply); `columns`:
    another table's (`compress_report`)."""
    return ["-" if row.get(c.key) is None else format(row[c.key], c.spec) for c in columns]


def notes(rows: list[dict]) -> list[str]:
    """What a row's cells mean where they differ from a method's (few-shot, zero-shot)."""
    return [f"{row['method']}: {row['note']}" for row in rows if row.get("note")]


def compare_plot(rows: list[dict]) -> str:
    """Metric against trainable share (log scale); marker area ∝ memory training added. Rows
    that trained nothing (zero-shot) have no place on a log scale and are left out."""
    points = [
        (r["trainable_pct"], r["value"], 20 + r["training_rss_mb"] / 4, r["method"])
        for r in rows
        if r["trainable_pct"] and r.get("training_rss_mb") is not None
    ]
    ylabel = rows[0]["metric"] if rows else "metric"
    return scatter(points, "trainable parameters (%)", ylabel, log_x=True)


def write_compare_report(path: Path, name: str, rows: list[dict], machine: dict) -> Path:
    header = [c.label for c in COLUMNS]
    if rows:
        header[1] = f"{rows[0]['metric']} ({rows[0]['split']})"
    body = [["-" if row.get(c.key) is None else row[c.key] for c in COLUMNS] for row in rows]
    parts = [
        f"<h1>graftwork compare: {html.escape(name)}</h1>",
        table(["", ""], [[k, v] for k, v in machine.items()]),
        table(header, body),
        *[f"<p>{html.escape(note)}</p>" for note in notes(rows)],
        compare_plot(rows),
    ]
    return write_page(path, f"compare: {name}", parts)
