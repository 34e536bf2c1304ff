"""FSDP (`train.distributed.strategy: fsdp`, FSDP2 fully_shard over gloo on the CPU): two
sharded processes train as two DDP processes do (the two-process test's tolerance), with
evaluations during training, and a killed sharded run resumes from its checkpoint.

The recipe and its DDP run are test_resume_and_parallel.py's classification ones
(`classification_recipe`, `trained`: run once for the three modules)."""

from __future__ import annotations

import json
import os
import signal
import time

import psutil
import pytest

from test_multinode import assert_same_training, result
from test_resume_and_parallel import (
    classification_recipe,
    finish,
    graft,
    trained,
    weights,
    write_recipe,
)


def recipe(backbone, data, folder) -> str:
    """The parallel tests' classification recipe (25 steps, an evaluation every 10, a checkpoint
    every 5), sharded."""
    fsdp = classification_recipe(backbone, data, folder, distributed={"strategy": "fsdp"})
    return write_recipe(folder / "r.yaml", fsdp)


@pytest.fixture(scope="module")
def ddp(tiny_bert_nodrop, sst2_small, tmp_path_factory):
    """The same recipe in two DDP processes (the default strategy)."""
    folder = tmp_path_factory.mktemp("ddp")
    return trained(classification_recipe(tiny_bert_nodrop, sst2_small, folder), 2, folder)


def test_two_sharded_processes_train_as_ddp(tiny_bert_nodrop, sst2_small, tmp_path, ddp):
    output = finish(graft("train", recipe(tiny_bert_nodrop, sst2_small, tmp_path), "--nproc", "2"))
    assert "FSDP: 2 layers and the model sharded over 2 processes" in output
    fsdp = result(tmp_path / "tiny")
    assert_same_training(ddp, fsdp)
    steps = [step for step, _ in fsdp[0]["train"]["eval_history"]]
    assert steps == [step for step, _ in ddp[0]["train"]["eval_history"]] == [10, 20, 25]
    assert fsdp[0]["eval"]["accuracy"] == pytest.approx(ddp[0]["eval"]["accuracy"], abs=0.02)
    assert set(fsdp[1]) == set(ddp[1])  # a plain model's weights, named as DDP's


def test_a_killed_sharded_run_resumes(tiny_bert_nodrop, sst2_small, tmp_path, ddp):
    path = recipe(tiny_bert_nodrop, sst2_small, tmp_path)
    proc = graft("train", path, "--nproc", "2")
    checkpoints = tmp_path / "tiny" / "checkpoints"
    deadline = time.monotonic() + 180
    while time.monotonic() < deadline and proc.poll() is None:
        steps = [int(p.name.split("-")[1]) for p in checkpoints.glob("step-*")]
        if steps and max(steps) >= 10:
            for child in [*psutil.Process(proc.pid).children(recursive=True), proc]:
                os.kill(child.pid, signal.SIGKILL)
            break
        time.sleep(0.005)
    proc.communicate(timeout=60)
    assert proc.returncode == -signal.SIGKILL, "the run ended before it could be killed"
    saved = weights(max(checkpoints.glob("step-*")))
    assert set(saved) == set(ddp[1])  # checkpoints hold the full weights, not one shard

    output = finish(graft("train", path, "--nproc", "2", "--resume"))
    assert "resumed from step-" in output
    metrics = json.loads((tmp_path / "tiny" / "metrics.json").read_text())
    assert metrics["train"]["processes"] == 2
    assert_same_training(ddp, result(tmp_path / "tiny"))
