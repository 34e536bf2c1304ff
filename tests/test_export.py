"""ONNX export: parity recorded, INT8 works, broken exports fail loudly, files run standalone."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

import graftwork
from conftest import tiny_recipe
from graftwork.export import export_bundle
from graftwork.export import onnx as onnx_export
from graftwork.runs.finetune import train

TEXTS = ["a gripping , funny film", "dull and far too long", "the cast is wonderful", "meh"]


_trained: dict[str, Path] = {}


def trained_bundles(tiny_bert, sst2_small, conll_small, tmp_path_factory) -> dict[str, Path]:
    """Copies of a tiny classification and a tiny NER bundle (half an epoch each), trained
    once per session (test_openvino.py takes copies too): exporting writes into a bundle."""
    if not _trained:
        out = tmp_path_factory.mktemp("export-trained")
        data = {"classification": sst2_small, "ner": conll_small}
        for task, sample in data.items():
            recipe = tiny_recipe(tiny_bert, sample, out / task, task=task, train={"epochs": 0.5})
            _trained[task] = train(recipe).bundle
    copies = tmp_path_factory.mktemp("export")
    return {task: shutil.copytree(b, copies / task) for task, b in _trained.items()}


@pytest.fixture(scope="module")
def trained(tiny_bert, sst2_small, conll_small, tmp_path_factory):
    return trained_bundles(tiny_bert, sst2_small, conll_small, tmp_path_factory)


@pytest.mark.parametrize("task", ["classification", "ner"])
def test_export_records_parity_and_auto_picks_int8(trained, task):
    bundle = trained[task]
    artifacts = export_bundle(bundle, int8=True)
    manifest = json.loads((bundle / "graftwork.json").read_text())
    assert manifest["artifacts"] == json.loads(json.dumps(artifacts))
    assert artifacts["onnx-fp32"]["max_abs_logit_diff"] <= 1e-4
    assert artifacts["onnx-int8"]["label_agreement"] > 0.8
    assert {"onnx/model.onnx", "onnx/model-int8.onnx"} <= set(manifest["files"])
    assert graftwork.load(bundle).backend == "onnx-int8"  # the hashes of new files verify too

    torch_answers = graftwork.load(bundle, backend="torch").predict(TEXTS)
    onnx_answers = graftwork.load(bundle, backend="onnx").predict(TEXTS)
    key = "label" if task == "classification" else "tags"
    assert [a[key] for a in onnx_answers] == [a[key] for a in torch_answers]
    if task == "classification":
        for a, b in zip(onnx_answers, torch_answers, strict=True):
            assert a["score"] == pytest.approx(b["score"], abs=1e-4)


def test_keep_attention_fp32_leaves_attention_unquantized(trained, tmp_path):
    import onnx

    bundle = trained["classification"]
    export_bundle(bundle, int8=True, keep_attention_fp32=True)
    graph = onnx.load(str(bundle / "onnx" / "model-int8.onnx")).graph
    ops = {node.op_type for node in graph.node}
    assert "Attention" in ops and "QAttention" not in ops
    assert "MatMulInteger" in ops or "DynamicQuantizeMatMul" in ops
    export_bundle(bundle, int8=True, keep_attention_fp32=False)
    ops = {n.op_type for n in onnx.load(str(bundle / "onnx" / "model-int8.onnx")).graph.node}
    assert "QAttention" in ops


def test_broken_export_fails_loudly_and_leaves_the_bundle_unchanged(trained, monkeypatch):
    import onnx
    from onnx import numpy_helper

    bundle = trained["classification"]
    before = (bundle / "graftwork.json").read_text()
    real = onnx_export.export_fp32

    def broken(model, tokenizer, path):  # export, then corrupt the classifier weights
        real(model, tokenizer, path)
        proto = onnx.load(str(path))
        for init in proto.graph.initializer:
            if "classifier" in init.name and "weight" in init.name:
                init.CopyFrom(numpy_helper.from_array(numpy_helper.to_array(init) * 3, init.name))
        onnx.save(proto, str(path))

    monkeypatch.setattr(onnx_export, "export_fp32", broken)
    with pytest.raises(onnx_export.ParityError, match="differs from PyTorch by up to"):
        export_bundle(bundle)
    assert (bundle / "graftwork.json").read_text() == before
    graftwork.load(bundle)  # still whole: hashes verify


STANDALONE = r"""
import sys
sys.modules["graftwork"] = None  # importing graftwork now fails
import json, numpy as np, onnxruntime as ort
from transformers import AutoTokenizer
bundle = sys.argv[1]
tok = AutoTokenizer.from_pretrained(bundle)
sess = ort.InferenceSession(bundle + "/onnx/model-int8.onnx", providers=["CPUExecutionProvider"])
names = {i.name for i in sess.get_inputs()}
enc = tok(json.loads(sys.argv[2]), padding=True, return_tensors="np")
logits = sess.run(["logits"], {k: v for k, v in enc.items() if k in names})[0]
print(json.dumps(logits.argmax(-1).tolist()))
"""


def test_exported_onnx_runs_without_graftwork(trained):
    bundle = trained["classification"]
    export_bundle(bundle, int8=True)
    proc = subprocess.run(
        [sys.executable, "-c", STANDALONE, str(bundle), json.dumps(TEXTS)],
        capture_output=True,
        text=True,
        check=True,
    )
    labels = json.loads(proc.stdout)
    expected = [int(a["label"]) for a in graftwork.load(bundle).predict(TEXTS)]
    assert labels == expected


def test_missing_artifact_is_a_clear_error(trained, tmp_path):
    copy = tmp_path / "bundle"
    shutil.copytree(trained["classification"], copy)
    manifest = json.loads((copy / "graftwork.json").read_text())
    manifest.pop("artifacts", None)
    manifest.pop("manifest_sha256")  # edited by hand: as a bundle from before the manifest hash
    (copy / "graftwork.json").write_text(json.dumps(manifest))
    with pytest.raises(graftwork.BundleError, match="graft export .* --onnx --int8"):
        graftwork.load(copy, backend="onnx-int8")
    assert np.isfinite(graftwork.load(copy).predict(TEXTS)[0]["score"])
