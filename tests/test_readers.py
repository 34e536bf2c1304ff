"""Readers: real files read right; bad rows give located, actionable errors (or are skipped);
labels spelled one way, IOB2 checked or repaired, names from the recipe applied as read."""

from __future__ import annotations

import pytest

from conftest import DATA
from graftwork.config.recipe import DataConfig, TaskConfig
from graftwork.data.labels import check_training_labels, iob2_problem
from graftwork.data.readers import read_examples
from graftwork.errors import DataError
from graftwork.tasks import classification, ner

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


# ---------------------------------------------------------------- IOB2: strict or repaired

# WNUT-17's layout (token<TAB>tag) and its looser IOB: an entity may start with I-X after O or
# after another type, as conlleval reads it
WNUT = (
    "@paul\tO\nwatching\tO\nStar\tI-creative-work\nWars\tI-creative-work\n\n"
    "Justin\tB-person\nBieber\tI-person\nBaby\tI-creative-work\ntonight\tO\n\n"
    "in\tO\nNew\tB-location\nYork\tI-location\n"
)


def test_strict_iob_refuses_wnut_style_tags_naming_the_repair_option(tmp_path):
    path = write(tmp_path, "dev.conll", WNUT)
    with pytest.raises(DataError) as err:
        read_examples(path, NER, DataConfig())
    assert (
        "dev.conll, line 3: tag 'I-creative-work' follows 'O'; IOB2 starts an entity with "
        "B-creative-work (or set data.iob: repair to read it as conlleval does)"
    ) in str(err.value)


def test_repair_reads_tags_as_conlleval_does_and_counts_them(tmp_path):
    from seqeval.metrics.sequence_labeling import get_entities  # conlleval's reading
    from seqeval.scheme import IOB2, Entities

    path = write(tmp_path, "dev.conll", WNUT)
    result = read_examples(path, NER, DataConfig(iob="repair"))
    assert [e["tags"] for e in result.examples] == [
        ["O", "O", "B-creative-work", "I-creative-work"],
        ["B-person", "I-person", "B-creative-work", "O"],
        ["O", "B-location", "I-location"],
    ]
    assert result.repaired == 2
    # the same entities as conlleval's reading of the raw tags, now under strict IOB2
    for block, example in zip(WNUT.split("\n\n"), result.examples, strict=True):
        raw = [line.split("\t")[1] for line in block.splitlines()]
        strict = Entities([example["tags"]], IOB2).entities[0]
        assert get_entities(raw) == [(e.tag, e.start, e.end - 1) for e in strict]


def test_repair_rewrites_json_lines_tags_too(tmp_path):
    record = '{"tokens": ["Star", "Wars", "rocks"], "tags": ["I-work", "I-work", "O"]}\n'
    result = read_examples(write(tmp_path, "x.jsonl", record), NER, DataConfig(iob="repair"))
    assert result.examples[0]["tags"] == ["B-work", "I-work", "O"] and result.repaired == 1


def test_repair_leaves_iob2_data_as_it_is():
    strict = read_examples(DATA / "conll2003" / "dev.txt", NER, DataConfig())
    repaired = read_examples(DATA / "conll2003" / "dev.txt", NER, DataConfig(iob="repair"))
    assert repaired.repaired == 0 and repaired.examples == strict.examples


# ---------------------------------------------------------------- byte-order marks

BOM = b"\xef\xbb\xbf"


def test_a_byte_order_mark_is_not_part_of_the_data(tmp_path):
    sst2 = (DATA / "sst2" / "dev.tsv").read_bytes()
    with_bom = read_examples(write(tmp_path, "dev.tsv", BOM + sst2), CLS, DataConfig())
    assert with_bom.examples == read_examples(DATA / "sst2" / "dev.tsv", CLS, DataConfig()).examples
    jsonl = write(tmp_path, "x.jsonl", BOM + b'{"sentence": "ok", "label": 1}\n')
    assert read_examples(jsonl, CLS, DataConfig()).examples[0]["text"] == "ok"
    conll = write(tmp_path, "x.txt", BOM + b"EU B-ORG\nrejects O\n")
    assert read_examples(conll, NER, DataConfig()).examples[0]["tokens"] == ["EU", "rejects"]


# ---------------------------------------------------------------- JSON-lines label values


def test_json_labels_1_and_quoted_1_and_1_0_are_one_label(tmp_path):
    lines = [
        '{"sentence": "a", "label": 1}',
        '{"sentence": "b", "label": "1"}',
        '{"sentence": "c", "label": 1.0}',
        '{"sentence": "d", "label": 0}',
        '{"sentence": "e", "label": -0.0}',
    ]
    result = read_examples(write(tmp_path, "x.jsonl", "\n".join(lines)), CLS, DataConfig())
    assert [e["label"] for e in result.examples] == ["1", "1", "1", "0", "0"]
    assert classification.label_set(result.examples) == ["0", "1"]


