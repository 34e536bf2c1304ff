"""`graft compare` (methods side by side, each in its own process) and `graft advise`."""

from __future__ import annotations

import json
import re
import time
from pathlib import Path

import pytest
import yaml
from typer.testing import CliRunner

from conftest import tiny_recipe
from graftwork.cli import app
from graftwork.errors import GraftError
from graftwork.machine import PeakMemory, heap_in_use_mb
from graftwork.runs import advise as rules
from graftwork.runs.advise import SERVING, advise
from graftwork.runs.compare import compare, parse_lrs


def test_compare_runs_every_method_and_measures_it(tiny_bert, sst2_small, tmp_path):
    path = tmp_path / "tiny.yaml"
    recipe = tiny_recipe(tiny_bert, sst2_small, tmp_path / "runs")
    path.write_text(yaml.safe_dump(recipe), encoding="utf-8")
    rows, folder = compare(path, ["full", "frozen", "adapter"], ["train.epochs=0.5"])
    by = {row["method"]: row for row in rows}
    assert list(by) == ["full", "frozen", "adapter"]
    assert by["full"]["trainable_pct"] == 100
    assert by["frozen"]["trainable"] < by["adapter"]["trainable"] < by["full"]["trainable"]
    assert by["adapter"]["task_specific_mb"] < by["full"]["task_specific_mb"]
    for row in rows:
        assert 0 <= row["value"] <= 1 and row["examples_per_second"] > 0
        assert row["peak_rss_mb"] >= row["rss_before_mb"] > 0
    # each method got its learning rate: the recipe's own for full, the table's for the others
    lrs = {
        m: json.loads((tmp_path / "runs" / f"tiny-{m}" / "bundle" / "graftwork.json").read_text())[
            "recipe"
        ]["train"]["lr"]
        for m in by
    }
    assert lrs == {"full": 1e-3, "frozen": 5e-3, "adapter": 3e-3}
    saved = json.loads((folder / "compare.json").read_text())
    assert [r["method"] for r in saved["rows"]] == ["full", "frozen", "adapter"]
    assert "<svg" in (folder / "report.html").read_text()


def test_compare_refuses_unknown_methods_and_bad_lrs(tmp_path):
    with pytest.raises(GraftError, match="choose from"):
        compare(tmp_path / "r.yaml", ["full", "prompt"])
    with pytest.raises(GraftError, match="METHOD=VALUE"):
        parse_lrs(["lora"])
    with pytest.raises(GraftError, match="not a number"):
        parse_lrs(["lora=fast"])


