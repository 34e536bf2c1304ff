"""Few-shot classification (`graft fewshot`): sampling, SetFit pairs, the run, zero-shot.

Mechanics on the tiny BERT (loaded by sentence-transformers with mean pooling) and real SST-2
rows; one slow test reads zero-shot quality off the real MiniLM.
"""

from __future__ import annotations

from collections import Counter
from pathlib import Path

import numpy as np
import pytest
import torch
from typer.testing import CliRunner

import graftwork
from conftest import DATA, head
from graftwork.cli import app
from graftwork.errors import DataError, RecipeError
from graftwork.runs.fewshot import (
    FewshotModel,
    fewshot,
    load_encoder,
    load_fewshot_recipe,
    pairs,
    per_class,
    zero_shot_scores,
)

NAMES = {"0": "negative", "1": "positive"}


def recipe_for(backbone: Path | str, data: dict, out: Path, **fewshot_over) -> dict:
    return {
        "name": "tiny-fewshot",
        "backbone": str(backbone),
        "task": {"type": "classification", "label_names": NAMES},
        "data": {"train": str(data["train"]), "eval": str(data["eval"]), "max_length": 32},
        "fewshot": {"per_class": 8, "iterations": 2, **fewshot_over},
        "train": {"seed": 3, "log_every": 1, "lr": 1e-3, "threads": 1},
        "output_dir": str(out),
    }


def examples(labels: str) -> list[dict]:
    return [{"text": f"t{i}", "label": label} for i, label in enumerate(labels)]


def test_the_shipped_fewshot_recipes_validate_and_their_data_exist():
    recipes = sorted((Path(__file__).parents[1] / "recipes").glob("fewshot-*.yaml"))
    assert recipes
    for path in recipes:
        recipe = load_fewshot_recipe(path)
        for split in ("train", "eval", "test"):
            raw = getattr(recipe.data, split)
            assert raw is None or recipe.resolve_path(raw).is_file(), f"{path.name}: {split}"


def test_per_class_draws_n_of_each_label_in_file_order_and_repeats_for_a_seed():
    rows = examples("ab" * 20 + "c" * 5)
    picked = per_class(rows, 4, seed=1)
    assert Counter(r["label"] for r in picked) == {"a": 4, "b": 4, "c": 4}
    assert [int(r["text"][1:]) for r in picked] == sorted(int(r["text"][1:]) for r in picked)
    assert picked == per_class(rows, 4, seed=1) != per_class(rows, 4, seed=2)
    with pytest.raises(DataError, match=r"per_class is 6, but label\(s\) \{'c': 5\}"):
        per_class(rows, 6, seed=1)


def test_setfit_pairs_give_each_example_a_same_and_an_other_label_partner_per_round():
    labels = list("aabbbc")
    made = pairs(labels, rounds=3, seed=0)
    assert len(made) == 2 * 3 * len(labels) - 3  # c has no same-label partner
    for i, j, target in made:
        assert i != j and (labels[i] == labels[j]) == (target == 1.0)
    assert made == pairs(labels, rounds=3, seed=0) != pairs(labels, rounds=3, seed=1)


def test_ner_and_sentence_pairs_are_refused_with_what_to_do(tmp_path, sst2_small):
    recipe = recipe_for("minilm-l6", sst2_small, tmp_path)
    recipe["task"] = {"type": "ner"}
    with pytest.raises(RecipeError, match="For NER, fine-tune with graft train"):
        load_fewshot_recipe(recipe)
    recipe["task"] = {"type": "classification", "text_pair": "other"}
    with pytest.raises(RecipeError, match="no text_pair"):
        load_fewshot_recipe(recipe)


def test_zero_shot_sends_each_text_to_the_label_whose_description_it_is(tiny_bert, tmp_path):
    descriptions = {"negative": "dull , flat and far too long", "positive": "a gripping film"}
    recipe = load_fewshot_recipe(
        {
            "backbone": str(tiny_bert),
            "data": {"train": "x.tsv"},
            "fewshot": {"descriptions": descriptions},
        }
    )
    encoder = load_encoder(recipe)
    texts = [descriptions["positive"], descriptions["negative"]]
    scores = zero_shot_scores(encoder, texts, ["negative", "positive"], recipe)
    assert scores.argmax(axis=1).tolist() == [1, 0]
    assert np.diag(scores[:, ::-1]) == pytest.approx([1.0, 1.0], abs=1e-5)


