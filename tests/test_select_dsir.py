"""`graft select --by dsir`: importance resampling over hashed n-grams finds the domain.

Quality on real text: 30 10-K paragraphs (every 200th of the shared corpus, so from many
filings) planted among the first 2,000 Multi30k captions, the task side 30 other 10-K
paragraphs (the ones 100 lines further on); K = 30. Mechanics: the seeded Gumbel draw, the
deterministic top-k, streaming, errors and the command's flags.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from typer.testing import CliRunner

from conftest import DATA, head
from graftwork.cli import app
from graftwork.data import dsir
from graftwork.errors import DataError, GraftError
from graftwork.runs.select import select

PLANTED = 30


def tenk() -> list[str]:
    lines = (DATA / "finance" / "sec10k_corpus.txt").read_text(encoding="utf-8").splitlines()
    return [line.strip() for line in lines if line.strip()]


@pytest.fixture(scope="module")
def planted(tmp_path_factory) -> tuple[Path, Path, set[int]]:
    """(pool, task file, the planted lines' numbers): one paragraph after every 66 captions."""
    paragraphs = tenk()
    captions = [line.strip() for line in head(DATA / "multi30k" / "train.en", 2000)]
    rows, marks = [], set()
    for i, caption in enumerate(captions):
        rows.append(caption)
        if i % 66 == 65 and len(marks) < PLANTED:
            rows.append(paragraphs[200 * len(marks)])
            marks.add(len(rows))
    folder = tmp_path_factory.mktemp("planted")
    (folder / "pool.txt").write_text("\n".join(rows) + "\n", encoding="utf-8")
    task = [paragraphs[200 * i + 100] for i in range(PLANTED)]
    (folder / "task.txt").write_text("\n".join(task) + "\n", encoding="utf-8")
    return folder / "pool.txt", folder / "task.txt", marks


def chosen(output: Path) -> list[int]:
    return [int(row.split("\t")[1]) for row in output.read_text(encoding="utf-8").splitlines()[1:]]


def precision(pool, task, marks, out: Path, **kwargs) -> float:
    select(pool, task, PLANTED, out, **kwargs)
    return len(marks.intersection(chosen(out))) / PLANTED


def test_dsir_finds_the_planted_10k_paragraphs_among_captions(planted, tmp_path):
    pool, task, marks = planted
    # measured 26 of 30 at seeds 0-2 (the misses: 10-K lines cut mid-sentence); tfidf 24 of 30
    assert precision(pool, task, marks, tmp_path / "top.tsv", by="dsir") >= 0.8


def test_dsir_finds_at_least_as_many_as_tfidf(planted, tmp_path, record_property):
    pool, task, marks = planted
    found = precision(pool, task, marks, tmp_path / "dsir.tsv", by="dsir", sample=False)
    baseline = precision(pool, task, marks, tmp_path / "tfidf.tsv", by="tfidf")
    record_property("precision", {"dsir": found, "tfidf": baseline})
    assert found >= baseline


def test_the_gumbel_draw_is_seeded(planted, tmp_path):
    pool, _, _ = planted
    like = tmp_path / "like.txt"  # captions like the pool's: weights close, so the draw matters
    like.write_text("".join(head(DATA / "multi30k" / "val.en", 100)), encoding="utf-8")
    draws = {}
    for name, seed in [("a", 1), ("b", 1), ("c", 2)]:
        select(pool, like, 50, tmp_path / f"{name}.tsv", seed=seed)
        draws[name] = (tmp_path / f"{name}.tsv").read_text(encoding="utf-8")
    assert draws["a"] == draws["b"] and draws["a"] != draws["c"]


def test_deterministic_keeps_the_highest_weights(planted, tmp_path):
    pool, task, _ = planted
    select(pool, task, 40, tmp_path / "top.tsv", sample=False)
    rows = [row.split("\t") for row in (tmp_path / "top.tsv").read_text().splitlines()[1:]]
    texts = [line.strip() for line in pool.read_text(encoding="utf-8").splitlines()]
    featurize = dsir.hasher()
    task_counts, _ = dsir.bucket_counts(featurize, [task.read_text().splitlines()], dsir.BUCKETS)
    pool_counts, _ = dsir.bucket_counts(featurize, [texts], dsir.BUCKETS)
    weights = dsir.weights(featurize, dsir.log_ratio(task_counts, pool_counts), texts)
    expected = np.argsort(-weights, kind="stable")[:40] + 1
    assert [int(r[1]) for r in rows] == expected.tolist()
    assert [float(r[0]) for r in rows] == pytest.approx(weights[expected - 1], abs=1e-5)


def test_sampling_streamed_in_small_chunks_equals_one_pass(planted, tmp_path):
    pool, task, _ = planted
    select(pool, task, 60, tmp_path / "one.tsv", chunk=100_000)
    select(pool, task, 60, tmp_path / "streamed.tsv", chunk=97)
    assert chosen(tmp_path / "one.tsv") == chosen(tmp_path / "streamed.tsv")


def test_an_empty_task_file_is_refused(planted, tmp_path):
    pool, _, _ = planted
    (tmp_path / "task.txt").write_text("\n\n", encoding="utf-8")
    with pytest.raises(DataError, match="no text found"):
        select(pool, tmp_path / "task.txt", 5, tmp_path / "top.txt")


@pytest.mark.parametrize("by", ["dsir", "tfidf"])
def test_a_top_larger_than_the_pool_is_refused_and_nothing_written(planted, tmp_path, by):
    _, task, _ = planted
    pool = tmp_path / "pool.txt"
    pool.write_text("a dog runs\n\na man sits\na dog runs\n", encoding="utf-8")
    with pytest.raises(DataError, match=r"--top 4: the pool .* has only 3 line"):
        select(pool, task, 4, tmp_path / "top.txt", by=by)
    with pytest.raises(DataError, match=r"--top 3: the pool .* has only 2 distinct line"):
        select(pool, task, 3, tmp_path / "top.txt", by=by)
    assert not (tmp_path / "top.txt").exists()


def test_score_max_is_refused_for_dsir(planted, tmp_path):
    pool, task, _ = planted
    with pytest.raises(GraftError, match="--score max is for --by tfidf or embedding"):
        select(pool, task, 5, tmp_path / "top.txt", by="dsir", score="max")


def test_graft_select_defaults_to_dsir_and_takes_its_flags(planted, tmp_path):
    pool, task, _ = planted
    args = ["select", "--pool", str(pool), "--like", str(task), "--top", "10"]
    out = tmp_path / "cli.tsv"
    flags = ["--deterministic", "--buckets", "5000", "--output", str(out)]
    result = CliRunner().invoke(app, [*args, *flags])
    assert result.exit_code == 0, result.output
    select(pool, task, 10, tmp_path / "api.tsv", by="dsir", sample=False, buckets=5000)
    assert out.read_text(encoding="utf-8") == (tmp_path / "api.tsv").read_text(encoding="utf-8")
