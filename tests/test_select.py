"""Data selection (`graft select`): ranking, streaming, output formats and errors.

Quality on real text: a pool of real 10-K paragraphs with one film review planted in it, the
task's data the first SST-2 reviews; the review must come first (by the default, dsir, and by
tfidf; `test_select_dsir.py` has dsir's own tests). Mechanics (streaming equals
one pass, duplicates, ties, formats) on the same text and on the tiny BERT for embeddings.
"""

from __future__ import annotations

import sys
from pathlib import Path

import pytest
from typer.testing import CliRunner

from conftest import DATA, head
from graftwork.cli import app, main
from graftwork.errors import DataError, GraftError
from graftwork.runs.corpus import read_documents
from graftwork.runs.select import scores_path, select

PLANTED = "a gripping , funny and moving film , with a wonderful performance from its lead ."


@pytest.fixture(scope="module")
def pool(tmp_path_factory) -> Path:
    """300 real 10-K paragraphs, the planted review at line 150, and a blank line."""
    lines = head(DATA / "finance" / "sec10k_corpus.txt", 300)
    lines.insert(149, PLANTED + "\n")
    lines.insert(10, "\n")
    path = tmp_path_factory.mktemp("pool") / "pool.txt"
    path.write_text("".join(lines), encoding="utf-8")
    return path


@pytest.fixture(scope="module")
def small_pool(pool, tmp_path_factory) -> Path:
    """40 lines of the pool, the planted review among them (for the slower embedding runs)."""
    lines = pool.read_text(encoding="utf-8").splitlines(keepends=True)
    path = tmp_path_factory.mktemp("pool") / "small.txt"
    path.write_text("".join(lines[:20] + lines[140:160]), encoding="utf-8")
    return path


@pytest.fixture(scope="module")
def like(tmp_path_factory) -> Path:
    """The task's data: 200 SST-2 training rows (label, sentence)."""
    path = tmp_path_factory.mktemp("like") / "train.tsv"
    path.write_text("".join(head(DATA / "sst2" / "train.tsv", 201)), encoding="utf-8")
    return path


def table(path: Path) -> list[list[str]]:
    return [line.split("\t") for line in path.read_text(encoding="utf-8").splitlines()[1:]]


@pytest.mark.parametrize("score", ["centroid", "max"])
def test_tfidf_ranks_the_planted_relevant_sentence_first(pool, like, tmp_path, score):
    done = select(pool, like, 5, tmp_path / "top.tsv", by="tfidf", score=score)
    rows = table(tmp_path / "top.tsv")
    assert rows[0][2] == PLANTED and rows[0][1] == "151"  # its line in the pool file
    assert done.pool_lines == 301 and done.written == 5
    values = [float(r[0]) for r in rows]
    assert values == sorted(values, reverse=True) and values[0] > values[1]


@pytest.mark.parametrize("by", ["dsir", "tfidf", "embedding"])
def test_streaming_in_tiny_chunks_equals_one_pass(small_pool, like, tmp_path, tiny_bert, by):
    kwargs = {"by": by, "backbone": str(tiny_bert), "batch_size": 7, "max_length": 32}
    select(small_pool, like, 10, tmp_path / "one.tsv", chunk=100_000, **kwargs)
    select(small_pool, like, 10, tmp_path / "streamed.tsv", chunk=3, **kwargs)
    one, streamed = table(tmp_path / "one.tsv"), table(tmp_path / "streamed.tsv")
    assert [r[1:] for r in one] == [r[1:] for r in streamed]
    for a, b in zip(one, streamed, strict=True):
        assert float(a[0]) == pytest.approx(float(b[0]), abs=1e-5)


def test_duplicates_are_written_once_and_ties_keep_the_earlier_line(like, tmp_path):
    path = tmp_path / "pool.txt"
    path.write_text(f"the market fell\n{PLANTED}\nshares rose\n{PLANTED}\n", encoding="utf-8")
    done = select(path, like, 3, tmp_path / "top.tsv", by="tfidf")
    rows = table(tmp_path / "top.tsv")
    assert [r[2] for r in rows].count(PLANTED) == 1 and rows[0][1] == "2"
    assert done.duplicates_skipped == 1 and done.written == 3


