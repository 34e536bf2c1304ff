"""`graft compare`'s columns are defined once: the terminal table and report.html show the same
figures under one definition (`runs.compare_report.COLUMNS`)."""

from __future__ import annotations

import re

from graftwork.runs import compare
from graftwork.runs.compare_report import COLUMNS, write_compare_report
from graftwork.tasks.html import fmt

ROW = {
    "method": "lora",
    "metric": "accuracy",
    "split": "eval",
    "value": 0.8125,
    "trainable": 1234,
    "trainable_pct": 1.5,
    "examples_per_second": 50.0,
    "peak_rss_mb": 700.0,
    "training_rss_mb": 120.0,
    "peak_heap_mb": 300.0,
    "training_heap_mb": 40.0,
    "gpu_peak_mb": None,
    "bundle_mb": 90.0,
    "task_specific_mb": 1.25,
}


def test_the_terminal_table_is_the_reports_columns_in_the_reports_order():
    keys = [c.key for c in COLUMNS]
    shown = [key for key, _ in compare.COLUMNS]
    assert shown == [k for k in keys if k in shown]
    assert compare.cells(ROW) == [
        "lora",
        "0.8125",
        "1,234",
        "1.50",
        "50.0",
        "700",
        "120",
        "300",
        "1.25",
    ]


def test_the_report_has_every_column_with_a_dash_where_none_applies(tmp_path):
    page = write_compare_report(tmp_path / "report.html", "tiny", [ROW], {"cpu": "x"})
    cells = re.findall(r"<td>(.*?)</td>", page.read_text())
    assert cells[-len(COLUMNS) :] == [
        "-" if ROW[c.key] is None else fmt(ROW[c.key]) for c in COLUMNS
    ]
    assert "<th>accuracy (eval)</th>" in page.read_text()
