"""HTML pieces of the run report: tables and inline SVG plots (matplotlib, no network needed).

The tasks' `report_sections` are built from these, and so is the rest of the report
(`runs/report.py`); they live here, below both, so neither writes them twice.
Left out: the page itself and which sections it shows (`runs/report.py`).
"""

from __future__ import annotations

import html
import io


def pyplot():
    """matplotlib's pyplot on the file-only Agg backend (no display needed)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def svg(fig) -> str:
    """The figure as an inline `<svg>` element; the figure is closed."""
    buf = io.StringIO()
    fig.savefig(buf, format="svg", bbox_inches="tight")
    pyplot().close(fig)
    text = buf.getvalue()
    return text[text.index("<svg") :]


def table(header: list[str], rows: list[list]) -> str:
    head = "".join(f"<th>{html.escape(str(h))}</th>" for h in header)
    body = "".join(
        "<tr>" + "".join(f"<td>{html.escape(fmt(v))}</td>" for v in row) + "</tr>" for row in rows
    )
    return f"<table><tr>{head}</tr>{body}</table>"


def fmt(value) -> str:
    return f"{value:.4f}" if isinstance(value, float) else str(value)
