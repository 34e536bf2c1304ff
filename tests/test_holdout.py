"""`data.holdout`: part of a training file held out as the eval split (data that ships without
one, e.g. GLUE MRPC here), and the F1 of a binary task's positive label, as GLUE scores MRPC."""

from __future__ import annotations

import json

import numpy as np
import pytest

from conftest import DATA, tiny_recipe
from graftwork.config.recipe import load_recipe
from graftwork.data.readers import read_examples
from graftwork.data.sampling import held_part, hold_out, train_part
from graftwork.errors import GraftError, RecipeError
from graftwork.runs.finetune import train
from graftwork.runs.stages import read_splits
from graftwork.tasks import classification

MRPC = DATA / "glue" / "mrpc" / "train.jsonl"


def test_hold_out_is_a_seeded_split_of_the_file_in_file_order():
    examples = [{"line": i} for i in range(1, 1001)]
    kept, held = hold_out(examples, 0.1, 0)
    assert len(held) == 100 and len(kept) == 900
    assert sorted(e["line"] for e in kept + held) == list(range(1, 1001))
    assert [e["line"] for e in held] == sorted(e["line"] for e in held)
    assert hold_out(examples, 0.1, 0) == (kept, held)
    assert hold_out(examples, 0.1, 1)[1] != held
    with pytest.raises(ValueError, match="leaves none to train on"):
        hold_out(examples[:1], 0.5, 0)


def test_mrpc_recipe_trains_on_the_kept_part_and_evaluates_on_the_rest():
    from transformers import AutoTokenizer

    from graftwork.backbones.load import resolve

    recipe = load_recipe("recipes/mrpc.yaml")
    tokenizer = AutoTokenizer.from_pretrained(resolve(recipe.backbone))
    splits = read_splits(recipe, tokenizer)
    held = splits.evals["eval"]
    assert len(splits.train.examples) == 3668 and len(held.examples) == 408  # GLUE's sizes
    assert "held out" in held.shown
    pairs = {(e["text"], e["text_pair"]) for e in splits.train.examples}
    assert not pairs & {(e["text"], e["text_pair"]) for e in held.examples}
    assert splits.labels == ["not_paraphrase", "paraphrase"]


def test_holdout_and_an_eval_file_together_are_refused():
    with pytest.raises(RecipeError, match="give one of them"):
        load_recipe("recipes/mrpc.yaml", ["data.eval=other.jsonl"])


def test_a_tiny_run_with_holdout_evaluates_on_the_held_part(tiny_bert, sst2_small, tmp_path):
    recipe = tiny_recipe(tiny_bert, sst2_small, tmp_path)
    recipe["data"] = {"train": str(sst2_small["train"]), "holdout": 0.25, "max_length": 32}
    result = train(recipe)
    metrics = json.loads((result.run_dir / "metrics.json").read_text())
    assert metrics["eval"]["examples"] == 200  # a quarter of the 800 training rows
    loaded = result.recipe
    rows = read_examples(sst2_small["train"], loaded.task, loaded.data).examples
    assert len(train_part(rows, loaded.data)) == 600
    assert len(held_part(rows, loaded.data)) == 200

    from graftwork.export import parity_examples
    from graftwork.inference.predictor import Predictor

    examples, shown = parity_examples(Predictor(result.bundle, backend="torch"), None, None)
    assert "held out" in shown
    assert [e["line"] for e in examples] == [e["line"] for e in held_part(rows, loaded.data)]


def test_back_translation_refuses_a_recipe_that_holds_out_part_of_its_training_file(tmp_path):
    from graftwork.runs.augment import augment_recipe

    recipe = load_recipe("recipes/quickstart.yaml", ["data.eval=null", "data.holdout=0.1"])
    with pytest.raises(GraftError, match="data.holdout"):
        augment_recipe(recipe, tmp_path / "out.tsv", None, None, via="de")
    assert not (tmp_path / "out.tsv").exists()


def test_binary_classification_reports_the_f1_of_its_second_label():
    names = {0: "not_paraphrase", 1: "paraphrase"}
    gold = [1, 1, 1, 0, 0]
    logits = [np.array(row) for row in ([0, 1], [0, 1], [1, 0], [0, 1], [1, 0])]
    scores = classification.evaluate([], [], logits, gold, names)
    # paraphrase: 2 found of 3, 2 of 3 predicted right: precision = recall = F1 = 2/3
    assert scores["f1"] == pytest.approx(2 / 3) and scores["f1_of"] == "paraphrase"
    three = classification.evaluate([], [], logits, [1, 2, 0, 0, 1], {0: "a", 1: "b", 2: "c"})
    assert "f1" not in three
