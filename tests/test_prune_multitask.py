"""Pruning a multi-task bundle: the root (its first task) or a task folder (`tasks/NAME`) prunes
into a standalone single-task bundle of that task, which loads and answers on its own."""

from __future__ import annotations

import pytest

import graftwork
from graftwork.bundle import read_manifest
from graftwork.runs.finetune import train
from graftwork.runs.prune import prune_bundle
from test_multitask import multitask_recipe

MULTITASK_KEYS = ("multitask", "encoder", "multitask_of")


@pytest.fixture(scope="module")
def multitask_bundle(tiny_bert, sst2_small, conll_small, tmp_path_factory):
    """A trained two-task bundle: sentiment at the root, ner in tasks/ner."""
    out = tmp_path_factory.mktemp("mt-prune")
    return train(multitask_recipe(tiny_bert, sst2_small, conll_small, out)).bundle


def pruned(source, data, out):
    prune_bundle(source, out, heads=0.5, ffn=0.25, data=data, recovery_epochs=0, seed=5)
    return out


def test_pruning_the_root_of_a_multitask_bundle_gives_a_bundle_of_its_first_task(
    multitask_bundle, sst2_small, tmp_path
):
    out = pruned(multitask_bundle, sst2_small["train"], tmp_path / "pruned")
    manifest = read_manifest(out)
    assert [k for k in MULTITASK_KEYS if manifest.get(k) is not None] == []
    predictor = graftwork.load(out)
    assert manifest.task == "classification"
    assert predictor.predict(["a fine film"])[0]["label"] in predictor.id2label.values()


def test_pruning_a_task_folder_gives_a_standalone_bundle_of_that_task(
    multitask_bundle, conll_small, tmp_path
):
    out = pruned(multitask_bundle / "tasks" / "ner", conll_small["train"], tmp_path / "pruned")
    manifest = read_manifest(out)
    assert [k for k in MULTITASK_KEYS if manifest.get(k) is not None] == []
    answer = graftwork.load(out).predict(["John lives in Paris"])[0]
    assert len(answer["tags"]) == 4
