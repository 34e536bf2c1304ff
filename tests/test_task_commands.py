"""QA, causal-LM and seq2seq through graft's commands: bf16 training (`graft run`, its report),
`graft info`, `graft eval`, `graft predict`/`generate` on the bundle, and `graft compare` with
two methods.

Tiny models (conftest's tiny BERT, two copies of it warm-started as an encoder-decoder, the
tiny Llama) on small slices of real data (SQuAD sentences, Multi30k). Multi-process training and
exact resume of these tasks are in test_resume_and_parallel.py, the method × task checks in
test_matrix.py.
"""

from __future__ import annotations

import json
import subprocess
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file
from typer.testing import CliRunner

import graftwork
from graftwork import registry
from graftwork.cli import app
from graftwork.runs.finetune import run, train
from test_matrix import in_process
from test_resume_and_parallel import NEW_TASKS, task_recipe

# one epoch of test_resume_and_parallel's tiny recipes (33 examples, 16 evaluated), one thread
TRAIN = {"epochs": 1, "lr": 3e-3, "threads": 1}


@pytest.fixture(scope="module", autouse=True)
def cache(tmp_path_factory):
    """The warm-started encoder-decoder is built in a test folder, not the user's cache."""
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("GRAFT_CACHE", str(tmp_path_factory.mktemp("graft-cache")))
        yield


def invoke(*args: str) -> str:
    done = CliRunner().invoke(app, [str(a) for a in args])
    assert done.exit_code == 0, f"{done.output}\n{done.exception!r}"
    return done.output


@pytest.fixture(scope="module")
def bf16_runs(request, tmp_path_factory):
    """`bf16_runs(task)`: (bf16 run by `graft run`'s function, with its report; the same
    recipe's fp32 run), trained once."""
    runs: dict = {}

    def get(task: str):
        if task not in runs:
            runs[task] = tuple(
                stage(task_recipe(task, request, tmp_path_factory.mktemp(task), **TRAIN, **p))
                for stage, p in ((run, {"precision": "bf16"}), (train, {"precision": "fp32"}))
            )
        return runs[task]

    threads = torch.get_num_threads()
    yield get
    torch.set_num_threads(threads)


@pytest.mark.parametrize("task", NEW_TASKS)
def test_a_bf16_run_reports_and_its_fp32_bundle_serves_info_eval_and_predict(bf16_runs, task):
    bf16, fp32 = bf16_runs(task)
    losses = [loss for _, loss in bf16.metrics["train"]["loss_history"]]
    reference = [loss for _, loss in fp32.metrics["train"]["loss_history"]]
    assert losses != reference, "precision bf16 changed nothing: was the forward autocast?"
    assert losses[0] == pytest.approx(reference[0], rel=2e-2)  # same weights, bf16 rounding
    saved = load_file(str(bf16.bundle / "model.safetensors"))
    assert {t.dtype for t in saved.values()} == {torch.float32}

    page = (bf16.run_dir / "report.html").read_text(encoding="utf-8")
    assert registry.task(task).HEADLINE in page and "<svg" in page  # its metrics, loss curve

    info = invoke("info", bf16.bundle)
    assert f"task: {task}" in info and "eval: {" in info
    # the recorded metrics are the bundle's: graft eval on the same split gives them again
    printed = invoke("eval", bf16.bundle, "--data", bf16.recipe.data.eval, "--json")
    [evaluated] = json.loads(printed[printed.index("{") :]).values()
    recorded = {k: v for k, v in bf16.metrics["eval"].items() if isinstance(v, float)}
    assert recorded and {k: evaluated[k] for k in recorded} == pytest.approx(recorded, abs=1e-6)

    if task == "qa":
        context = "Ann planted the orchard and Bob grafted the apple trees."
        line = invoke("predict", bf16.bundle, "--question", "Who grafted?", "--context", context)
        answer = json.loads(line.strip().splitlines()[-1])
        assert context[answer["start"] : answer["end"]] == answer["answer"] != ""
    else:  # a few steps may teach only the end of sequence: the text can be empty
        line = invoke("predict", bf16.bundle, "A dog runs on the beach .")
        printed = json.loads(line.strip().splitlines()[-1])
        [want] = graftwork.load(bf16.bundle).predict(["A dog runs on the beach ."])
        assert printed == {"text": "A dog runs on the beach .", **want}
        assert isinstance(want["generated_text"], str)
    if task == "causal_lm":
        text = invoke("generate", bf16.bundle, "A dog runs .", "--max-new-tokens", "4", "--greedy")
        assert text.strip()


@pytest.mark.parametrize("task", ["qa", "causal_lm"])
def test_graft_compare_runs_full_and_lora_and_prints_their_table(
    request, tmp_path, monkeypatch, task
):
    recipe = task_recipe(task, request, tmp_path / "runs", **TRAIN)
    path = tmp_path / f"{task}.yaml"
    path.write_text(json.dumps(recipe), encoding="utf-8")  # YAML reads JSON
    monkeypatch.setattr(subprocess, "run", in_process(subprocess.run))  # its graft train runs
    output = invoke("compare", path, "--methods", "full,lora")
    saved = json.loads((tmp_path / "runs" / "tiny-compare" / "compare.json").read_text())
    rows = saved["rows"]
    assert [r["method"] for r in rows] == ["full", "lora"]
    headline = "f1" if task == "qa" else "chrf"
    for row in rows:
        metrics = json.loads((Path(row["run_dir"]) / "metrics.json").read_text())
        assert row["metric"] == headline and row["value"] == metrics["eval"][headline]
        assert row["trainable"] == metrics["parameters"]["trainable"]
    assert rows[1]["trainable"] < rows[0]["trainable"]  # LoRA trains a part
    assert (tmp_path / "runs" / "tiny-compare" / "report.html").is_file()
    shown = [line.strip("│ ").split("│") for line in output.splitlines() if "│" in line]
    assert [(cells[0].strip(), cells[2].strip()) for cells in shown] == [
        ("full", f"{rows[0]['trainable']:,}"),
        ("lora", f"{rows[1]['trainable']:,}"),
    ], output