def test_plain_text_output_reads_as_pretraining_text_with_scores_beside(pool, like, tmp_path):
    out = tmp_path / "sel" / "top.txt"
    select(pool, like, 4, out)
    documents = read_documents(out, "sentence", header=True)
    assert len(documents) == 4 and documents[0] == PLANTED
    scores = table(scores_path(out))
    assert [r[1] for r in scores][0] == "151" and len(scores) == 4
    tsv = tmp_path / "top.tsv"
    select(pool, like, 4, tsv)
    assert read_documents(tsv, "sentence", header=True) == documents  # pretrain's TSV reader
    assert not list(tmp_path.rglob(".*tmp*")), "a temporary file was left behind"


def test_a_pool_line_that_is_not_utf8_is_named(like, tmp_path):
    path = tmp_path / "pool.txt"
    path.write_bytes(b"fine\nbad \xff byte\n")
    with pytest.raises(DataError, match=r"line 2: byte 0xff at column 5 is not UTF-8"):
        select(path, like, 1, tmp_path / "top.txt")


def test_bad_arguments_say_what_is_allowed(pool, like, tmp_path):
    with pytest.raises(GraftError, match="--by 'bm25': choose one of dsir, tfidf, embedding"):
        select(pool, like, 1, tmp_path / "top.txt", by="bm25")
    with pytest.raises(DataError, match="is not a file"):
        select(tmp_path / "missing.txt", like, 1, tmp_path / "top.txt")


def test_graft_select_writes_the_file(pool, like, tmp_path):
    out = tmp_path / "top.txt"
    args = ["select", "--pool", str(pool), "--like", str(like), "--top", "3"]
    result = CliRunner().invoke(app, [*args, "--output", str(out)])
    assert result.exit_code == 0, result.output
    assert "wrote 3" in result.output
    assert out.read_text(encoding="utf-8").splitlines()[0] == PLANTED


def graft_main(monkeypatch, capsys, *args: str) -> tuple[int, str]:
    """`graft ARGS` as the console script runs it: (exit status, what it printed to stderr)."""
    monkeypatch.setattr(sys, "argv", ["graft", *args])
    with pytest.raises(SystemExit) as exited:
        main()
    return exited.value.code, capsys.readouterr().err


def test_an_output_that_is_a_folder_is_refused_before_scoring(
    pool, like, tmp_path, monkeypatch, capsys
):
    args = ["select", "--pool", str(pool), "--like", str(like), "--top", "3"]
    status, said = graft_main(monkeypatch, capsys, *args, "--output", str(tmp_path))
    assert status == 2 and "Traceback" not in said
    assert f"--output {tmp_path} is a folder" in said


@pytest.mark.parametrize("which", ["pool", "like"])
def test_an_output_that_is_an_input_is_refused(pool, like, tmp_path, which):
    copies = {"pool": tmp_path / "pool.txt", "like": tmp_path / "like.txt"}
    copies["pool"].write_bytes(pool.read_bytes())
    copies["like"].write_bytes(like.read_bytes())
    before = copies[which].read_bytes()
    with pytest.raises(GraftError, match=f"is the --{which} file"):
        select(copies["pool"], copies["like"], 3, copies[which])
    assert copies[which].read_bytes() == before


def test_an_output_under_a_file_is_refused(pool, like, tmp_path):
    (tmp_path / "file").write_text("x")
    with pytest.raises(GraftError, match="is not a folder"):
        select(pool, like, 3, tmp_path / "file" / "top.txt")


@pytest.mark.slow
def test_minilm_embeddings_rank_the_planted_review_first(small_pool, like, tmp_path):
    select(small_pool, like, 3, tmp_path / "top.tsv", by="embedding", chunk=16, max_length=64)
    assert table(tmp_path / "top.tsv")[0][2] == PLANTED
