"""Few-shot bundles are standard classification bundles (method setfit): `graftwork.load`,
`graft eval`, `graft info`, `graft export` and the server take what `graft fewshot` wrote.

One tiny few-shot run (conftest's tiny BERT, real SST-2 rows), shared by every test here.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys

import httpx
import numpy as np
import pytest
import yaml
from safetensors.torch import load_file
from typer.testing import CliRunner

import graftwork
from conftest import head
from graftwork.cli import app
from graftwork.errors import BundleError, GraftError
from graftwork.methods.base import refuse
from graftwork.runs.fewshot import FewshotModel, fewshot
from test_fewshot import NAMES, recipe_for
from test_resume_and_parallel import KILLED_AFTER_A_CHECKPOINT
from test_serve import running


@pytest.fixture(scope="module")
def trained(tiny_bert, sst2_small, tmp_path_factory):
    out = tmp_path_factory.mktemp("fewshot-bundle")
    metrics = fewshot(recipe_for(tiny_bert, sst2_small, out, zero_shot=False))
    return out / "tiny-fewshot" / "bundle", metrics


def dev_texts(sst2_small, count: int = 40) -> list[str]:
    return [line.rstrip("\n").split("\t")[1] for line in head(sst2_small["eval"], count + 1)[1:]]


def short(bundle, texts: list[str]) -> list[str]:
    """The texts that fit `data.max_length` (32) whole: sentence-transformers truncates longer
    ones, where graftwork reads them in windows."""
    tokenizer = graftwork.load(bundle).tokenizer
    return [t for t in texts if len(tokenizer(t)["input_ids"]) <= 32]


def test_the_bundle_is_a_classification_bundle_of_method_setfit(trained):
    bundle, metrics = trained
    manifest = json.loads((bundle / "graftwork.json").read_text(encoding="utf-8"))
    assert (manifest["task"], manifest["method"]) == ("classification", "setfit")
    assert manifest["labels"] == ["negative", "positive"]
    assert manifest["metrics"]["eval"] == json.loads(json.dumps(metrics["eval"]))
    assert {"config.json", "model.safetensors", "setfit-head.safetensors"} <= set(manifest["files"])
    assert not any(name.endswith((".pkl", ".pickle", ".bin")) for name in manifest["files"])


def test_graftwork_load_predicts_the_labels_and_probabilities_of_the_fewshot_model(
    trained, sst2_small
):
    bundle, _ = trained
    texts = short(bundle, dev_texts(sst2_small))
    assert len(texts) >= 10
    answers = graftwork.load(bundle).predict(texts, top_k=2)
    own = FewshotModel.load(bundle)
    probabilities = np.exp(own.scores(texts))
    assert [a["label"] for a in answers] == own.predict(texts)
    for answer, row in zip(answers, probabilities, strict=True):
        got = {s["label"]: s["score"] for s in answer["top_k"]}
        assert [got["negative"], got["positive"]] == pytest.approx(row.tolist(), abs=1e-5)


def test_graft_eval_gives_the_accuracy_the_run_recorded(trained, sst2_small):
    bundle, metrics = trained
    result = CliRunner().invoke(
        app, ["eval", str(bundle), "--data", str(sst2_small["eval"]), "--json"]
    )
    assert result.exit_code == 0, result.output
    found = json.loads(result.output)[str(sst2_small["eval"])]
    assert found["accuracy"] == pytest.approx(metrics["eval"]["accuracy"], abs=1e-12)
    assert found["macro_f1"] == pytest.approx(metrics["eval"]["macro_f1"], abs=1e-12)


def test_graft_info_shows_the_few_shot_bundle(trained):
    bundle, _ = trained
    result = CliRunner().invoke(app, ["info", str(bundle)])
    assert result.exit_code == 0, result.output
    assert "setfit" in result.output and "positive" in result.output


def test_graft_export_passes_its_onnx_parity_check(trained, sst2_small, tmp_path):
    bundle = shutil.copytree(trained[0], tmp_path / "bundle")
    result = CliRunner().invoke(app, ["export", str(bundle)])
    assert result.exit_code == 0, result.output
    manifest = json.loads((bundle / "graftwork.json").read_text(encoding="utf-8"))
    assert manifest["artifacts"]["onnx-fp32"]["max_abs_logit_diff"] <= 1e-4
    texts = dev_texts(sst2_small, 20)
    onnx = graftwork.load(bundle, backend="onnx").predict(texts)
    torch_answers = graftwork.load(bundle, backend="torch").predict(texts)
    assert [a["label"] for a in onnx] == [a["label"] for a in torch_answers]


def test_the_server_answers_with_the_bundles_label(trained, sst2_small):
    bundle, _ = trained
    text = dev_texts(sst2_small, 1)[0]
    predictor = graftwork.load(bundle, threads=1)
    expected = predictor.predict([text])[0]
    with running({"fewshot": predictor}) as (url, _):
        response = httpx.post(f"{url}/v1/models/fewshot/predict", json={"inputs": [text]})
    assert response.status_code == 200, response.text
    answer = response.json()["outputs"][0]
    assert answer["label"] == expected["label"]
    assert answer["score"] == pytest.approx(expected["score"], abs=1e-6)


def test_the_shared_loop_and_the_stages_that_rebuild_a_model_refuse_setfit(trained):
    from graftwork.methods import setfit

    with pytest.raises(GraftError, match="trained by `graft fewshot RECIPE`"):
        setfit.apply(None, setfit.Config())
    for stage in ("distill", "prune", "ewc", "ewc_previous", "multitask"):
        with pytest.raises(GraftError, match="setfit"):
            refuse("setfit", stage, trained[0])
    refuse("setfit", "export", trained[0])  # export takes it (the test above)


def test_a_bundle_without_its_head_says_what_is_missing(trained, tmp_path):
    bundle = shutil.copytree(trained[0], tmp_path / "bundle")
    (bundle / "setfit-head.safetensors").unlink()
    with pytest.raises(BundleError, match="setfit-head.safetensors"):
        graftwork.load(bundle, verify=False, backend="torch").predict(["fine"])


def test_a_manifest_that_claims_another_method_is_refused(trained, tmp_path):
    bundle = shutil.copytree(trained[0], tmp_path / "bundle")
    path = bundle / "graftwork.json"
    manifest = json.loads(path.read_text(encoding="utf-8"))
    manifest["method"] = "full"
    path.write_text(json.dumps(manifest), encoding="utf-8")
    with pytest.raises(BundleError, match="holds a BertModel"):
        graftwork.load(bundle, verify=False)


assert NAMES  # the labels recipe_for names


# two epochs of 4 steps, a checkpoint every 3: the killed run dies right after the checkpoint
# of step 6 (second epoch, its second batch), so resuming replays an epoch's order and skips
# into the next
RESUMED = {"epochs": 2, "checkpoint_every": 3}


def test_a_killed_few_shot_run_resumes_to_the_same_bundle(tiny_bert, sst2_small, tmp_path):
    def recipe(out):
        made = recipe_for(tiny_bert, sst2_small, out, zero_shot=False)
        made["train"] |= RESUMED
        return made

    whole = fewshot(recipe(tmp_path / "whole"))
    path = tmp_path / "killed.yaml"
    path.write_text(yaml.safe_dump(recipe(tmp_path / "killed")), encoding="utf-8")
    proc = subprocess.run(
        [sys.executable, "-c", KILLED_AFTER_A_CHECKPOINT.format(stop=5), "fewshot", str(path)],
        capture_output=True,
        text=True,
        timeout=300,
        env={**os.environ, "OMP_NUM_THREADS": "1"},
    )
    assert proc.returncode == -signal.SIGKILL, proc.stdout + proc.stderr
    run = tmp_path / "killed" / "tiny-fewshot"
    assert [p.name for p in (run / "checkpoints").glob("step-*")] == ["step-00000006"]
    assert not (run / "bundle").exists()

    result = CliRunner().invoke(app, ["fewshot", str(path)])
    assert result.exit_code != 0 and "--resume" in str(result.exception or result.output)
    resumed = fewshot(str(path), resume=True)
    assert "resumed from step-00000006" in (run / "train.log").read_text(encoding="utf-8")
    assert resumed["train"]["loss_history"] == whole["train"]["loss_history"]
    assert resumed["train"]["pairs_seen"] == whole["train"]["pairs_seen"]
    assert resumed["eval"] == whole["eval"]
    want = load_file(str(tmp_path / "whole" / "tiny-fewshot" / "bundle" / "model.safetensors"))
    got = load_file(str(run / "bundle" / "model.safetensors"))
    assert got.keys() == want.keys() and all((got[k] == want[k]).all() for k in want)
    assert not (run / "checkpoints").exists() or not list((run / "checkpoints").iterdir())
