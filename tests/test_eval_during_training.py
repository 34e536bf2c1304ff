"""Evaluation during training (`train.eval_every`): the curve, the best weights in the bundle,
early stopping, and a killed run that resumes to the same curve, best step and weights."""

from __future__ import annotations

import json
import os
import signal
import time

import pytest
from safetensors.torch import load_file

from conftest import tiny_recipe
from graftwork.errors import GraftError
from graftwork.runs import finetune
from test_resume_and_parallel import finish, graft, task_recipe, weights, write_recipe

# a high learning rate on the tiny BERT: accuracy rises, then falls back (best at step 25 of 50)
UNSTABLE = {"epochs": 1, "lr": 1e-2, "eval_every": 5, "threads": 1}


def test_the_bundle_holds_the_best_evaluation_not_the_last(tiny_bert, sst2_small, tmp_path):
    recipe = tiny_recipe(tiny_bert, sst2_small, tmp_path, train={**UNSTABLE, "checkpoint_every": 5})
    checkpoints = tmp_path / "tiny" / "checkpoints"
    saved: dict[int, dict] = {}  # the loop's own checkpoints, copied as training goes

    def on_eval(step, metrics):
        for folder in checkpoints.glob("step-*"):
            saved.setdefault(int(folder.name[5:]), load_file(str(folder / "model.safetensors")))

    result = finetune.train(recipe, on_eval=on_eval)
    train = result.metrics["train"]
    curve = {step: m["accuracy"] for step, m in train["eval_history"]}
    assert sorted(curve) == list(range(5, 55, 5))
    best = max(curve, key=lambda s: (curve[s], -s))  # the first of the highest
    assert curve[50] < curve[best], f"the last evaluation is the best; no test: {curve}"
    assert train["best_step"] == best
    assert result.metrics["eval"]["accuracy"] == curve[best]  # re-evaluated after restoring
    shipped = weights(result.bundle)
    assert set(shipped) == set(saved[best])
    assert all((shipped[k] == saved[best][k]).all() for k in shipped)
    assert not checkpoints.exists()  # best weights and checkpoints are gone with the run


def test_keep_last_ships_the_last_weights(tiny_bert, sst2_small, tmp_path):
    runs = {}
    for keep in ("best", "last"):
        train = {**UNSTABLE, "keep": keep}
        recipe = tiny_recipe(tiny_bert, sst2_small, tmp_path / keep, train=train)
        runs[keep] = finetune.train(recipe)
    best, last = runs["best"].metrics, runs["last"].metrics
    assert best["train"]["eval_history"] == last["train"]["eval_history"]
    assert last["eval"] == last["train"]["eval_history"][-1][1]
    assert best["eval"]["accuracy"] > last["eval"]["accuracy"]


def test_early_stopping_stops_after_patience_evaluations(tiny_bert, sst2_small, tmp_path):
    # no later evaluation can beat the first by 0.6 accuracy: patience 2 stops at the third
    train = {**UNSTABLE, "early_stopping": {"patience": 2, "min_delta": 0.6}}
    seen = []
    result = finetune.train(
        tiny_recipe(tiny_bert, sst2_small, tmp_path, train=train),
        on_eval=lambda step, metrics: seen.append(step),
    )
    train = result.metrics["train"]
    assert seen == [5, 10, 15]
    assert train["steps"] == 15 and train["planned_steps"] == 50
    assert train["stopped_early"] is True
    assert "stopping early" in (tmp_path / "tiny" / "train.log").read_text()


def test_eval_every_needs_an_eval_split(tiny_bert, sst2_small, tmp_path):
    recipe = tiny_recipe(tiny_bert, sst2_small, tmp_path, train={"eval_every": 5})
    del recipe["data"]["eval"]
    with pytest.raises(GraftError, match="train.eval_every evaluates on the eval split"):
        finetune.train(recipe)


def test_early_stopping_needs_eval_every(tiny_bert, sst2_small, tmp_path):
    recipe = tiny_recipe(tiny_bert, sst2_small, tmp_path, train={"early_stopping": {}})
    with pytest.raises(GraftError, match="set train.eval_every"):
        finetune.train(recipe)