@pytest.fixture(scope="module")
def run(tiny_bert, sst2_small, tmp_path_factory):
    out = tmp_path_factory.mktemp("fewshot")
    before = load_encoder(load_fewshot_recipe(recipe_for(tiny_bert, sst2_small, out)))
    metrics = fewshot(recipe_for(tiny_bert, sst2_small, out))
    return out / "tiny-fewshot", metrics, before


def test_the_run_tunes_the_encoder_fits_the_head_and_scores_eval(run):
    folder, metrics, before = run
    assert metrics["labels"] == ["negative", "positive"] and metrics["train_examples"] == 16
    assert metrics["train"]["pairs"] == 2 * 2 * 16
    assert len(metrics["train"]["loss_history"]) == 64 // 16  # batch 16: one epoch of pairs
    for key in ("eval", "zero_shot"):
        scores = metrics[key] if key == "eval" else metrics[key]["eval"]
        assert 0 <= scores["accuracy"] <= 1 and scores["examples"] == 200
    tuned = FewshotModel.load(folder / "bundle").encoder
    old = dict(before.named_parameters())
    moved = [n for n, p in tuned.named_parameters() if not torch.equal(p, old[n])]
    assert moved, "contrastive training changed no encoder weight"


def test_the_saved_bundle_predicts_as_the_run_scored(run, sst2_small):
    folder, metrics, _ = run
    model = graftwork.load(folder / "bundle")  # a bundle like any other (test_fewshot_bundle.py)
    rows = [line.rstrip("\n").split("\t") for line in head(sst2_small["eval"], 201)[1:]]
    predicted = [answer["label"] for answer in model.predict([text for _, text in rows])]
    accuracy = np.mean([p == NAMES[label] for p, (label, _) in zip(predicted, rows, strict=True)])
    assert accuracy == pytest.approx(metrics["eval"]["accuracy"], abs=1e-9)
    assert not list(folder.rglob(".*tmp*")), "a temporary write was left behind"


def test_a_seed_repeats_the_run(run, tiny_bert, sst2_small, tmp_path):
    _, metrics, _ = run
    again = fewshot(recipe_for(tiny_bert, sst2_small, tmp_path))
    assert again["train"]["loss_history"] == metrics["train"]["loss_history"]
    assert again["eval"]["accuracy"] == metrics["eval"]["accuracy"]


def test_graft_fewshot_prints_the_accuracies(tiny_bert, sst2_small, tmp_path):
    import yaml

    path = tmp_path / "fewshot.yaml"
    recipe = recipe_for(tiny_bert, sst2_small, tmp_path, iterations=1, zero_shot=False)
    path.write_text(yaml.safe_dump(recipe), encoding="utf-8")
    result = CliRunner().invoke(app, ["fewshot", str(path), "fewshot.per_class=4"])
    assert result.exit_code == 0, result.output
    assert "few-shot" in result.output and "zero-shot" not in result.output


@pytest.mark.slow
def test_minilm_zero_shot_reads_sst2_sentiment_from_label_descriptions(tmp_path):
    recipe = load_fewshot_recipe({"data": {"train": "x.tsv"}})
    rows = [line.rstrip("\n").split("\t") for line in head(DATA / "sst2" / "dev.tsv", 201)[1:]]
    recipe.fewshot.descriptions.update(
        {"0": "This review is negative.", "1": "This review is positive."}
    )
    scores = zero_shot_scores(load_encoder(recipe), [t for _, t in rows], ["0", "1"], recipe)
    accuracy = np.mean(
        [str(i) == label for i, (label, _) in zip(scores.argmax(1), rows, strict=True)]
    )
    assert accuracy > 0.6
