"""FSDP (`train.distributed.strategy: fsdp`, FSDP2 fully_shard over gloo on the CPU): two
sharded processes train as two DDP processes do (the two-process test's tolerance), with
evaluations during training, and a killed sharded run resumes from its checkpoint."""

from __future__ import annotations

import json
import os
import signal
import time

import psutil
import pytest

from conftest import tiny_recipe
from test_multinode import assert_same_training, result
from test_resume_and_parallel import finish, graft, weights, write_recipe

TRAIN = {"epochs": 1, "batch_size": 16, "lr": 1e-3, "eval_every": 10, "checkpoint_every": 5}


def recipe(backbone, data, folder, strategy: str) -> str:
    r = tiny_recipe(backbone, data, folder, train={**TRAIN, "distributed": {"strategy": strategy}})
    r["data"]["max_train_examples"] = 400  # 25 steps
    return write_recipe(folder / "r.yaml", r)


@pytest.fixture(scope="module")
def ddp(tiny_bert_nodrop, sst2_small, tmp_path_factory):
    folder = tmp_path_factory.mktemp("ddp")
    finish(graft("train", recipe(tiny_bert_nodrop, sst2_small, folder, "ddp"), "--nproc", "2"))
    return result(folder / "tiny")


def test_two_sharded_processes_train_as_ddp(tiny_bert_nodrop, sst2_small, tmp_path, ddp):
    output = finish(
        graft("train", recipe(tiny_bert_nodrop, sst2_small, tmp_path, "fsdp"), "--nproc", "2")
    )
    assert "FSDP: 2 layers and the model sharded over 2 processes" in output
    fsdp = result(tmp_path / "tiny")
    assert_same_training(ddp, fsdp)
    steps = [step for step, _ in fsdp[0]["train"]["eval_history"]]
    assert steps == [step for step, _ in ddp[0]["train"]["eval_history"]] == [10, 20, 25]
    assert fsdp[0]["eval"]["accuracy"] == pytest.approx(ddp[0]["eval"]["accuracy"], abs=0.02)
    assert set(fsdp[1]) == set(ddp[1])  # a plain model's weights, named as DDP's


def test_a_killed_sharded_run_resumes(tiny_bert_nodrop, sst2_small, tmp_path, ddp):
    path = recipe(tiny_bert_nodrop, sst2_small, tmp_path, "fsdp")
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
