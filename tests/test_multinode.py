"""Multi-node training through PyTorch's launcher, as two "nodes" on one machine (loopback,
node ranks 0 and 1, one process each): the same result as one process with the same global
batch (the tolerance of the two-process test), and a run killed on both nodes resumes.

The recipe and its one-process run are test_resume_and_parallel.py's classification ones
(`classification_recipe`, `trained`: run once for the three modules)."""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time

import psutil
import pytest

from test_resume_and_parallel import (
    classification_recipe,
    finish,
    trained,
    weights,
    write_recipe,
)


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def nodes(recipe: str, port: int, *extra: str) -> list[subprocess.Popen]:
    """The same `graft train` on two nodes, as two launcher processes."""
    procs = []
    for rank in (0, 1):
        args = ["train", recipe, "--nnodes", "2", "--node-rank", str(rank), "--nproc", "1"]
        args += ["--master-addr", "127.0.0.1", "--master-port", str(port), *extra]
        procs.append(
            subprocess.Popen(
                [sys.executable, "-m", "graftwork.cli", *args],
                stdout=subprocess.PIPE,
                stderr=subprocess.STDOUT,
                env={**os.environ, "OMP_NUM_THREADS": "1"},
                text=True,
            )
        )
    return procs


def result(run) -> tuple[dict, dict]:
    return json.loads((run / "metrics.json").read_text()), weights(run / "bundle")


def assert_same_training(one, two):
    (m1, w1), (m2, w2) = one, two
    assert m1["train"]["steps"] == m2["train"]["steps"]
    largest = max(float((w1[k] - w2[k]).abs().max()) for k in w1)
    assert largest < 1e-3, f"weights differ by up to {largest}"
    for (step, a), (_, b) in zip(
        m1["train"]["loss_history"], m2["train"]["loss_history"], strict=True
    ):
        assert a == pytest.approx(b, abs=2e-2), f"loss differs at step {step}"


@pytest.fixture(scope="module")
def one_process(tiny_bert_nodrop, sst2_small, tmp_path_factory):
    folder = tmp_path_factory.mktemp("one")
    return trained(classification_recipe(tiny_bert_nodrop, sst2_small, folder), 1, folder)


def test_two_nodes_match_one_process_with_the_same_global_batch(
    tiny_bert_nodrop, sst2_small, tmp_path, one_process
):
    recipe = classification_recipe(tiny_bert_nodrop, sst2_small, tmp_path)
    path = write_recipe(tmp_path / "r.yaml", recipe)
    for proc in nodes(path, free_port()):
        finish(proc)
    two = result(tmp_path / "tiny")
    assert two[0]["train"]["processes"] == 2
    assert_same_training(one_process, two)


def test_two_nodes_killed_mid_run_resume_to_the_same_result(
    tiny_bert_nodrop, sst2_small, tmp_path, one_process
):
    recipe = classification_recipe(tiny_bert_nodrop, sst2_small, tmp_path)  # checkpoints every 5
    path = write_recipe(tmp_path / "r.yaml", recipe)
    procs = nodes(path, free_port())
    checkpoints = tmp_path / "tiny" / "checkpoints"
    deadline = time.monotonic() + 180
    killed = False
    while time.monotonic() < deadline and all(p.poll() is None for p in procs):
        steps = [int(p.name.split("-")[1]) for p in checkpoints.glob("step-*")]
        if steps and max(steps) >= 10:  # of 25
            for proc in procs:  # the launcher and its workers (their own sessions)
                for child in [*psutil.Process(proc.pid).children(recursive=True), proc]:
                    os.kill(child.pid, signal.SIGKILL)
            killed = True
            break
        time.sleep(0.005)
    for proc in procs:
        proc.communicate(timeout=60)
    assert killed, "the run ended before it could be killed"
    assert not (tmp_path / "tiny" / "bundle").exists()

    outputs = [finish(proc) for proc in nodes(path, free_port(), "--resume")]
    assert "resumed from step-" in "".join(outputs)
    assert_same_training(one_process, result(tmp_path / "tiny"))
