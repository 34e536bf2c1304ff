"""`graft select`: data verbs over `graftwork.runs` (selection of task-like text from a pool).

Left out: the selection's own options beyond the common ones (the Python API,
`graftwork.runs.select.select`, takes the same arguments).
"""

from __future__ import annotations

from pathlib import Path

import typer

from graftwork.cli import render
from graftwork.runs.select import select as run_select


def select(
    pool: Path = typer.Option(..., "--pool", help="Unlabelled text, one sentence a line."),
    like: Path = typer.Option(
        ..., "--like", help="The task's data: .txt, or TSV/CSV/JSONL with a --text column."
    ),
    top: int = typer.Option(..., "--top", min=1, help="How many lines to keep."),
    output: Path = typer.Option(
        ..., "--output", help=".tsv: score, line, sentence; else sentences (+ FILE.scores.tsv)."
    ),
    by: str = typer.Option("tfidf", "--by", help="tfidf or embedding."),
    score: str = typer.Option(
        "centroid", "--score", help="centroid (cosine to the task's mean) or max (nearest)."
    ),
    text: str = typer.Option("sentence", "--text", help="The --like table's text column."),
    chunk: int = typer.Option(10_000, "--chunk", min=1, help="Pool lines read at a time."),
    backbone: str = typer.Option("minilm-l6", "--backbone", help="--by embedding: the encoder."),
    batch_size: int = typer.Option(64, "--batch-size", min=1),
    max_length: int = typer.Option(128, "--max-length", min=8, help="--by embedding: tokens."),
):
    """Keep the K pool lines most similar to a task's data (TF-IDF or embedding cosine).

    Example: graft select --pool sec10k_corpus.txt --like phrasebank_train.tsv --top 2000
    --output finance-top.txt; then pretrain on it (data.train: finance-top.txt)."""
    done = run_select(
        pool,
        like,
        top,
        output,
        by=by,
        score=score,
        text=text,
        chunk=chunk,
        backbone=backbone,
        batch_size=batch_size,
        max_length=max_length,
    )
    render.lines(
        [
            f"read {done.pool_lines:,} pool lines ({done.duplicates_skipped:,} duplicate(s) "
            f"skipped) in {done.seconds:.1f} s",
            f"wrote {done.written:,} to {done.output} (scores {done.best:.4f} … {done.worst:.4f})",
        ]
    )
