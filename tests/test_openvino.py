"""OpenVINO export and backends: an FP32 IR at parity, a static INT8 IR within an accuracy
budget (operations put back in FP32 where plain INT8 loses more), both served by `auto`."""

from __future__ import annotations

import json
import shutil

import numpy as np
import pytest
from typer.testing import CliRunner

import graftwork
from graftwork.cli import app
from graftwork.export import export_bundle
from graftwork.export import openvino as ov_export
from test_export import trained_bundles

ov = pytest.importorskip("openvino", reason="the openvino extra is not installed")
pytest.importorskip("nncf", reason="the openvino extra is not installed")

TEXTS = ["a gripping , funny film", "dull and far too long", "the cast is wonderful", "meh"]
KEY = {"classification": "label", "ner": "tags"}


@pytest.fixture(scope="module")
def trained(tiny_bert, sst2_small, conll_small, tmp_path_factory):
    """Copies of test_export.py's tiny bundles (trained once per session)."""
    return trained_bundles(tiny_bert, sst2_small, conll_small, tmp_path_factory)


@pytest.fixture(scope="module")
def exported(trained):
    """Both bundles exported once (ONNX and OpenVINO, FP32 and INT8, any accuracy change)."""
    return {
        task: export_bundle(bundle, openvino=True, int8=True, max_drop=100.0)
        for task, bundle in trained.items()
    }


@pytest.mark.parametrize("task", ["classification", "ner"])
def test_openvino_export_records_parity_and_serves_the_torch_answers(trained, exported, task):
    bundle, artifacts = trained[task], exported[task]
    manifest = json.loads((bundle / "graftwork.json").read_text())
    assert manifest["artifacts"] == json.loads(json.dumps(artifacts))
    assert artifacts["openvino-fp32"]["max_abs_logit_diff"] <= 1e-4
    assert {"openvino/model.xml", "openvino/model.bin"} <= set(manifest["files"])
    assert {"openvino/model-int8.xml", "openvino/model-int8.bin"} <= set(manifest["files"])
    int8 = artifacts["openvino-int8"]
    assert int8["max_drop"] == 100.0 and int8["kept_fp32"] == []
    assert int8["change_points"] == pytest.approx(100 * (int8["int8"] - int8["pytorch"]))

    torch_answers = graftwork.load(bundle, backend="torch").predict(TEXTS)
    fp32_answers = graftwork.load(bundle, backend="openvino-fp32").predict(TEXTS)
    assert [a[KEY[task]] for a in fp32_answers] == [a[KEY[task]] for a in torch_answers]
    assert graftwork.load(bundle).backend == "openvino-int8"  # the fastest within its budget


def test_the_int8_file_stores_the_embedding_table_in_int8(trained, exported):
    bundle = trained["classification"]
    fp32 = (bundle / "openvino" / "model.bin").stat().st_size
    int8 = (bundle / "openvino" / "model-int8.bin").stat().st_size
    assert int8 < 0.4 * fp32


def int8_layers(compiled) -> int:
    """How many matrix products of a compiled model run in INT8."""
    kinds = [op.get_rt_info() for op in compiled.get_runtime_model().get_ops()]
    return sum(
        r["layerType"].astype(str) in ("FullyConnected", "MatMul")
        and r["runtimePrecision"].astype(str) in ("i8", "u8")
        for r in kinds
    )


def test_plain_int8_over_the_budget_keeps_operations_in_fp32_until_within_it(
    trained, monkeypatch, tmp_path
):
    """A metric that loses 4 points per INT8 matrix product (a stand-in for a model INT8 hurts,
    which a tiny random model is not reliably): plain INT8 is far over a 10-point budget, so
    NNCF's accuracy control must put operations back in FP32 until the drop is within it, and
    the manifest must name them."""
    bundle = shutil.copytree(trained["classification"], tmp_path / "bundle")
    real = ov_export.quantize_within

    def harsh(fp32_xml, xml, batches, score, reference, max_drop):
        def judged(compiled):
            return reference - 0.04 * int8_layers(compiled)

        return real(fp32_xml, xml, batches, judged, reference, max_drop)

    monkeypatch.setattr(ov_export, "quantize_within", harsh)
    artifacts = export_bundle(bundle, openvino=True, int8=True, max_drop=10.0)
    int8 = artifacts["openvino-int8"]
    assert int8["kept_fp32"], "no operation was kept in FP32"
    assert int8["change_points"] >= -10.0
    assert int8["max_drop"] == 10.0
    compiled = ov.Core().compile_model(str(bundle / int8["path"]), "CPU")
    assert 0 < int8_layers(compiled) <= 2  # within the budget, and still INT8


def test_auto_refuses_an_artifact_over_its_budget(trained, exported, tmp_path):
    bundle = shutil.copytree(trained["classification"], tmp_path / "bundle")
    manifest_path = bundle / "graftwork.json"
    manifest = json.loads(manifest_path.read_text())
    assert graftwork.load(bundle, verify=False).backend == "openvino-int8"
    manifest["artifacts"]["openvino-int8"]["change_points"] = -3.0
    manifest["artifacts"]["openvino-int8"]["max_drop"] = 0.5
    manifest_path.write_text(json.dumps(manifest))
    assert graftwork.load(bundle, verify=False).backend == "onnx-int8"  # next within budget
    named = graftwork.load(bundle, verify=False, backend="openvino-int8")  # asked for by name
    assert named.backend == "openvino-int8"


def test_int8_answers_do_not_depend_on_the_batch(trained, exported):
    """Static INT8 runs whole batches: a text's label is the same alone and padded beside the
    longest text."""
    bundle = trained["classification"]
    predictor = graftwork.load(bundle, backend="openvino-int8")
    texts = [*TEXTS, "a long , long and winding sentence " * 6]
    alone = [predictor.predict([t])[0] for t in texts]
    together = predictor.predict(texts)
    assert [a["label"] for a in alone] == [a["label"] for a in together]
    assert np.allclose([a["score"] for a in alone], [a["score"] for a in together], atol=1e-2)


def test_graft_info_says_which_backend_auto_serves_and_why(trained, exported, tmp_path):
    bundle = shutil.copytree(trained["classification"], tmp_path / "bundle")
    shown = CliRunner().invoke(app, ["info", str(bundle)])
    assert shown.exit_code == 0, shown.output
    assert "auto serves it with: openvino-int8" in shown.output
    manifest = json.loads((bundle / "graftwork.json").read_text())
    manifest["artifacts"]["openvino-int8"].update(change_points=-3.0, max_drop=0.5)
    del manifest["manifest_sha256"]  # edited by hand, as a bundle from before the hash
    (bundle / "graftwork.json").write_text(json.dumps(manifest))
    shown = CliRunner().invoke(app, ["info", str(bundle)])
    assert "auto serves it with: onnx-int8" in shown.output
    assert "passed over openvino-int8: changes accuracy by -3.00 points" in shown.output
