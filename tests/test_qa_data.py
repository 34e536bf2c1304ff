"""Extractive-QA data files refused for what is actually wrong with them: a shifted or negative
offset, a JSON object that is not SQuAD JSON, a question too long for its window (named with its
file)."""

from __future__ import annotations

import json

import pytest

from graftwork.errors import DataError
from graftwork.tasks import qa
from test_qa import GOOD, SQUAD, read, write


@pytest.mark.parametrize(
    ("start", "problem"),
    [
        (lambda start: start + 3, r"answers\[0\] .* is not inside its context at answer_start"),
        (lambda start: -5, r"answers\[0\] .*: answer_start -5 is negative"),
    ],
    ids=["shifted", "negative"],
)
def test_a_bad_answer_start_in_squad_json_is_named_with_its_question(tmp_path, start, problem):
    doc = json.loads((SQUAD / "dev.json").read_text(encoding="utf-8"))
    doc["data"] = doc["data"][:1]
    answer = doc["data"][0]["paragraphs"][0]["qas"][1]["answers"][0]
    answer["answer_start"] = start(answer["answer_start"])
    path = tmp_path / "edited.json"
    path.write_text(json.dumps(doc), encoding="utf-8")
    where = r"edited.json, data\[0\]\.paragraphs\[0\]\.qas\[1\] \(id .*\): "
    with pytest.raises(DataError, match=where + problem):
        read(path)


@pytest.mark.parametrize(
    "document",
    [{"version": "1.1", "articles": []}, {"question": "Who?", "context": "Ann.", "answers": []}],
)
def test_a_json_object_without_data_is_not_squad_json(tmp_path, document):
    path = tmp_path / "doc.json"
    path.write_text(json.dumps(document, indent=2), encoding="utf-8")  # one object, many lines
    with pytest.raises(
        DataError, match=r"doc.json: one JSON object, but not SQuAD JSON \(no 'data' list"
    ):
        read(path)


def test_a_json_lines_file_of_one_question_is_still_json_lines(tmp_path):
    [example] = read(write(tmp_path / "one.jsonl", [GOOD]))
    assert example["answers"] == [{"text": "Bob", "start": 8}]


def test_a_question_too_long_for_its_window_names_its_file(tiny_bert, tmp_path):
    from transformers import AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(tiny_bert)
    path = write(tmp_path / "long.jsonl", [GOOD, {**GOOD, "question": "why " * 200}])
    examples = read(path)
    with pytest.raises(DataError, match=r"long.jsonl, line 2: the question takes \d+ tokens"):
        qa.split_windows(tokenizer, examples, 128, 32)
