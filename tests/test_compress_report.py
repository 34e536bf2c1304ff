"""graft compress-report: every artifact of some bundles in one table and one plot, the Pareto
front (accuracy, throughput, size) marked; the compress chain writes the same report."""

from __future__ import annotations

import json

import pytest
from typer.testing import CliRunner

import graftwork
from conftest import tiny_recipe
from graftwork.cli import app
from graftwork.config.recipe import load_recipe
from graftwork.errors import BundleError
from graftwork.export import export_bundle
from graftwork.runs.compress import REPORT_DIR, run_compress
from graftwork.runs.compress_report import bundle_rows, pareto
from graftwork.runs.finetune import train
from graftwork.runs.prune import prune_bundle

runner = CliRunner()


@pytest.fixture(scope="module")
def bundles(tiny_bert, sst2_small, tmp_path_factory):
    """A tiny classifier exported to ONNX and OpenVINO (FP32, INT8), and a pruned copy of it
    that holds only its PyTorch weights."""
    out = tmp_path_factory.mktemp("compress-report")
    trained = train(tiny_recipe(tiny_bert, sst2_small, out / "run", train={"epochs": 0.5})).bundle
    pruned = trained.with_name("bundle-pruned")
    prune_bundle(trained, pruned, heads=0.25, ffn=0.25, recovery_epochs=0, max_examples=64)
    export_bundle(trained, int8=True, openvino=True, limit=50, max_drop=100.0)
    return trained, pruned


def test_pareto_front_keeps_the_rows_no_other_row_beats_in_every_objective():
    rows = [
        {"value": 0.90, "inputs_per_second": 100.0, "size_mb": 90.0},  # most accurate
        {"value": 0.89, "inputs_per_second": 300.0, "size_mb": 90.0},  # faster
        {"value": 0.88, "inputs_per_second": 250.0, "size_mb": 90.0},  # beaten by the one above
        {"value": 0.88, "inputs_per_second": 250.0, "size_mb": 20.0},  # smallest
        {"value": 0.89, "inputs_per_second": 300.0, "size_mb": 95.0},  # the faster one, bigger
        {"value": None, "inputs_per_second": 900.0, "size_mb": 1.0},  # no metric: not ranked
    ]
    assert pareto(rows) == [True, True, False, True, False, False]


def test_equal_rows_are_both_on_the_front():
    row = {"value": 0.5, "inputs_per_second": 10.0, "size_mb": 1.0}
    assert pareto([row, dict(row)]) == [True, True]


def test_the_report_has_one_row_per_bundle_and_artifact_and_the_plot(bundles, tmp_path):
    trained, pruned = bundles
    out = tmp_path / "report"
    args = ["compress-report", str(trained), str(pruned), "--output", str(out), "--examples", "32"]
    result = runner.invoke(app, args)
    assert result.exit_code == 0, result.output
    rows = json.loads((out / "compress_report.json").read_text())["rows"]
    assert [(r["stage"], r["backend"]) for r in rows] == [
        ("trained", "torch"),
        ("trained", "onnx-fp32"),
        ("trained", "openvino-fp32"),
        ("trained", "onnx-int8"),
        ("trained", "openvino-int8"),
        ("pruned", "torch"),
    ]
    assert all(r["inputs_per_second"] > 0 and r["timed_on"].startswith("32 texts") for r in rows)
    size = {r["backend"]: r["size_mb"] for r in rows if r["stage"] == "trained"}
    assert size["openvino-int8"] < size["openvino-fp32"] and size["onnx-int8"] < size["torch"]
    assert any(r["pareto"] for r in rows)
    page = (out / "report.html").read_text()
    assert page.count("<svg") == 1 and page.count("<tr>") >= len(rows) + 1
    assert "openvino-int8" in result.output and str(out / "report.html") in result.output


def test_accuracy_is_the_recorded_metric_plus_the_exports_change(bundles):
    trained, _ = bundles
    manifest = graftwork.load(trained, backend="torch").manifest
    rows = {r["backend"]: r for r in bundle_rows(None, trained, limit=8, repeats=1)}
    recorded = manifest.metrics["eval"]["accuracy"]
    assert rows["torch"]["value"] == rows["onnx-fp32"]["value"] == recorded
    for name in ("onnx-int8", "openvino-int8"):
        change = manifest.artifacts[name]["change_points"]
        assert rows[name]["value"] == pytest.approx(recorded + change / 100)


def test_measure_scores_each_artifact_on_the_first_examples(bundles, sst2_small, tmp_path):
    trained, _ = bundles
    lines = sst2_small["eval"].read_text(encoding="utf-8").splitlines(keepends=True)
    first = tmp_path / "first.tsv"
    first.write_text("".join(lines[:41]), encoding="utf-8")
    rows = bundle_rows(None, trained, sst2_small["eval"], limit=40, measure=True, repeats=1)
    for row in rows:
        expected = graftwork.load(trained, backend=row["backend"]).evaluate(first)["accuracy"]
        assert row["value"] == pytest.approx(expected), row["backend"]
        assert row["accuracy_from"] == "measured on 40 examples"


def test_a_folder_that_is_not_a_bundle_is_refused_before_anything_runs(bundles, tmp_path):
    trained, _ = bundles
    out = tmp_path / "report"
    result = runner.invoke(
        app, ["compress-report", str(trained), str(tmp_path), "--output", str(out)]
    )
    assert isinstance(result.exception, BundleError)  # graft prints it, exit 2
    assert f"{tmp_path} is not a graftwork bundle" in str(result.exception)
    assert not out.exists()


def test_the_compress_chain_writes_the_report_beside_its_bundles(bundles):
    trained, _ = bundles
    recipe = load_recipe(graftwork.load(trained, backend="torch").manifest.recipe)
    rows = run_compress(recipe, trained)
    folder = trained.parent / REPORT_DIR
    saved = json.loads((folder / "compress_report.json").read_text())["rows"]
    assert saved == json.loads(json.dumps(rows)) and len(rows) == 5
    assert all(r["stage"] == "trained" and "pareto" in r for r in rows)
    assert "<svg" in (folder / "report.html").read_text()
