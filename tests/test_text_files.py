"""Plain text files (one item a line) outside the data readers: `--input` (see test_cli),
DANN's target text, a pretraining corpus, distillation's unlabelled texts, vocabulary terms.
Each is read as UTF-8 with or without a byte-order mark, and a file that is not UTF-8 text is
a located error, not a UnicodeDecodeError."""

from __future__ import annotations

from types import SimpleNamespace

import pytest

from conftest import tiny_recipe
from graftwork import registry
from graftwork.backbones.load import load_tokenizer
from graftwork.config.recipe import load_recipe
from graftwork.data.text import text_lines
from graftwork.errors import DataError
from graftwork.objectives.dann import read_target
from graftwork.runs.corpus import read_documents
from graftwork.runs.distill import _pseudo_labelled
from graftwork.runs.vocab import read_terms

BOM = "\ufeff"


def with_bom(path, text: str):
    path.write_text(text, encoding="utf-8-sig")
    assert path.read_bytes().startswith(b"\xef\xbb\xbf")
    return path


def test_a_byte_order_mark_is_not_part_of_the_first_line(tmp_path):
    path = with_bom(tmp_path / "t.txt", "first\r\nsecond\n")
    assert text_lines(path) == ["first", "second"]


def test_a_byte_that_is_not_utf8_is_named_with_its_line_and_column(tmp_path):
    path = tmp_path / "latin1.txt"
    path.write_bytes("fine\ncafé au lait\n".encode("latin-1"))
    with pytest.raises(DataError) as error:
        text_lines(path, "corpus.txt", "one document a line")
    assert str(error.value) == (
        "corpus.txt, line 2: byte 0xe9 at column 4 is not UTF-8. Re-save the file as UTF-8 "
        "(one document a line)"
    )


def test_a_binary_file_is_said_to_be_binary(tmp_path):
    path = tmp_path / "model.bin"
    path.write_bytes(b"\x00\x01\x02\n\x80abc")
    with pytest.raises(
        DataError,
        match=r"model.bin, line 2: byte 0x80 at column 1 is not UTF-8; "
        "it looks like a binary file, not text",
    ):
        text_lines(path)


def test_vocabulary_terms_with_a_byte_order_mark(tmp_path):
    assert read_terms(with_bom(tmp_path / "terms.txt", "angiogenesis\nstent\n")) == [
        "angiogenesis",
        "stent",
    ]


def test_a_pretraining_corpus_with_a_byte_order_mark(tmp_path):
    corpus = with_bom(tmp_path / "corpus.txt", "One document.\n\nAnother one.\n")
    assert read_documents(corpus, "text", header=True) == ["One document.", "Another one."]


def test_unlabelled_texts_for_distillation_with_a_byte_order_mark(tmp_path):
    texts = with_bom(tmp_path / "unlabelled.txt", "a fine film\na dull film\n")
    teacher = SimpleNamespace(
        task=registry.task("classification"), predict=lambda t: [{"label": "1"}] * len(t)
    )
    examples = _pseudo_labelled(teacher, str(texts))
    assert [e["text"] for e in examples] == ["a fine film", "a dull film"]


def test_dann_target_text_with_a_byte_order_mark(tiny_bert, sst2_small, tmp_path, monkeypatch):
    target = with_bom(tmp_path / "target.txt", "a fine film\na dull film\n")
    recipe = tiny_recipe(tiny_bert, sst2_small, tmp_path)
    recipe["objective"] = {"type": "dann", "target": str(target), "target_format": "text"}
    recipe = load_recipe(recipe)
    read = []
    monkeypatch.setattr(
        "graftwork.data.sampling.subsample", lambda examples, *_: read.extend(examples) or examples
    )
    tokenizer = load_tokenizer(tiny_bert, recipe.backbone)
    assert len(read_target(recipe, recipe.objective, tokenizer)) == 2
    assert [e["text"] for e in read] == ["a fine film", "a dull film"]
    assert not any(BOM in e["text"] for e in read)
