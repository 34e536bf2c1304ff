"""Every stage that reads a recipe's data names the file as the recipe writes it (`${VAR}`,
never the value from the environment): export, pruning, the compression chain's measurements,
EWC's task A, DANN's target. And `graft eval` counts the tags `data.iob: repair` rewrote."""

from __future__ import annotations

import shutil

import pytest

import graftwork
from conftest import DATA, conll_sentences, tiny_recipe
from graftwork.config.recipe import load_recipe
from graftwork.errors import DataError
from graftwork.export import parity_examples
from graftwork.inference.predictor import Predictor
from graftwork.objectives import ewc
from graftwork.objectives.dann import read_target
from graftwork.runs.compress import run_compress
from graftwork.runs.finetune import train
from graftwork.runs.prune import prune_bundle

BROKEN = "1\ta row\twith a third column\n"


@pytest.fixture(scope="module")
def private(tiny_bert, sst2_small, tmp_path_factory):
    """A bundle trained on data named through ${PRIVATE_DIR}."""
    folder = tmp_path_factory.mktemp("private-data")
    for split, name in (("train", "train.tsv"), ("eval", "dev.tsv")):
        shutil.copy(sst2_small[split], folder / name)
    data = {"train": "${PRIVATE_DIR}/train.tsv", "eval": "${PRIVATE_DIR}/dev.tsv"}
    out = tmp_path_factory.mktemp("private-run")
    recipe = tiny_recipe(tiny_bert, data, out)
    recipe["data"]["max_train_examples"] = 32
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("PRIVATE_DIR", str(folder))
        return folder, train(recipe).bundle


@pytest.fixture
def broken(private, tmp_path, monkeypatch):
    """${PRIVATE_DIR} is now a copy of the data with `broken(name)` given a bad last row."""
    folder, _ = private
    for file in folder.iterdir():
        shutil.copy(file, tmp_path / file.name)
    monkeypatch.setenv("PRIVATE_DIR", str(tmp_path))

    def breaking(name: str) -> str:
        lines = (tmp_path / name).read_text(encoding="utf-8").count("\n")
        with open(tmp_path / name, "a", encoding="utf-8") as fh:
            fh.write(BROKEN)
        return f"${{PRIVATE_DIR}}/{name}, line {lines + 1}: expected 2 columns"

    return breaking


def raises_shown(call, expected: str, secret) -> None:
    with pytest.raises(DataError) as error:
        call()
    assert expected in str(error.value) and str(secret) not in str(error.value)


def test_export_names_the_recipes_eval_file_as_written(private, broken, tmp_path):
    expected = broken("dev.tsv")
    predictor = Predictor(private[1], backend="torch")
    raises_shown(lambda: parity_examples(predictor, None, None), expected, tmp_path)


def test_pruning_names_the_recipes_training_file_as_written(private, broken, tmp_path):
    expected = broken("train.tsv")
    out = tmp_path / "pruned"
    raises_shown(lambda: prune_bundle(private[1], out, 0.5, 0.5), expected, tmp_path)


def test_the_compression_chain_names_the_eval_file_as_written(private, broken, tmp_path):
    expected = broken("dev.tsv")
    recipe = load_recipe(graftwork.load(private[1], backend="torch").manifest.recipe)
    raises_shown(lambda: run_compress(recipe, private[1]), expected, tmp_path)


def test_ewc_names_task_as_training_file_as_written(private, broken, tmp_path):
    expected = broken("train.tsv")
    predictor = Predictor(private[1], backend="torch")
    raises_shown(lambda: ewc.training_sample(predictor, 8, 0), expected, tmp_path)


def test_ewc_names_task_as_eval_file_as_written(private, broken, tmp_path):
    expected = broken("dev.tsv")
    raises_shown(lambda: ewc.forgetting(private[1], private[1]), expected, tmp_path)


def test_dann_names_its_target_file_as_written(tiny_bert, private, broken, tmp_path):
    expected = broken("dev.tsv")
    recipe = load_recipe(graftwork.load(private[1], backend="torch").manifest.recipe)
    recipe = load_recipe(
        {
            **recipe.model_dump(mode="json"),
            "objective": {"type": "dann", "target": "${PRIVATE_DIR}/dev.tsv"},
        }
    )
    tokenizer = graftwork.load(private[1], backend="torch").tokenizer
    raises_shown(lambda: read_target(recipe, recipe.objective, tokenizer), expected, tmp_path)


# graft eval and data.iob: repair -------------------------------------------------------------


def conlleval_style(text: str) -> tuple[str, int]:
    """IOB2 tags written as conlleval reads them (an entity after O starts with I-), and how
    many tags that changed."""
    out, changed, previous = [], 0, "O"
    for line in text.splitlines():
        fields = line.split()
        if fields and fields[-1].startswith("B-") and previous == "O":
            fields[-1] = "I-" + fields[-1][2:]
            line, changed = " ".join(fields), changed + 1
        previous = fields[-1] if fields else "O"
        out.append(line)
    return "\n".join(out) + "\n", changed


def test_eval_with_iob_repair_reports_the_repaired_tags(tiny_bert, conll_small, tmp_path):
    recipe = tiny_recipe(tiny_bert, conll_small, tmp_path, task="ner", train={"epochs": 0.2})
    predictor = graftwork.load(train(recipe).bundle)
    loose, changed = conlleval_style(conll_sentences(DATA / "conll2003" / "dev.txt", 50))
    path = tmp_path / "dev-conlleval.txt"
    path.write_text(loose, encoding="utf-8")
    assert changed > 10
    assert predictor.evaluate(path, iob="repair")["repaired_tags"] == changed
    assert "repaired_tags" not in predictor.evaluate(conll_small["eval"])  # strict: none