def test_json_labels_of_kinds_that_cannot_be_reconciled_are_refused_with_the_line(tmp_path):
    lines = ['{"sentence": "a", "label": true}', '{"sentence": "b", "label": "yes"}']
    path = write(tmp_path, "x.jsonl", "\n".join(lines))
    with pytest.raises(DataError) as err:
        read_examples(path, CLS, DataConfig())
    assert "x.jsonl, line 2: label 'yes' (text) mixes with label 'True' (true/false, line 1)" in (
        str(err.value)
    )
    assert "Give every label in one form" in str(err.value)


# ---------------------------------------------------------------- CoNLL tag column


def test_a_conll_line_without_its_tag_column_is_a_located_error(tmp_path):
    path = write(tmp_path, "x.txt", "EU B-ORG\nrejects O\nO\n")  # the token "O", no tag
    with pytest.raises(DataError) as err:
        read_examples(path, NER, DataConfig())
    message = str(err.value)
    assert "x.txt, line 3: no tag: the line has 1 column(s), so data.tag_column (-1)" in message
    with pytest.raises(DataError, match=r"line 1: no tag in data.tag_column \(2\)"):
        read_examples(path, NER, DataConfig(tag_column=2))


def test_unlabelled_conll_text_needs_no_tag_column(tmp_path):
    path = write(tmp_path, "x.txt", "EU\nrejects\n\nPeter\n")
    result = read_examples(path, NER, DataConfig(), require_labels=False)
    assert [e["tokens"] for e in result.examples] == [["EU", "rejects"], ["Peter"]]


# ---------------------------------------------------------------- label names, one label


def test_label_names_rename_labels_as_read_and_keep_the_raw_order(tmp_path):
    path = write(tmp_path, "x.tsv", "label\tsentence\n1\tfine\n0\tbad\n2\tso so\n")
    task = TaskConfig(label_names={1: "negative", 0: "positive"})  # raw order 0, 1, 2
    result = read_examples(path, task, DataConfig())
    assert [e["label"] for e in result.examples] == ["negative", "positive", "2"]
    names = task.label_names
    assert classification.label_set(result.examples, names) == ["positive", "negative", "2"]
    check_training_labels(["positive", "negative", "2"], names, "x.tsv")  # all keys found


def test_label_names_for_labels_training_lacks_are_refused():
    dev = read_examples(DATA / "sst2" / "dev.tsv", CLS, DataConfig())
    names = {"0": "negative", "1": "positive", "2": "neutral"}
    with pytest.raises(DataError, match=r"names label\(s\) '2', which the training data does not"):
        check_training_labels(classification.label_set(dev.examples, names), names, "dev.tsv")


def test_an_unnamed_label_spelled_like_a_name_is_refused(tmp_path):
    path = write(tmp_path, "x.tsv", "label\tsentence\n0\tfine\n1\tbad\n")
    with pytest.raises(DataError, match="x.tsv, line 3: label '1' has no name in task.label_names"):
        read_examples(path, TaskConfig(label_names={0: "1"}), DataConfig())


def test_training_data_with_one_label_only_is_refused(tmp_path):
    dev = read_examples(DATA / "sst2" / "dev.tsv", CLS, DataConfig())
    positive = [e for e in dev.examples if e["label"] == "1"]
    with pytest.raises(DataError, match=r"dev.tsv: the training data has one label only \('1'\)"):
        check_training_labels(classification.label_set(positive), {}, "dev.tsv")
    untagged = write(tmp_path, "o.txt", "EU O\nrejects O\n")
    tags = ner.label_set(read_examples(untagged, NER, DataConfig()).examples)
    with pytest.raises(DataError, match=r"o.txt: the training data has one label only \('O'\)"):
        check_training_labels(tags, {}, "o.txt")


def test_messages_name_the_file_as_shown(tmp_path):
    shown = "${SECRET_DIR}/x.tsv"
    with pytest.raises(DataError, match=r"data file \$\{SECRET_DIR\}/x.tsv does not exist"):
        read_examples(tmp_path / "x.tsv", CLS, DataConfig(), shown=shown)
    path = write(tmp_path, "x.tsv", "label\tsentence\n1\t\n")
    with pytest.raises(DataError) as err:
        read_examples(path, CLS, DataConfig(), shown=shown)
    assert f"{shown}, line 2: empty text" in str(err.value) and str(tmp_path) not in str(err.value)
    with pytest.raises(DataError, match=r"\$\{SECRET_DIR\}/x.tsv: no examples found"):
        read_examples(path, CLS, DataConfig(on_bad_rows="skip"), shown=shown)
