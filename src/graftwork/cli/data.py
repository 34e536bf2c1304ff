"""`graft select`, `graft augment`: data verbs over `graftwork.runs` (selection of task-like
text from a pool; back-translation of a recipe's training data).

Left out: an `augment:` recipe section (the verb writes a file that a recipe trains on).
"""

from __future__ import annotations

from pathlib import Path

import typer

from graftwork.cli import render
from graftwork.errors import GraftError
from graftwork.runs.augment import augment_recipe, generator_translator
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
    by: str = typer.Option(
        "dsir", "--by", help="dsir (n-gram importance weights), tfidf or embedding."
    ),
    score: str = typer.Option(
        "centroid", "--score", help="centroid (cosine to the task's mean) or max (nearest)."
    ),
    text: str = typer.Option("sentence", "--text", help="The --like table's text column."),
    chunk: int = typer.Option(10_000, "--chunk", min=1, help="Pool lines read at a time."),
    backbone: str = typer.Option("minilm-l6", "--backbone", help="--by embedding: the encoder."),
    batch_size: int = typer.Option(64, "--batch-size", min=1),
    max_length: int = typer.Option(128, "--max-length", min=8, help="--by embedding: tokens."),
    seed: int = typer.Option(0, "--seed", help="--by dsir: the Gumbel top-k draw."),
    deterministic: bool = typer.Option(
        False, "--deterministic", help="--by dsir: the K highest weights, no sampling."
    ),
    buckets: int = typer.Option(10_000, "--buckets", min=1, help="--by dsir: hashed n-grams."),
):
    """Keep the K pool lines most like a task's data (DSIR importance resampling over hashed
    n-grams, TF-IDF or embedding cosine).

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
        seed=seed,
        sample=not deterministic,
        buckets=buckets,
    )
    render.lines(
        [
            f"read {done.pool_lines:,} pool lines ({done.duplicates_skipped:,} duplicate(s) "
            f"skipped) in {done.seconds:.1f} s",
            f"wrote {done.written:,} to {done.output} (scores {done.best:.4f} … {done.worst:.4f})",
        ]
    )


def augment(
    recipe: Path = typer.Argument(..., help="The recipe whose data.train to augment."),
    back_translate: bool = typer.Option(
        False, "--back-translate", help="Augment by translating to --via and back."
    ),
    via: str = typer.Option(..., "--via", help="The pivot language, e.g. de (recorded)."),
    to_pivot: str = typer.Option(..., "--to-pivot", help="Model translating into --via."),
    from_pivot: str = typer.Option(..., "--from-pivot", help="Model translating back."),
    output: Path = typer.Option(..., "--output", help="TSV: the training rows + round trips."),
    min_similarity: float = typer.Option(0.3, help="Drop round trips less similar (meaning lost)."),
    max_similarity: float = typer.Option(0.95, help="Drop round trips more similar (near copies)."),
    batch_size: int = typer.Option(16, "--batch-size", min=1),
    max_new_tokens: int = typer.Option(None, "--max-new-tokens", min=1, help="Per translation."),
):
    """Augment a recipe's training data by back-translation; labels are kept.

    Example: graft augment recipes/quickstart.yaml --back-translate --via de --to-pivot
    runs/en-de/bundle --from-pivot runs/de-en/bundle --output runs/sst2-bt.tsv; then train
    with data.train=runs/sst2-bt.tsv."""
    if not back_translate:
        raise GraftError("graft augment: say how to augment (--back-translate)")
    counts = augment_recipe(
        recipe,
        output,
        generator_translator(to_pivot, batch_size, max_new_tokens),
        generator_translator(from_pivot, batch_size, max_new_tokens),
        via,
        min_similarity,
        max_similarity,
    )
    dropped = ", ".join(
        f"{counts[k]} {k.replace('_', ' ')}"
        for k in ("empty", "duplicate", "too_different", "too_similar")
    )
    render.lines(
        [
            f"sent {counts['sent']} text(s) through {counts['via']}; added {counts['added']} "
            f"(dropped: {dropped})",
            f"wrote {counts['training_examples'] + counts['added']} rows to {output}",
        ]
    )
