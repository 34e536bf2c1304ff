"""The packaged MiniLM on real data: quality checks that a tiny random model cannot make.

Marked slow (about a minute together on 2 cores); `make test` runs them.
"""

from __future__ import annotations

import pytest

import graftwork
from conftest import DATA
from graftwork.runs.finetune import train

pytestmark = pytest.mark.slow


def test_minilm_learns_sst2_sentiment_from_2000_examples(tmp_path):
    recipe = {
        "name": "real-sst2",
        "backbone": "minilm-l6",
        "task": {"type": "classification"},
        "data": {
            "train": str(DATA / "sst2" / "train.tsv"),
            "eval": str(DATA / "sst2" / "dev.tsv"),
            "max_train_examples": 2000,
        },
        "train": {"batch_size": 32, "lr": 1e-4, "seed": 13},
        "output_dir": str(tmp_path),
    }
    result = train(recipe)
    assert result.metrics["eval"]["examples"] == 872
    assert result.metrics["eval"]["accuracy"] >= 0.78  # chance is 0.51; a full epoch gives ~0.9
    answers = graftwork.load(result.bundle).predict(
        ["a warm , funny and moving film .", "a tedious , lifeless mess ."]
    )
    assert [a["label"] for a in answers] == ["1", "0"]


def test_minilm_finds_conll_entities_with_character_offsets(tmp_path):
    recipe = {
        "name": "real-conll",
        "backbone": "minilm-l6",
        "task": {"type": "ner"},
        "data": {
            "train": str(DATA / "conll2003" / "train.txt"),
            "eval": str(DATA / "conll2003" / "dev.txt"),
            "max_train_examples": 2500,
        },
        "train": {"batch_size": 32, "lr": 3e-4, "seed": 13},
        "output_dir": str(tmp_path),
    }
    result = train(recipe)
    assert result.metrics["eval"]["sentences"] == 3250
    assert result.metrics["eval"]["f1"] >= 0.6
    text = "Angela Merkel met Emmanuel Macron in Paris on Monday."
    entities = graftwork.load(result.bundle).predict([text])[0]["entities"]
    for entity in entities:
        assert text[entity["start"] : entity["end"]] == entity["text"]
    found = {(e["text"], e["type"]) for e in entities}
    assert ("Paris", "LOC") in found and ("Angela Merkel", "PER") in found
