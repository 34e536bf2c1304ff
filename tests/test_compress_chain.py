"""A recipe's compress section chains distil → prune → export after training, and the report
shows every stage's metric, throughput and size."""

from __future__ import annotations

import json

import torch

import graftwork
from conftest import tiny_recipe
from graftwork.errors import RecipeError


def test_compress_section_runs_every_stage_and_reports_the_tradeoff(
    tiny_bert, sst2_small, tmp_path
):
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        recipe = tiny_recipe(
            tiny_bert,
            sst2_small,
            tmp_path,
            train={"epochs": 1},
            compress={
                "distill": {"student_layers": 1, "epochs": 1},
                "prune": {"heads": 0.25, "ffn": 0.25, "recovery_epochs": 0.5},
                "export": {"int8": True},
            },
        )
        result = graftwork.run(recipe)
    finally:
        torch.set_num_threads(threads)
    stages = result.metrics["stages"]
    assert [(r["stage"], r["backend"]) for r in stages] == [
        ("trained", "torch"),
        ("distilled", "torch"),
        ("pruned", "torch"),
        ("pruned", "onnx-fp32"),
        ("pruned", "onnx-int8"),
    ]
    assert all(r["inputs_per_second"] > 0 and 0 <= r["value"] <= 1 for r in stages)
    pruned = json.loads(
        (tmp_path / "tiny-student" / "bundle-pruned" / "graftwork.json").read_text()
    )
    assert pruned["pruning"]["intermediate_size"] == 48
    assert pruned["distillation"]["kept_layers"] == [1]
    html = (result.run_dir / "report.html").read_text()
    assert "accuracy vs throughput vs size" in html and html.count("<svg") == 3
    saved = json.loads((result.run_dir / "metrics.json").read_text())
    assert saved["stages"] == json.loads(json.dumps(stages))


def test_compress_keys_are_validated():
    try:
        graftwork.load_recipe({"compress": {"prune": {"heads": 1.5}}})
    except RecipeError as err:
        assert "compress.prune.heads" in str(err)
    else:
        raise AssertionError("heads: 1.5 was accepted")
