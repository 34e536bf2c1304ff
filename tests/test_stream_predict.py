"""`graft predict --input FILE --output FILE`: the streamed output is the batch prediction, and
an interrupted output resumes to the uninterrupted one (partial last line included)."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time

import pytest
from typer.testing import CliRunner

from conftest import DATA, tiny_recipe
from graftwork.cli import app
from graftwork.errors import GraftError
from graftwork.inference.stream import resume_point
from graftwork.runs import finetune

runner = CliRunner()


@pytest.fixture(scope="module")
def bundle(tiny_bert, sst2_small, tmp_path_factory):
    folder = tmp_path_factory.mktemp("stream")
    recipe = tiny_recipe(tiny_bert, sst2_small, folder, train={"epochs": 0.2, "threads": 1})
    return finetune.train(recipe).bundle


def sst2_texts(count: int) -> list[str]:
    with open(DATA / "sst2" / "train.tsv", encoding="utf-8") as fh:
        next(fh)
        return [next(fh).split("\t")[0] for _ in range(count)]


@pytest.fixture(scope="module")
def big_input(tmp_path_factory):
    """6,000 SST-2 sentences as JSON lines, a blank line after every 1,000th."""
    path = tmp_path_factory.mktemp("input") / "big.jsonl"
    lines = []
    for i, text in enumerate(sst2_texts(6000)):
        lines.append(json.dumps({"text": text}))
        if i % 1000 == 999:
            lines.append("")
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return path


def assert_same_output(got: str, want: str) -> None:
    """Line for line the same texts and labels; scores within the PyTorch backend's batch
    tolerance (1e-5, tests/test_batch_invariance.py): a resumed chunk batches the remaining
    texts with other neighbours, and PyTorch's float32 rounding depends on the batch shape."""
    got_lines, want_lines = got.splitlines(), want.splitlines()
    assert len(got_lines) == len(want_lines)
    for number, (a, b) in enumerate(zip(got_lines, want_lines, strict=True), start=1):
        a, b = json.loads(a), json.loads(b)
        assert a["text"] == b["text"] and a["label"] == b["label"], number
        assert a["score"] == pytest.approx(b["score"], abs=1e-5), number


def predict(*args) -> str:
    result = runner.invoke(app, ["predict", *map(str, args)])
    assert result.exit_code == 0, result.output
    return result.stdout


@pytest.fixture(scope="module")
def uninterrupted(bundle, big_input, tmp_path_factory):
    output = tmp_path_factory.mktemp("whole") / "preds.jsonl"
    predict(bundle, "--input", big_input, "--output", output)
    return output.read_text(encoding="utf-8")


def test_streamed_output_equals_batch_prediction(bundle, big_input, uninterrupted):
    lines = uninterrupted.splitlines()
    assert len(lines) == 6000
    assert_same_output(uninterrupted, predict(bundle, "--input", big_input))


@pytest.mark.parametrize("cut", [0, 1, 2500, 5999])
def test_a_partial_last_line_is_cut_and_the_output_resumed(
    bundle, big_input, uninterrupted, tmp_path, cut
):
    lines = uninterrupted.splitlines(keepends=True)
    output = tmp_path / "preds.jsonl"
    output.write_text("".join(lines[:cut]) + lines[cut][: len(lines[cut]) // 2], encoding="utf-8")
    assert resume_point(output) == cut  # and the partial line is gone
    assert output.read_text(encoding="utf-8") == "".join(lines[:cut])
    output.write_text("".join(lines[:cut]) + lines[cut][:7], encoding="utf-8")
    predict(bundle, "--input", big_input, "--output", output)
    assert_same_output(output.read_text(encoding="utf-8"), uninterrupted)


def test_a_killed_prediction_resumes_to_the_uninterrupted_output(
    bundle, big_input, uninterrupted, tmp_path
):
    output = tmp_path / "preds.jsonl"
    command = [sys.executable, "-m", "graftwork.cli", "predict", str(bundle)]
    command += ["--input", str(big_input), "--output", str(output), "--threads", "1"]
    proc = subprocess.Popen(command, env={**os.environ, "OMP_NUM_THREADS": "1"})
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline and proc.poll() is None:
        if output.exists() and output.stat().st_size > 0:
            os.kill(proc.pid, signal.SIGKILL)
            break
        time.sleep(0.002)
    proc.wait()
    assert proc.returncode == -signal.SIGKILL, "the prediction ended before it could be killed"
    assert 0 < resume_point(output) < 6000
    resumed = subprocess.run(
        command,
        env={**os.environ, "OMP_NUM_THREADS": "1"},
        check=True,
        capture_output=True,
        text=True,
    )
    assert "from an earlier run" in resumed.stderr
    assert_same_output(output.read_text(encoding="utf-8"), uninterrupted)


def test_an_output_of_another_input_is_refused(bundle, big_input, tmp_path):
    other = tmp_path / "other.txt"
    other.write_text("a fine film\na dull film\n", encoding="utf-8")
    output = tmp_path / "preds.jsonl"
    predict(bundle, "--input", other, "--output", output)
    result = runner.invoke(
        app, ["predict", str(bundle), "--input", str(big_input), "--output", str(output)]
    )
    assert isinstance(result.exception, GraftError)
    assert "line 1 does not answer --input" in str(result.exception)
    assert len(output.read_text(encoding="utf-8").splitlines()) == 2  # left as it was


def test_a_blank_text_is_refused_with_its_line_before_loading(tmp_path):
    inputs = tmp_path / "in.jsonl"
    inputs.write_text('{"text": "fine"}\n\n{"text": "   "}\n', encoding="utf-8")
    result = runner.invoke(
        app,
        [
            "predict",
            str(tmp_path / "no-bundle"),
            "--input",
            str(inputs),
            "--output",
            str(tmp_path / "o.jsonl"),
        ],
    )
    assert isinstance(result.exception, GraftError)
    assert "line 3: the text is empty or only whitespace" in str(result.exception)


def test_output_needs_an_input_file(bundle, tmp_path):
    result = runner.invoke(app, ["predict", str(bundle), "hello", "--output", str(tmp_path / "o")])
    assert isinstance(result.exception, GraftError)
    assert "--output streams an --input file" in str(result.exception)
