"""The `graft` command: each verb on a tiny bundle, JSON lines out, errors without tracebacks."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest
import yaml
from typer.testing import CliRunner

import graftwork
from conftest import tiny_recipe
from graftwork.cli import app, render
from graftwork.errors import BundleError, DataError

runner = CliRunner()


@pytest.fixture(scope="module")
def bundle(tiny_bert, sst2_small, tmp_path_factory):
    folder = tmp_path_factory.mktemp("cli")
    recipe = folder / "r.yaml"
    recipe.write_text(yaml.safe_dump(tiny_recipe(tiny_bert, sst2_small, folder)))
    result = runner.invoke(app, ["run", str(recipe), "train.epochs=0.5", "name=cli"])
    assert result.exit_code == 0, result.output
    assert "cli: results" in result.output and "accuracy" in result.output
    assert f"report: {folder / 'cli' / 'report.html'}" in result.output
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


# --input files, `graft info`, `graft train`, and what a bundle path can be -------------------


def test_predict_input_of_a_binary_file_is_a_located_error(bundle, tmp_path):
    binary = tmp_path / "weights.bin"
    binary.write_bytes(b"PK\x03\x04\x00\x00\n\x89\xff\xfe")
    result = runner.invoke(app, ["predict", str(bundle), "--input", str(binary)])
    assert result.exit_code != 0 and isinstance(result.exception, DataError)
    message = str(result.exception)
    assert f"--input {binary}, line 2: byte 0x89 at column 1 is not UTF-8" in message
    assert "looks like a binary file" in message and "one text a line" in message


def test_input_lines_are_texts_or_qa_pairs_and_a_bad_one_is_located(tmp_path):
    from graftwork.cli.inputs import iter_texts
    from graftwork.errors import GraftError

    inputs = tmp_path / "in.jsonl"
    inputs.write_text('{"text": "one"}\n\n{"question": "q", "context": "c"}\n{"text": 3}\n')
    read = iter_texts(inputs)
    assert next(read) == (1, "one") and next(read) == (3, {"question": "q", "context": "c"})
    with pytest.raises(GraftError, match="in.jsonl, line 4: expected a JSON object with a non"):
        next(read)
    inputs.write_text('{"text": "one"}\n{"text": "two"\n')
    with pytest.raises(GraftError, match=r"line 2: not valid JSON \(.*\); expected JSON lines"):
        list(iter_texts(inputs))


@pytest.mark.parametrize(
    ("flags", "expected"),
    [
        (
            ["--question", "Who?", "--context", " "],
            "--context is empty or only whitespace; there is no text to take the answer from",
        ),
        (
            ["--question", "\u200b", "--context", "Ann."],
            "--question is empty or only whitespace; there is nothing to look for in the context",
        ),
    ],
)
def test_a_blank_qa_flag_is_refused_naming_the_flag_before_loading(tmp_path, flags, expected):
    missing = tmp_path / "no-bundle"  # refused before the bundle is looked for
    result = runner.invoke(app, ["predict", str(missing), *flags])
    assert result.exit_code != 0 and expected in str(result.exception)
    assert "None" not in str(result.exception) and "confident label" not in str(result.exception)


def test_a_blank_qa_part_of_an_input_line_is_refused_naming_the_line_and_part(tmp_path):
    inputs = tmp_path / "q.jsonl"
    inputs.write_text(
        '{"question": "Who?", "context": "Ann."}\n\n{"question": "Who?", "context": ""}\n'
    )
    for extra in ([], ["--output", str(tmp_path / "out.jsonl")]):
        result = runner.invoke(
            app, ["predict", str(tmp_path / "nb"), "--input", str(inputs), *extra]
        )
        assert f"--input {inputs}, line 3: the context is empty or only whitespace" in str(
            result.exception
        )


def test_predict_input_jsonl_with_a_byte_order_mark_is_read(bundle, tmp_path):
    inputs = tmp_path / "in.jsonl"
    inputs.write_text('{"text": "one"}\n{"text": "two"}\n', encoding="utf-8-sig")
    result = runner.invoke(app, ["predict", str(bundle), "--input", str(inputs)])
    assert result.exit_code == 0, result.output
    assert [json.loads(line)["text"] for line in result.stdout.splitlines()] == ["one", "two"]


def test_info_shows_each_artifacts_recorded_parity_in_full(capsys):
    checked = "400 examples of ${GRAFT_DATA}/sst2/a-long-folder-name/and-a-longer-file-name.tsv"
    artifacts = {
        "onnx-fp32": {
            "path": "onnx/model.onnx",
            "max_abs_logit_diff": 2.1e-6,
            "label_agreement": 1.0,
            "checked_on": checked,
        },
        "onnx-int8": {
            "path": "onnx/model-int8.onnx",
            "max_abs_logit_diff": 0.0734,
            "label_agreement": 0.985,
            "metric": "accuracy",
            "pytorch": 0.9125,
            "int8": 0.9075,
            "change_points": -0.5,
            "checked_on": checked,
        },
    }
    render.manifest({"name": "b", "labels": ["0", "1"], "artifacts": artifacts, "files": {}})
    shown = capsys.readouterr().out.splitlines()
    assert "  parity: label agreement 1.0000, max |Δlogit| 2.10e-06" in shown
    assert (
        "  parity: label agreement 0.9850, max |Δlogit| 7.34e-02, "
        "accuracy 0.9125 → 0.9075 (-0.50 pts)"
    ) in shown
    assert f"  checked on: {checked}" in shown  # one line, however long


def test_train_prints_no_report_it_did_not_write(tiny_bert, sst2_small, tmp_path):
    recipe = tmp_path / "r.yaml"
    recipe.write_text(yaml.safe_dump(tiny_recipe(tiny_bert, sst2_small, tmp_path)))
    result = runner.invoke(app, ["train", str(recipe), "data.max_train_examples=32"])
    assert result.exit_code == 0, result.output
    assert f"bundle: {tmp_path / 'tiny' / 'bundle'}" in result.output
    assert "report:" not in result.output and not (tmp_path / "tiny" / "report.html").exists()


def test_a_bundle_path_that_is_a_file_is_named_as_a_file(bundle):
    result = runner.invoke(app, ["info", str(bundle / "model.safetensors")])
    assert isinstance(result.exception, BundleError)
    assert "model.safetensors is a file, not a bundle folder" in str(result.exception)
    assert "does not exist" not in str(result.exception)


@pytest.fixture
def loud_transformers():
    """transformers' settings as a fresh process has them (this one ran a run, which quiets
    them for good), put back as they were after the test."""
    from transformers.utils import logging as hf_logging

    verbosity, bars = hf_logging.get_verbosity(), hf_logging.is_progress_bar_enabled()
    hf_logging.set_verbosity_warning()
    hf_logging.enable_progress_bar()
    yield hf_logging
    hf_logging.set_verbosity(verbosity)
    if not bars:
        hf_logging.disable_progress_bar()


def test_loading_a_bundle_prints_nothing_and_leaves_transformers_settings(
    bundle, loud_transformers, capfd
):
    capfd.readouterr()
    answers = graftwork.load(bundle, backend="torch").predict(["a fine film"])
    assert answers[0]["label"] in ("0", "1")
    captured = capfd.readouterr()
    assert captured.err == "" and captured.out == ""
    assert loud_transformers.get_verbosity() == loud_transformers.WARNING
    assert loud_transformers.is_progress_bar_enabled()
