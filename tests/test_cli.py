"""The `graft` command: each verb on a tiny bundle, JSON lines out, errors without tracebacks."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest
import yaml
from typer.testing import CliRunner

from conftest import tiny_recipe
from graftwork.cli import app

runner = CliRunner()


@pytest.fixture(scope="module")
def bundle(tiny_bert, sst2_small, tmp_path_factory):
    folder = tmp_path_factory.mktemp("cli")
    recipe = folder / "r.yaml"
    recipe.write_text(yaml.safe_dump(tiny_recipe(tiny_bert, sst2_small, folder)))
    result = runner.invoke(app, ["run", str(recipe), "train.epochs=0.5", "name=cli"])
    assert result.exit_code == 0, result.output
    assert "cli: results" in result.output and "accuracy" in result.output
    return folder / "cli" / "bundle"


def test_predict_writes_one_json_line_per_text(bundle, tmp_path):
    result = runner.invoke(
        app, ["predict", str(bundle), "a fine film", "a dull film", "--top-k", "2"]
    )
    assert result.exit_code == 0, result.output
    lines = [json.loads(line) for line in result.stdout.splitlines()]
    assert [line["text"] for line in lines] == ["a fine film", "a dull film"]
    assert all(line["label"] in ("0", "1") and len(line["top_k"]) == 2 for line in lines)
    inputs = tmp_path / "in.jsonl"
    inputs.write_text('{"text": "one"}\n{"text": "two"}\n{"text": "three"}\n')
    result = runner.invoke(app, ["predict", str(bundle), "--input", str(inputs)])
    assert [json.loads(line)["text"] for line in result.stdout.splitlines()] == [
        "one",
        "two",
        "three",
    ]


def test_eval_prints_metrics_per_file(bundle, sst2_small):
    result = runner.invoke(app, ["eval", str(bundle), "--data", str(sst2_small["eval"]), "--json"])
    assert result.exit_code == 0, result.output
    metrics = json.loads(result.stdout)[str(sst2_small["eval"])]
    manifest = json.loads((bundle / "graftwork.json").read_text())
    assert metrics["accuracy"] == manifest["metrics"]["eval"]["accuracy"]


def test_info_shows_task_labels_and_files(bundle):
    result = runner.invoke(app, ["info", str(bundle)])
    assert result.exit_code == 0, result.output
    assert "task: classification" in result.output and "labels: 0, 1" in result.output
    assert "model.safetensors" in result.output


@pytest.mark.parametrize("verb", ["run", "train", "eval", "predict", "info"])
def test_every_verb_has_help(verb):
    result = runner.invoke(app, [verb, "--help"])
    assert result.exit_code == 0 and "Usage" in result.output


def test_user_errors_are_one_message_without_traceback(tmp_path):
    proc = subprocess.run(
        [sys.executable, "-m", "graftwork.cli", "run", str(tmp_path / "missing.yaml")],
        capture_output=True,
        text=True,
    )
    assert proc.returncode == 2
    assert "error: recipe file" in proc.stderr and "does not exist" in proc.stderr
    assert "Traceback" not in proc.stderr
