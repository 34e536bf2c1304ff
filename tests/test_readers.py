"""Readers: real files read right; bad rows give located, actionable errors (or are skipped)."""

from __future__ import annotations

import pytest

from conftest import DATA
from graftwork.config.recipe import DataConfig, TaskConfig
from graftwork.data.readers import iob2_problem, read_examples
from graftwork.errors import DataError

CLS = TaskConfig(type="classification", text="sentence", label="label")
NER = TaskConfig(type="ner")


def write(tmp_path, name: str, content: str | bytes):
    path = tmp_path / name
    path.write_bytes(content if isinstance(content, bytes) else content.encode("utf-8"))
    return path


def test_reads_the_whole_sst2_files():
    dev = read_examples(DATA / "sst2" / "dev.tsv", CLS, DataConfig())
    assert len(dev.examples) == 872
    assert {e["label"] for e in dev.examples} == {"0", "1"}
    assert len(read_examples(DATA / "sst2" / "train.tsv", CLS, DataConfig()).examples) == 67349


def test_tsv_takes_quotes_literally(tmp_path):
    path = write(tmp_path, "q.tsv", 'label\tsentence\n1\tthe "best" film\n0\t"unclosed\n')
    texts = [e["text"] for e in read_examples(path, CLS, DataConfig()).examples]
    assert texts == ['the "best" film', '"unclosed']


def test_reads_conll2003_and_wikiann_column_layouts():
    conll = read_examples(DATA / "conll2003" / "test.txt", NER, DataConfig())
    assert len(conll.examples) == 3453
    first = conll.examples[0]
    assert len(first["tokens"]) == len(first["tags"]) and first["line"] == 1
    wikiann = read_examples(DATA / "wikiann" / "de" / "dev", NER, DataConfig())
    assert len(wikiann.examples) == 10000
    assert {t[2:] for e in wikiann.examples for t in e["tags"] if t != "O"} == {"PER", "ORG", "LOC"}


def test_numbered_columns_without_header(tmp_path):
    path = write(tmp_path, "x.tsv", "good film\tpos\nbad film\tneg\n")
    task = TaskConfig(text="0", label="1")
    result = read_examples(path, task, DataConfig(header=False))
    assert [(e["text"], e["label"]) for e in result.examples] == [
        ("good film", "pos"),
        ("bad film", "neg"),
    ]


def test_csv_with_quoted_commas_and_jsonl(tmp_path):
    csv_path = write(tmp_path, "x.csv", 'text,label\n"fine, really",1\nawful,0\n')
    result = read_examples(csv_path, TaskConfig(text="text"), DataConfig())
    assert [e["text"] for e in result.examples] == ["fine, really", "awful"]
    jsonl = write(
        tmp_path, "x.jsonl", '{"sentence": "ok", "label": 1}\n\n{"sentence": "no", "label": 0}\n'
    )
    assert [e["label"] for e in read_examples(jsonl, CLS, DataConfig()).examples] == ["1", "0"]


@pytest.mark.parametrize(
    ("content", "expected"),
    [
        (
            "label\tsentence\n1\tfine\n0\ttoo\tmany\n",
            "line 3: expected 2 columns (label, sentence), found 3",
        ),
        ("label\tsentence\n1\tfine\n0\n", "line 3: expected 2 columns (label, sentence), found 1"),
        ("label\tsentence\n1\t   \n", "line 2: empty text"),
        ("label\tsentence\n\tfine\n", "line 2: empty label"),
        ("label\ttext\n1\tfine\n", "no column 'sentence' for the text"),
    ],
)
def test_bad_table_rows_name_file_line_and_problem(tmp_path, content, expected):
    path = write(tmp_path, "bad.tsv", content)
    with pytest.raises(DataError) as err:
        read_examples(path, CLS, DataConfig())
    assert str(path) in str(err.value) and expected in str(err.value)


def test_non_utf8_bytes_are_located(tmp_path):
    path = write(tmp_path, "latin1.tsv", b"label\tsentence\n1\tfine\n0\tna\xefve\n")
    with pytest.raises(DataError, match=r"line 3: not valid UTF-8 \(byte 0xef at column 5\)"):
        read_examples(path, CLS, DataConfig())


def test_skip_mode_drops_and_counts_bad_rows(tmp_path):
    path = write(
        tmp_path, "bad.tsv", b"label\tsentence\n1\tfine\n0\ttoo\tmany\n1\t\n0\tna\xefve\n1\tgood\n"
    )
    result = read_examples(path, CLS, DataConfig(on_bad_rows="skip"))
    assert [e["text"] for e in result.examples] == ["fine", "good"]
    assert len(result.skipped) == 3 and "line 3" in result.skipped[0]


@pytest.mark.parametrize(
    ("tags", "problem"),
    [
        (["O", "I-PER"], "tag 'I-PER' follows 'O'"),
        (["B-ORG", "I-PER"], "tag 'I-PER' follows 'B-ORG'"),
        (["B-PER", "X"], "tag 'X' is not O, B-TYPE or I-TYPE"),
    ],
)
def test_invalid_iob2_sequences(tags, problem):
    assert problem in iob2_problem(tags)[1]
    assert iob2_problem(["B-PER", "I-PER", "O", "B-LOC"]) is None


def test_invalid_iob_in_a_file_names_the_tag_line(tmp_path):
    path = write(tmp_path, "bad.txt", "EU B-ORG\nrejects O\n\nPeter O\nBlackburn I-PER\n")
    with pytest.raises(DataError, match=r"bad.txt, line 5: tag 'I-PER' follows 'O'"):
        read_examples(path, NER, DataConfig())
    skipped = read_examples(path, NER, DataConfig(on_bad_rows="skip"))
    assert len(skipped.examples) == 1 and len(skipped.skipped) == 1


def test_missing_file_and_empty_file(tmp_path):
    with pytest.raises(DataError, match="does not exist"):
        read_examples(tmp_path / "nope.tsv", CLS, DataConfig())
    with pytest.raises(DataError, match="empty"):
        read_examples(write(tmp_path, "empty.tsv", ""), CLS, DataConfig())
