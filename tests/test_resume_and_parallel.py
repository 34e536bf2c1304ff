"""A run killed with SIGKILL resumes to the same result; 2 processes match 1 process."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time

import pytest
import yaml
from safetensors.torch import load_file

from conftest import tiny_recipe


def graft(*args, env=None) -> subprocess.Popen:
    return subprocess.Popen(
        [sys.executable, "-m", "graftwork.cli", *args],
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        env={**os.environ, "OMP_NUM_THREADS": "1", **(env or {})},
        text=True,
    )


def finish(proc: subprocess.Popen, timeout: float = 300) -> str:
    output, _ = proc.communicate(timeout=timeout)
    assert proc.returncode == 0, output
    return output


def write_recipe(path, recipe: dict):
    path.write_text(yaml.safe_dump(recipe))
    return str(path)


def weights(bundle):
    return load_file(str(bundle / "model.safetensors"))


def test_killed_run_resumes_to_the_same_metrics_and_weights(tiny_bert, sst2_small, tmp_path):
    train = {"epochs": 3, "batch_size": 8, "checkpoint_every": 15, "log_every": 7, "threads": 1}
    recipe = tiny_recipe(tiny_bert, sst2_small, tmp_path / "killed", train=train)
    killed = write_recipe(tmp_path / "killed.yaml", recipe)
    reference = write_recipe(
        tmp_path / "reference.yaml", {**recipe, "output_dir": str(tmp_path / "reference")}
    )
    finish(graft("train", reference))

    proc = graft("train", killed)
    checkpoints = tmp_path / "killed" / "tiny" / "checkpoints"
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline and proc.poll() is None:
        steps = [int(p.name.split("-")[1]) for p in checkpoints.glob("step-*")]
        if steps and max(steps) >= 45:  # mid-epoch: an epoch here is 100 steps
            os.kill(proc.pid, signal.SIGKILL)
            break
        time.sleep(0.005)
    proc.wait()
    assert proc.returncode == -signal.SIGKILL, "the run ended before it could be killed"
    assert not (tmp_path / "killed" / "tiny" / "bundle").exists()

    output = finish(graft("train", killed, "--resume"))
    assert "resumed from step-" in output
    metrics = json.loads((tmp_path / "killed" / "tiny" / "metrics.json").read_text())
    expected = json.loads((tmp_path / "reference" / "tiny" / "metrics.json").read_text())
    assert metrics["eval"] == expected["eval"]
    assert metrics["train"]["loss_history"] == expected["train"]["loss_history"]
    got, want = (
        weights(tmp_path / "killed" / "tiny" / "bundle"),
        weights(tmp_path / "reference" / "tiny" / "bundle"),
    )
    assert all((got[k] == want[k]).all() for k in want)


def test_resume_refuses_a_changed_recipe(tiny_bert, sst2_small, tmp_path):
    train = {"epochs": 3, "batch_size": 8, "checkpoint_every": 10, "threads": 1}
    recipe = tiny_recipe(tiny_bert, sst2_small, tmp_path, train=train)
    path = write_recipe(tmp_path / "r.yaml", recipe)
    proc = graft("train", path)
    checkpoints = tmp_path / "tiny" / "checkpoints"
    while proc.poll() is None and not list(checkpoints.glob("step-*")):
        time.sleep(0.005)
    proc.kill()
    proc.wait()
    if proc.returncode == 0:
        pytest.fail("the run ended before it could be killed")
    changed = graft("train", path, "--resume", "train.lr=0.5")
    output, _ = changed.communicate(timeout=120)
    assert changed.returncode == 2
    assert "the recipe changed since it was written (train:" in output
    assert "Traceback" not in output


@pytest.mark.parametrize("task", ["classification", "ner"])
def test_two_processes_match_one_process_with_the_same_global_batch(
    tiny_bert_nodrop, sst2_small, conll_small, tmp_path, task
):
    data = sst2_small if task == "classification" else conll_small
    train = {"epochs": 1, "batch_size": 16, "lr": 1e-3}
    results = {}
    for nproc in (1, 2):
        recipe = tiny_recipe(tiny_bert_nodrop, data, tmp_path / str(nproc), task=task, train=train)
        path = write_recipe(tmp_path / f"{nproc}.yaml", recipe)
        finish(graft("train", path, "--nproc", str(nproc), env={"OMP_NUM_THREADS": "1"}))
        run = tmp_path / str(nproc) / "tiny"
        results[nproc] = (json.loads((run / "metrics.json").read_text()), weights(run / "bundle"))
    (one, w1), (two, w2) = results[1], results[2]
    assert two["train"]["processes"] == 2 and one["train"]["processes"] == 1
    assert one["train"]["steps"] == two["train"]["steps"]
    largest = max(float((w1[k] - w2[k]).abs().max()) for k in w1)
    assert largest < 1e-3, f"weights differ by up to {largest}"
    for (step, a), (_, b) in zip(
        one["train"]["loss_history"], two["train"]["loss_history"], strict=True
    ):
        assert a == pytest.approx(b, abs=2e-2), f"loss differs at step {step}"
