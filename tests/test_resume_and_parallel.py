"""A run killed with SIGKILL resumes to the same result; 2 processes match 1 process.

Every task: classification and NER on the tiny BERT; extractive QA (SQuAD sentences), causal-LM
fine-tuning (conftest's tiny Llama on Multi30k instructions) and seq2seq (two copies of the tiny
BERT warm-started as an encoder-decoder, Multi30k en→de) on a few dozen examples, two epochs.

The one-process runs a test compares against run in the test's own process (`graft train
--nproc 1` calls the same `finetune.train` in its process), and so do the new tasks' resumes (a
process other than the killed one all the same); interpreters start only where processes are
the point: two processes, the runs killed by SIGKILL, and `graft train --resume` itself
(classification). The classification runs in 1 and 2 processes are shared with
test_multinode.py and test_fsdp.py (`trained`).
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch
import yaml
from safetensors.torch import load_file

from conftest import tiny_recipe
from test_select import graft_main

NEW_TASKS = ["qa", "causal_lm", "seq2seq"]
DATA = {"classification": "sst2_small", "ner": "conll_small", "qa": "squad_small"}
DATA |= {"causal_lm": "instructions_small", "seq2seq": "multi30k_small"}
# the new tasks: 33 examples (an epoch's last batch of one leaves a process without an example;
# QA: their questions' windows), 16 to evaluate, batch 8, two epochs, a checkpoint every 3
# steps; the killed run dies right after the checkpoint of step STOP (in the second epoch)
TRAIN = {"epochs": 1, "batch_size": 16, "lr": 1e-3}
# classification, as test_multinode.py and test_fsdp.py train it too: 400 rows (25 steps),
# evaluated every 10 steps and checkpointed every 5 (the runs those tests kill resume from them)
CLASSIFICATION = {**TRAIN, "eval_every": 10, "checkpoint_every": 5}
SHORT = 400
NEW_TRAIN = {"epochs": 2, "batch_size": 8, "lr": 1e-3, "checkpoint_every": 3, "log_every": 1}
STOP = 6
# a process that dies by SIGKILL right after writing the checkpoint of step STOP or later
KILLED_AFTER_A_CHECKPOINT = """
import os, signal, sys
from graftwork.train import checkpoint
save = checkpoint.save
def save_then_die(*args, **kwargs):
    save(*args, **kwargs)
    if args[-1].step >= {stop}:
        os.kill(os.getpid(), signal.SIGKILL)