def test_peak_memory_sees_an_allocation_inside_the_block():
    import torch

    with PeakMemory(interval=0.005) as memory:
        block = torch.ones(128 * 2**20 // 4)  # 128 MiB
        block += 1
        # a sampler sees what lives across its samples: keep the block until a sample has seen
        # it (or 2 s pass: then the asserts below fail), since on a busy machine the thread can
        # sleep through a block that lives under a millisecond
        deadline = time.monotonic() + 2.0
        while time.monotonic() < deadline and not (
            memory.peak_mb - memory.start_mb > 64
            and (memory.heap_peak_mb or 0.0) - (memory.heap_start_mb or 0.0) > 120
        ):
            time.sleep(0.005)
        del block
    measured = memory.as_dict()
    # RSS rises by less than the block when the kernel drops file pages meanwhile (a busy
    # machine): half of it is the bound
    assert measured["training_rss_mb"] > 64
    # the heap in use rises with the block and falls back when it is freed (RSS need not)
    assert measured["training_heap_mb"] > 120
    assert heap_in_use_mb() < measured["peak_heap_mb"] - 120


def test_advise_picks_the_most_accurate_option_within_the_latency_budget():
    generous = advise(examples=60_000, labels=2, latency_ms=50)
    tight = advise(examples=60_000, labels=2, latency_ms=3)
    assert generous.backbone == "minilm-l6" and generous.method == "full"
    assert SERVING[0][0] in generous.compression
    assert SERVING[1][0] in tight.compression
    assert "over budget" in advise(examples=60_000, labels=2, latency_ms=0.5).compression
    # longer inputs scale the measured latency
    assert SERVING[1][0] in advise(examples=60_000, labels=2, latency_ms=6, tokens=100).compression


def test_advise_follows_data_size_languages_and_shared_backbones():
    assert advise(examples=800, labels=2, latency_ms=50).method == "adapter"
    assert advise(examples=5_000, labels=2, latency_ms=50).method == "full"
    assert advise(examples=60_000, labels=2, latency_ms=50, tasks=3).method == "adapter"
    german = advise(examples=60_000, labels=7, latency_ms=50, languages=["en", "de"])
    assert german.backbone == "e5-small-multilingual"
    few = advise(examples=100, labels=10, latency_ms=50)
    assert any("10 examples per label" in reason for reason in few.reasons)
    for advice in (german, few):
        assert all("?" not in reason for reason in advice.reasons), advice.reasons


ADVISE = ["advise", "--examples", "2000", "--labels", "2", "--latency-ms", "10"]


def test_advise_cli_prints_the_reasons_and_rejects_nonsense():
    runner = CliRunner()
    result = runner.invoke(
        app, ["advise", "--examples", "20000", "--labels", "3", "--latency-ms", "10"]
    )
    assert result.exit_code == 0, result.output
    assert "backbone" in result.output and "BENCHMARKS.md" in result.output
    generation = runner.invoke(app, [*ADVISE, "--task", "causal_lm"])
    assert generation.exit_code == 0 and "smollm2-135m" in generation.output
    bad = runner.invoke(app, ["advise", "--examples", "0", "--labels", "3", "--latency-ms", "10"])
    assert isinstance(bad.exception, GraftError) and "--examples" in str(bad.exception)


BENCHMARKS = Path(__file__).parents[1] / "BENCHMARKS.md"


def test_other_languages_get_the_packaged_multilingual_encoder_and_its_measured_f1():
    german = advise(examples=6_000, labels=7, latency_ms=50, languages=["en", "de"])
    assert german.backbone == "e5-small-multilingual"
    (why,) = [r for r in german.reasons if "e5-small-multilingual" in r]
    assert "70.63" in why and "28.92" in why and "not measured" not in why
    french = advise(examples=6_000, labels=7, latency_ms=50, languages=["fr"])
    assert french.backbone == "e5-small-multilingual"
    assert any("fr not measured here (only German was)" in r for r in french.reasons)


@pytest.mark.parametrize(
    ("examples", "method"),
    [(20, "zero-shot (label descriptions)"), (100, "fewshot (SetFit)"), (2_000, "adapter")],
)
def test_few_labelled_examples_per_label_get_zero_shot_then_setfit(examples, method):
    advice = advise(examples=examples, labels=2, latency_ms=50)
    assert advice.method == method
    assert any("graft fewshot RECIPE" in r for r in advice.reasons) == (examples <= 128)


def test_few_shot_is_advised_for_classification_only():
    assert advise(examples=100, labels=2, latency_ms=50, task="ner").method == "adapter"


@pytest.mark.parametrize("task", ["causal_lm", "seq2seq"])
def test_generation_gets_smollm2_with_lora_and_its_measured_gain(task):
    advice = advise(examples=2_000, labels=2, latency_ms=50, task=task)
    assert advice.backbone == "smollm2-135m" and advice.method.startswith("lora")
    assert any("11.28" in r for r in advice.reasons)
    assert "none measured" in advice.compression


def test_qa_cites_the_squad_figures_and_says_latency_was_measured_on_classification():
    advice = advise(examples=7_000, labels=2, latency_ms=50, task="qa")
    assert advice.backbone == "minilm-l6"
    assert any("63.04" in r and "66.14" in r for r in advice.reasons)
    assert any("not qa" in r for r in advice.reasons)
    assert not any("examples per label" in r for r in advice.reasons)


def test_an_unknown_task_is_refused_with_the_choices():
    with pytest.raises(GraftError, match="--task 'poetry': choose from classification"):
        advise(examples=100, labels=2, latency_ms=50, task="poetry")


SCENARIOS = [
    {"examples": 60_000, "labels": 2, "latency_ms": 50},
    {"examples": 60_000, "labels": 2, "latency_ms": 0.5, "tokens": 100},
    {"examples": 800, "labels": 2, "latency_ms": 3, "tasks": 3},
    {"examples": 20, "labels": 2, "latency_ms": 50, "languages": ["de", "nl"]},
    {"examples": 100, "labels": 2, "latency_ms": 50},
    {"examples": 7_000, "labels": 2, "latency_ms": 50, "task": "qa"},
    {"examples": 2_000, "labels": 2, "latency_ms": 50, "task": "causal_lm"},
]


@pytest.mark.parametrize("scenario", SCENARIOS)
def test_every_measurement_cited_names_the_cpu_it_was_measured_on(scenario):
    cited = [r for r in advise(**scenario).reasons if "BENCHMARKS.md, " in r]
    assert cited
    for reason in cited:
        assert "AMD EPYC" in reason or "Intel Xeon" in reason, reason


@pytest.mark.parametrize(
    "name", ["MULTILINGUAL", "FEW_SHOT", "GENERATION", "GENERATION_SERVING", "QA"]
)
def test_every_figure_in_a_rule_is_one_benchmarks_md_records(name):
    recorded = BENCHMARKS.read_text(encoding="utf-8")
    figures = re.findall(r"\d+\.\d+", getattr(rules, name))
    assert figures
    for figure in figures:
        assert re.search(rf"(?<![\d.]){re.escape(figure)}(?![\d])", recorded), figure
