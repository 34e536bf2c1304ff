"""Recipe label options end to end on the tiny model: `task.label_names` reaches the bundle and
every consumer, `data.iob: repair` trains and evaluates on conlleval-style tags and counts them,
a training set with one label is refused before training, and data files are named as the
recipe writes them."""

from __future__ import annotations

import json

import pytest

import graftwork
from conftest import DATA, head, tiny_recipe
from graftwork.errors import DataError
from graftwork.runs.finetune import run, train
from graftwork.serve import ServedModel, make_config

NAMES = {0: "negative", 1: "positive"}


def test_label_names_reach_the_bundle_predictions_report_and_server(
    tiny_bert, sst2_small, tmp_path
):
    recipe = tiny_recipe(tiny_bert, sst2_small, tmp_path)
    recipe["task"]["label_names"] = NAMES
    result = run(recipe)
    assert json.loads((result.bundle / "graftwork.json").read_text())["labels"] == [
        "negative",
        "positive",
    ]
    config = json.loads((result.bundle / "config.json").read_text())
    assert config["id2label"] == {"0": "negative", "1": "positive"}
    assert result.metrics["eval"]["confusion"]["labels"] == ["negative", "positive"]
    assert "positive" in (result.run_dir / "report.html").read_text(encoding="utf-8")
    predictor = graftwork.load(result.bundle)
    assert {a["label"] for a in predictor.predict(["a fine film", "dull"])} <= {
        "negative",
        "positive",
    }
    # a labelled file in the raw spelling is read with the bundle's names
    assert predictor.evaluate(sst2_small["eval"])["examples"] == 200
    assert ServedModel("sst", predictor, make_config()).describe()["labels"] == [
        "negative",
        "positive",
    ]


def iob1(text: str) -> tuple[str, int]:
    """CoNLL text with each B-X that conlleval reads the same as I-X written I-X (an entity
    after O or after another type), and how many tags were rewritten."""
    out, changed, previous = [], 0, "O"
    for line in text.split("\n"):
        fields = line.split()
        if fields and fields[-1].startswith("B-") and previous[2:] != fields[-1][2:]:
            fields[-1] = "I-" + fields[-1][2:]
            line, changed = " ".join(fields), changed + 1
        previous = fields[-1] if fields else "O"
        out.append(line)
    return "\n".join(out), changed


def test_iob_repair_trains_and_evaluates_conlleval_style_data(tiny_bert, conll_small, tmp_path):
    text, changed = iob1(conll_small["eval"].read_text(encoding="utf-8"))
    loose = tmp_path / "dev-iob1.txt"
    loose.write_text(text, encoding="utf-8")
    data = {"train": conll_small["train"], "eval": loose}
    recipe = tiny_recipe(tiny_bert, data, tmp_path, task="ner")
    with pytest.raises(DataError, match="or set data.iob: repair to read it as conlleval does"):
        train(recipe)
    recipe["data"]["iob"] = "repair"
    result = train(recipe)
    assert changed > 50
    assert result.metrics["train"]["repaired_tags"] == {"train": 0, "eval": changed}
    written = json.loads((result.run_dir / "metrics.json").read_text())
    assert written["train"]["repaired_tags"]["eval"] == changed
    assert f"repaired {changed} tag(s) to IOB2" in (result.run_dir / "train.log").read_text()
    # the repaired file scores exactly as the IOB2 original does
    original = graftwork.load(result.bundle).evaluate(conll_small["eval"])
    assert result.metrics["eval"]["f1"] == original["f1"]


def test_a_training_set_with_one_label_is_refused_before_training(tiny_bert, tmp_path):
    rows = [line for line in head(DATA / "sst2" / "dev.tsv", 200)[1:] if line.startswith("1")]
    one = tmp_path / "positive.tsv"
    one.write_text("label\tsentence\n" + "".join(rows), encoding="utf-8")
    recipe = tiny_recipe(tiny_bert, {"train": one, "eval": one}, tmp_path)
    with pytest.raises(DataError, match=r"positive.tsv: the training data has one label only"):
        train(recipe)
    assert not (tmp_path / "tiny" / "bundle").exists()


def test_data_files_are_named_as_written_in_the_log(tiny_bert, sst2_small, tmp_path, monkeypatch):
    monkeypatch.setenv("PRIVATE_DIR", str(sst2_small["train"].parent))
    data = {"train": "${PRIVATE_DIR}/train.tsv", "eval": "${PRIVATE_DIR}/dev.tsv"}
    recipe = tiny_recipe(tiny_bert, data, tmp_path, train={"epochs": 0.1})
    result = train(recipe)
    log = (result.run_dir / "train.log").read_text(encoding="utf-8")
    assert "from ${PRIVATE_DIR}/train.tsv" in log
    assert str(sst2_small["train"].parent) not in log