checkpoint.save = save_then_die
sys.argv[0] = "graft"
from graftwork.cli import main
main()
"""
# extractive QA: parameters that only shift every position's start (or end) logit by the same
# amount, which the softmax over positions ignores, so their gradient is zero up to rounding;
# AdamW divides that rounding noise (~1e-7, above its eps) by its own running size, so they
# take lr-sized steps in a direction set by the summation order, which differs between one
# process and two. What they do to the model is checked on its logits instead.
SHIFT_ONLY = {"qa": {"qa_outputs.bias", "bert.encoder.layer.1.output.LayerNorm.bias"}}


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


def train_here(path: str, env: dict | None = None, resume: bool = False) -> None:
    """`graft train PATH [--resume]` in one process, run in this one (as the CLI's `--nproc 1`
    runs it), with `env` set meanwhile (OMP_NUM_THREADS aside: this process's threads are the
    run's `train.threads`, and are put back after it)."""
    from graftwork.runs.finetune import train

    threads = torch.get_num_threads()
    try:
        with pytest.MonkeyPatch.context() as patch:
            for key, value in (env or {}).items():
                if key != "OMP_NUM_THREADS":
                    patch.setenv(key, value)
            train(path, resume=resume)
    finally:
        torch.set_num_threads(threads)


def classification_recipe(backbone, data: dict, out, **train) -> dict:
    """The classification recipe of the parallel tests (see CLASSIFICATION)."""
    recipe = tiny_recipe(backbone, data, out, train={**CLASSIFICATION, **train})
    recipe["data"]["max_train_examples"] = SHORT
    return recipe


_trained: dict = {}


def trained(recipe: dict, nproc: int, folder: Path, env: dict | None = None):
    """(metrics.json, bundle weights) of `recipe` trained by `graft train --nproc N` (one
    process: in this one) in `folder`; once per session for each recipe (its output_dir
    aside) and N, whichever module asks first."""
    key = (
        json.dumps({k: v for k, v in recipe.items() if k != "output_dir"}, sort_keys=True),
        nproc,
    )
    if key not in _trained:
        path = write_recipe(folder / "recipe.yaml", {**recipe, "output_dir": str(folder)})
        if nproc == 1:
            train_here(path, env)
        else:
            finish(graft("train", path, "--nproc", str(nproc), env=env))
        run = folder / recipe["name"]
        _trained[key] = (json.loads((run / "metrics.json").read_text()), weights(run / "bundle"))
    return _trained[key]


def test_killed_run_resumes_to_the_same_metrics_and_weights(tiny_bert, sst2_small, tmp_path):
    train = {"epochs": 3, "batch_size": 8, "checkpoint_every": 15, "log_every": 7, "threads": 1}
    recipe = tiny_recipe(tiny_bert, sst2_small, tmp_path / "killed", train=train)
    killed = write_recipe(tmp_path / "killed.yaml", recipe)
    reference = write_recipe(
        tmp_path / "reference.yaml", {**recipe, "output_dir": str(tmp_path / "reference")}
    )
    train_here(reference)  # uninterrupted, with the same train.threads

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


class Interrupted(Exception):
    """Stands for the process dying."""


def test_resume_refuses_a_changed_recipe(tiny_bert, sst2_small, tmp_path, monkeypatch, capsys):
    from graftwork.train import checkpoint

    train = {"epochs": 3, "batch_size": 8, "checkpoint_every": 10, "threads": 1}
    recipe = tiny_recipe(tiny_bert, sst2_small, tmp_path, train=train)
    path = write_recipe(tmp_path / "r.yaml", recipe)
    save = checkpoint.save

    def save_then_stop(*args, **kwargs):  # the run stops right after its first checkpoint
        save(*args, **kwargs)
        raise Interrupted

    with monkeypatch.context() as patch, pytest.raises(Interrupted):
        patch.setattr(checkpoint, "save", save_then_stop)
        train_here(path)
    assert [p.name for p in (tmp_path / "tiny" / "checkpoints").glob("step-*")] == ["step-00000010"]
    status, said = graft_main(monkeypatch, capsys, "train", path, "--resume", "train.lr=0.5")
    assert status == 2
    assert "the recipe changed since it was written (train:" in said
    assert "Traceback" not in said


def first_lines(data: dict, task: str, count: int, folder: Path) -> Path:
    """The first `count` examples of a sample's eval split, written in `folder`."""
    source = Path(data["eval"])
    for suffix in (".en", ".de") if task == "seq2seq" else ("",):  # parallel files: a stem
        lines = Path(f"{source}{suffix}").read_text(encoding="utf-8").splitlines(keepends=True)
        (folder / f"eval{suffix or source.suffix}").write_text("".join(lines[:count]), "utf-8")
    return folder / ("eval" if task == "seq2seq" else f"eval{source.suffix}")


def task_recipe(task: str, request, out: Path, **train) -> dict:
    """The tiny recipe of `task` on its real-data sample (a backbone without dropout: runs in 1
    and 2 processes draw different random numbers); `train` replaces keys of its train section."""
    data = request.getfixturevalue(DATA[task])
    backbone = request.getfixturevalue("tiny_llama" if task == "causal_lm" else "tiny_bert_nodrop")
    if task == "classification":
        return classification_recipe(backbone, data, out, **train)
    if task not in NEW_TASKS:
        return tiny_recipe(backbone, data, out, task=task, train={**TRAIN, **train})
    recipe = tiny_recipe(backbone, data, out, task=task, train={**NEW_TRAIN, **train})
    recipe["data"]["max_train_examples"] = 33
    Path(out).mkdir(parents=True, exist_ok=True)
    recipe["data"]["eval"] = str(first_lines(data, task, 16, Path(out)))
    if task != "qa":
        recipe["generation"] = {"max_new_tokens": 4}
    if task == "seq2seq":
        recipe["backbone"] = {"name": str(backbone), "decoder": str(backbone)}
        recipe["task"] = {"type": "seq2seq", "source": "en", "target": "de"}
        recipe["data"]["format"] = "parallel"
    return recipe


@pytest.fixture(scope="module")
def runs(request, tmp_path_factory):
    """`runs(task, nproc)`: (recipe, metrics.json, bundle weights) of the task's tiny recipe
    trained by `graft train --nproc N` (see `trained`; warm starts cached in a test folder)."""
    done: dict = {}
    env = {"OMP_NUM_THREADS": "1", "GRAFT_CACHE": str(tmp_path_factory.mktemp("graft-cache"))}

    def get(task: str, nproc: int):
        if (task, nproc) not in done:
            out = tmp_path_factory.mktemp(f"{task}-{nproc}")
            recipe = task_recipe(task, request, out)
            done[(task, nproc)] = (recipe, *trained(recipe, nproc, out, env))
        return done[(task, nproc)]

    get.env = env
    return get


def span_logits(bundle_weights: dict, backbone, data: dict) -> torch.Tensor:
    """A QA model's (rows, 2, positions) start/end logits on the first eval windows."""
    from transformers import AutoModelForQuestionAnswering, AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(str(backbone))
    model = AutoModelForQuestionAnswering.from_pretrained(str(backbone))
    model.load_state_dict(bundle_weights)
    rows = [json.loads(line) for line in data["eval"].read_text().splitlines()[:32]]
    inputs = tokenizer(
        [r["question"] for r in rows],
        [r["context"] for r in rows],
        truncation="only_second",
        max_length=64,
        padding=True,
        return_tensors="pt",
    )
    with torch.inference_mode():
        out = model.eval()(**inputs)
    return torch.stack((out.start_logits, out.end_logits), dim=1)


@pytest.mark.parametrize("task", ["classification", "ner", *NEW_TASKS])
def test_two_processes_match_one_process_with_the_same_global_batch(runs, request, task):
    (recipe, one, w1), (_, two, w2) = runs(task, 1), runs(task, 2)
    assert two["train"]["processes"] == 2 and one["train"]["processes"] == 1
    assert one["train"]["steps"] == two["train"]["steps"]
    assert w1.keys() == w2.keys()
    shift_only = SHIFT_ONLY.get(task, set())
    largest = max(float((w1[k] - w2[k]).abs().max()) for k in w1 if k not in shift_only)
    assert largest < 1e-3, f"weights differ by up to {largest}"
    for (step, a), (_, b) in zip(
        one["train"]["loss_history"], two["train"]["loss_history"], strict=True
    ):
        assert a == pytest.approx(b, abs=2e-2), f"loss differs at step {step}"
    if shift_only:  # the two models' span logits differ by one constant per row and head
        backbone, data = recipe["backbone"], request.getfixturevalue(DATA[task])
        diff = span_logits(w1, backbone, data) - span_logits(w2, backbone, data)
        spread = float((diff - diff.mean(dim=-1, keepdim=True)).abs().max())
        assert spread < 1e-3, f"span logits differ by up to {spread} beyond a shift"


@pytest.mark.parametrize("task", NEW_TASKS)
def test_a_run_killed_after_a_checkpoint_resumes_in_a_new_process_bit_identically(
    runs, tmp_path, task
):
    recipe, expected, want = runs(task, 1)
    path = write_recipe(tmp_path / "killed.yaml", {**recipe, "output_dir": str(tmp_path)})
    proc = subprocess.Popen(
        [sys.executable, "-c", KILLED_AFTER_A_CHECKPOINT.format(stop=STOP), "train", path],
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        env={**os.environ, **runs.env},
        text=True,
    )
    output, _ = proc.communicate(timeout=300)
    assert proc.returncode == -signal.SIGKILL, output
    run = tmp_path / "tiny"
    assert [p.name for p in (run / "checkpoints").glob("step-*")] == [f"step-{STOP:08d}"]
    assert not (run / "bundle").exists()

    train_here(path, runs.env, resume=True)  # in this process: not the one that was killed
    assert f"resumed from step-{STOP:08d}" in (run / "train.log").read_text()
    metrics = json.loads((run / "metrics.json").read_text())
    assert metrics["train"]["steps"] > STOP
    assert metrics["eval"] == expected["eval"]
    assert metrics["train"]["loss_history"] == expected["train"]["loss_history"]
    got = weights(run / "bundle")
    assert got.keys() == want.keys()
    assert all((got[k] == want[k]).all() for k in want)
