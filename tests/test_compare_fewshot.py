"""`graft compare` with `fewshot` in the list: `graft fewshot` runs in its own process on a recipe
derived from the training recipe, and its rows (few-shot, zero-shot) are read from its run."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import yaml
from typer.testing import CliRunner

from conftest import tiny_recipe
from graftwork.cli import app
from graftwork.config.recipe import load_recipe
from graftwork.errors import GraftError, RecipeError
from graftwork.runs.compare import cells, compare, fewshot_recipe, notes, parse_lrs
from graftwork.runs.fewshot import fewshot, load_fewshot_recipe

NAMES = {"0": "negative", "1": "positive"}


def write(path: Path, recipe: dict) -> Path:
    path.write_text(yaml.safe_dump(recipe), encoding="utf-8")
    return path


def test_compare_runs_fewshot_beside_full_on_the_same_examples(tiny_bert, sst2_small, tmp_path):
    from transformers import BertModel

    recipe = tiny_recipe(tiny_bert, sst2_small, tmp_path / "runs")
    recipe["task"]["label_names"] = NAMES
    path = write(tmp_path / "tiny.yaml", recipe)
    over = ["data.max_train_examples=32", "fewshot.iterations=2", "train.log_every=1"]
    shown = CliRunner().invoke(app, ["compare", str(path), *over, "--methods", "full,fewshot"])
    assert shown.exit_code == 0, shown.output
    body = [line for line in shown.output.splitlines() if line.startswith("│")]
    assert len(body) == 3 and body[2].count(" - ") == 5  # zero-shot: only metric and trainable
    assert "fewshot: graft fewshot (SetFit)" in shown.output
    assert "zero-shot: the untuned encoder" in shown.output
    folder = tmp_path / "runs" / "tiny-compare"
    rows = json.loads((folder / "compare.json").read_text())["rows"]
    assert [r["method"] for r in rows] == ["full", "fewshot", "zero-shot"]
    full, few, zero = rows
    run = tmp_path / "runs" / "tiny-fewshot"
    assert few["run_dir"] == zero["run_dir"] == str(run)
    metrics = json.loads((run / "metrics.json").read_text())
    # the values are the run's own, on the same split and metric as full fine-tuning's
    assert few["metric"] == full["metric"] == "accuracy" and few["split"] == full["split"]
    assert few["value"] == metrics["eval"]["accuracy"]
    assert zero["value"] == metrics["zero_shot"]["eval"]["accuracy"]
    # the same 32 training examples as full (data.max_train_examples with train.seed)
    assert metrics["train"]["examples"] == 32
    full_metrics = json.loads((tmp_path / "runs" / "tiny-full" / "metrics.json").read_text())
    assert full_metrics["train"]["examples"] == 32
    # pairs: 2 rounds × 32 examples × (same, other), one pass; each pair is two texts, and the
    # head embeds the 32 examples once more
    assert metrics["train"]["pairs_seen"] == 128
    assert few["examples_seen"] == 2 * 128 + 32 and few["examples_per_second"] > 0
    encoder = sum(p.numel() for p in BertModel.from_pretrained(tiny_bert).parameters())
    assert few["trainable"] == encoder + 32 + 1  # the binary logistic head: 32 weights + bias
    assert few["trainable_pct"] == pytest.approx(100.0)
    assert few["peak_rss_mb"] >= few["rss_before_mb"] > 0 and few["seconds"] > 0
    assert few["bundle_mb"] > 0 and few["task_specific_mb"] == few["bundle_mb"]
    # zero-shot trained nothing: only the metric applies
    assert zero["trainable"] == 0 and zero["examples_per_second"] is None
    assert zero["bundle_mb"] is None and zero["peak_rss_mb"] is None
    assert cells(zero)[2:] == ["0", "0.00", "-", "-", "-", "-", "-"]
    assert [line.split(":")[0] for line in notes(rows)] == ["fewshot", "zero-shot"]
    # the derived recipe is kept: fewshot's own lr, the training recipe's seed and batch size
    derived = yaml.safe_load((folder / "fewshot.yaml").read_text())
    assert derived["train"]["lr"] == 2e-5 and derived["train"]["seed"] == 3
    assert derived["train"]["batch_size"] == 16 and derived["fewshot"]["iterations"] == 2
    report = (folder / "report.html").read_text()
    assert "<svg" in report and "zero-shot" in report


def test_a_token_task_refuses_fewshot_before_anything_trains(tiny_bert, conll_small, tmp_path):
    runs = tmp_path / "runs"
    path = write(tmp_path / "ner.yaml", tiny_recipe(tiny_bert, conll_small, runs, task="ner"))
    with pytest.raises(RecipeError) as found:
        compare(path, ["full", "fewshot"])
    message = str(found.value)
    assert f"graft compare {path}: --methods lists fewshot" in message
    assert "task.type ner" in message and "Remove fewshot from --methods" in message
    assert not runs.exists(), "something ran before the refusal"
    result = CliRunner().invoke(app, ["compare", str(path), "--methods", "full,fewshot"])
    assert isinstance(result.exception, RecipeError) and "task.type ner" in str(result.exception)


def test_the_derived_recipe_and_what_compare_refuses(tiny_bert, sst2_small, tmp_path):
    path = write(tmp_path / "r.yaml", tiny_recipe(tiny_bert, sst2_small, tmp_path / "runs"))
    recipe = load_recipe(path, ["train.max_minutes=3"])
    derived = fewshot_recipe(path, recipe, ["fewshot.zero_shot=false"], None, None)
    assert derived.name == "tiny-fewshot" and derived.fewshot.zero_shot is False
    assert derived.train.max_minutes == 3 and derived.train.epochs == 1
    budgeted = fewshot_recipe(path, recipe, [], 0.5, 3e-4)
    assert budgeted.train.max_minutes == 0.5 and budgeted.train.lr == 3e-4
    assert parse_lrs(["fewshot=1e-4"]) == {"fewshot": 1e-4}
    with pytest.raises(RecipeError, match="per_class would train few-shot alone"):
        compare(path, ["full", "fewshot"], ["fewshot.per_class=8"])
    with pytest.raises(GraftError, match="add fewshot to --methods"):
        compare(path, ["full"], ["fewshot.iterations=2"])
    pairs = tiny_recipe(tiny_bert, sst2_small, tmp_path / "runs")
    pairs["task"]["text_pair"] = "other"
    pair = write(tmp_path / "pair.yaml", pairs)
    with pytest.raises(RecipeError, match="sentence-pair task"):
        compare(pair, ["fewshot"])
    assert not (tmp_path / "runs").exists()


def test_a_relative_data_path_is_found_from_the_derived_recipe(tiny_bert, sst2_small, tmp_path):
    folder = tmp_path / "recipes"
    folder.mkdir()
    (folder / "train.tsv").write_bytes(sst2_small["train"].read_bytes())
    recipe = tiny_recipe(tiny_bert, {"train": "train.tsv", "eval": sst2_small["eval"]}, tmp_path)
    path = write(folder / "r.yaml", recipe)
    derived = fewshot_recipe(path, load_recipe(path), [], None, None)
    assert derived.data.train == str(folder / "train.tsv")


def test_max_minutes_stops_the_pair_loop_and_the_head_is_still_fitted(
    tiny_bert, sst2_small, tmp_path
):
    recipe = load_fewshot_recipe(
        {
            "name": "budget",
            "backbone": str(tiny_bert),
            "task": {"label_names": NAMES},
            "data": {"train": str(sst2_small["train"]), "eval": str(sst2_small["eval"])},
            "fewshot": {"per_class": 4, "iterations": 2, "zero_shot": False},
            "train": {"max_minutes": 1e-9, "threads": 1},
            "output_dir": str(tmp_path),
        }
    )
    metrics = fewshot(recipe)
    assert metrics["train"]["steps"] == 0 < metrics["train"]["planned_steps"]
    assert metrics["train"]["examples_seen"] == 8  # the head's embeddings only
    assert 0 <= metrics["eval"]["accuracy"] <= 1


def test_advise_points_few_examples_to_a_compare_with_fewshot():
    from graftwork.runs.advise import advise

    few = advise(examples=64, labels=4, latency_ms=50)
    assert any("--methods full,lora,fewshot" in reason for reason in few.reasons)
    many = advise(examples=60_000, labels=2, latency_ms=50)
    assert not any("fewshot" in reason for reason in many.reasons)
