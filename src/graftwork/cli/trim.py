"""`graft trim`: keep only the vocabulary a user's corpora use (`graftwork.runs.trim`)."""

from __future__ import annotations

from pathlib import Path

import typer

from graftwork.cli import render
from graftwork.runs.trim import trim as run_trim


def trim(
    source: str = typer.Argument(..., help="Backbone (short name or folder) or bundle folder."),
    keep_from: list[Path] = typer.Option(
        ..., "--keep-from", help="Corpus file(s) whose pieces are kept; repeat per language."
    ),
    output: Path = typer.Option(..., "--output", help="Folder for the trimmed model."),
    fmt: str = typer.Option(
        "auto",
        "--format",
        help="conll: CoNLL files (WikiANN); auto: .txt, TSV, CSV, JSONL.",
    ),
    text: str = typer.Option("sentence", "--text", help="Tables: the text column."),
    overwrite: bool = typer.Option(
        False, "--overwrite", help="Replace an --output folder graftwork wrote (never others)."
    ),
):
    """Keep only the pieces (embedding rows) the corpora use, plus special tokens.

    Example: graft trim e5-small-multilingual --keep-from wikiann/en/train --keep-from
    wikiann/de/train --format conll --output e5-en-de; then backbone: e5-en-de in a recipe."""
    if fmt not in ("auto", "conll"):
        raise typer.BadParameter("--format is auto or conll")
    done = run_trim(source, keep_from, output, fmt=fmt, text=text, overwrite=overwrite)
    mb = 1 << 20
    render.lines(
        [
            f"kept {done.pieces_after:,} of {done.pieces_before:,} pieces "
            f"(from {done.corpus_texts:,} texts) in {done.seconds:.1f} s",
            f"parameters {done.parameters_before:,} → {done.parameters_after:,} "
            f"({done.parameters_after / done.parameters_before:.1%})",
            f"size {done.bytes_before / mb:,.1f} MB → {done.bytes_after / mb:,.1f} MB; "
            f"wrote the {done.kind} {done.output}",
        ]
    )