def test_an_exception_in_on_eval_ends_the_run(tiny_bert, sst2_small, tmp_path):
    class Pruned(Exception):
        pass

    def prune(step, metrics):
        if step == 10:
            raise Pruned

    with pytest.raises(Pruned):
        finetune.train(tiny_recipe(tiny_bert, sst2_small, tmp_path, train=UNSTABLE), on_eval=prune)
    assert not (tmp_path / "tiny" / "bundle").exists()


def test_killed_run_with_evaluations_resumes_to_the_same_best_and_patience(
    tiny_bert, sst2_small, tmp_path
):
    train = {
        **UNSTABLE,
        "epochs": 2,
        "checkpoint_every": 10,
        "early_stopping": {"patience": 4, "min_delta": 0.01},
    }
    recipe = tiny_recipe(tiny_bert, sst2_small, tmp_path / "killed", train=train)
    killed = write_recipe(tmp_path / "killed.yaml", recipe)
    reference = write_recipe(
        tmp_path / "reference.yaml", {**recipe, "output_dir": str(tmp_path / "reference")}
    )
    finish(graft("train", reference))
    expected = json.loads((tmp_path / "reference" / "tiny" / "metrics.json").read_text())
    history = expected["train"]["eval_history"]
    assert history[-1][0] > 30, "the reference stopped before the kill point; no test"

    proc = graft("train", killed)
    checkpoints = tmp_path / "killed" / "tiny" / "checkpoints"
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline and proc.poll() is None:
        steps = [int(p.name.split("-")[1]) for p in checkpoints.glob("step-*")]
        if steps and max(steps) >= 30:
            os.kill(proc.pid, signal.SIGKILL)
            break
        time.sleep(0.005)
    proc.wait()
    assert proc.returncode == -signal.SIGKILL, "the run ended before it could be killed"

    output = finish(graft("train", killed, "--resume"))
    assert "resumed from step-" in output
    metrics = json.loads((tmp_path / "killed" / "tiny" / "metrics.json").read_text())
    for key in ("eval_history", "best_step", "stopped_early", "steps", "loss_history"):
        assert metrics["train"][key] == expected["train"][key], key
    assert metrics["eval"] == expected["eval"]
    got = weights(tmp_path / "killed" / "tiny" / "bundle")
    want = weights(tmp_path / "reference" / "tiny" / "bundle")
    assert all((got[k] == want[k]).all() for k in want)


def test_the_report_draws_the_evaluation_curve(tiny_bert, sst2_small, tmp_path):
    train = {**UNSTABLE, "epochs": 0.2}  # 10 steps: evaluations at 5 and 10
    result = finetune.run(tiny_recipe(tiny_bert, sst2_small, tmp_path, train=train))
    page = (result.run_dir / "report.html").read_text()
    assert "evaluation during training" in page
    assert "eval accuracy" in page  # the curve's axis label, in the inlined SVG


def test_a_bf16_run_evaluates_its_fp32_weights_while_training(request, tmp_path):
    # keep last: the last evaluation scored the weights the bundle holds, which the run then
    # scores again without autocast. The two must agree, or "best" is chosen on bf16 figures.
    # Causal LM: its perplexity moves with bf16 rounding where a tiny model's accuracy would not.
    train = {"epochs": 1, "eval_every": 3, "keep": "last", "precision": "bf16", "threads": 1}
    result = finetune.train(task_recipe("causal_lm", request, tmp_path, **train))
    history = result.metrics["train"]["eval_history"]
    assert history[-1][0] == result.metrics["train"]["steps"]
    assert history[-1][1] == result.metrics["eval"]


def test_full_precision_lifts_autocast_for_the_block_and_puts_it_back():
    # the run above cannot show the wrapper comes back (its weights differ from step 1 on)
    import torch

    from graftwork.config.train import TrainConfig
    from graftwork.train.evaluation import full_precision
    from graftwork.train.loop import make_accelerator

    torch.manual_seed(0)
    plain = torch.nn.Linear(64, 64)
    x = torch.randn(4, 64)
    want = plain(x).detach()
    model = make_accelerator(TrainConfig(precision="bf16")).prepare(plain)
    autocast = model(x).detach()
    assert not torch.equal(autocast, want), "prepare put no autocast on the forward"
    with full_precision(model):
        assert torch.equal(model(x), want)
    assert torch.equal(model(x).detach(), autocast)
