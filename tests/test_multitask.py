"""Multi-task learning: a shared encoder, one head per task, batches sampled per task."""

from __future__ import annotations

from types import SimpleNamespace

import pytest
import torch

import graftwork
from conftest import tiny_recipe
from graftwork.bundle.tasks import expand
from graftwork.config.recipe import MultiTaskConfig, load_recipe
from graftwork.errors import BundleError, RecipeError
from graftwork.runs.finetune import train
from graftwork.runs.multitask import batch_plan, sampling_weights

TASKS = {"a": {"task": {"type": "classification"}, "data": {}}, "b": {"task": {}, "data": {}}}


def config(**values) -> MultiTaskConfig:
    return MultiTaskConfig(tasks=TASKS, **values)


@pytest.mark.parametrize(
    "sampling, temperature, expected",
    [("proportional", 1, 0.8), ("temperature", 2, 2 / 3), ("equal", 1, 0.5)],
)
def test_batches_follow_the_sampling_weights(sampling, temperature, expected):
    cfg = config(sampling=sampling, temperature=temperature)
    assert sampling_weights([800, 200], cfg)[0] == pytest.approx(expected)
    lengths = [[5 + i % 7 for i in range(800)], [9 + i % 3 for i in range(200)]]
    plan = batch_plan(lengths, SimpleNamespace(batch_size=8, seed=3), cfg)
    batches = [b for epoch in range(20) for b in plan(epoch)]
    assert len(plan(0)) == 100 + 25  # an epoch is as many batches as all tasks have
    task_of = [{0 if i < 800 else 1 for i in batch} for batch in batches]
    assert all(len(tasks) == 1 for tasks in task_of)  # one task per batch
    share = sum(tasks == {0} for tasks in task_of) / len(task_of)
    assert share == pytest.approx(expected, abs=0.03)
    assert plan(4) == plan(4)  # a pure function of the epoch (exact resume)
    assert plan(4) != plan(5)


def multitask_recipe(tiny_bert, sst2_small, conll_small, out, ner_first=False, **sections):
    recipe = tiny_recipe(tiny_bert, sst2_small, out, **sections)
    recipe["name"] = "mt"
    recipe.pop("task")
    data = recipe.pop("data")
    recipe["multitask"] = {
        "tasks": {
            "sentiment": {"task": {"type": "classification"}, "data": data},
            "ner": {
                "task": {"type": "ner"},
                "data": {
                    **data,
                    "train": str(conll_small["train"]),
                    "eval": str(conll_small["eval"]),
                },
            },
        },
        "sampling": "proportional",
    }
    if ner_first:  # as recipes/multitask-conll-sst2.yaml: the NER model has no pooler
        tasks = recipe["multitask"]["tasks"]
        recipe["multitask"]["tasks"] = {"ner": tasks["ner"], "sentiment": tasks["sentiment"]}
    return recipe


@pytest.mark.parametrize("ner_first", [False, True])
def test_one_bundle_serves_every_head_on_one_encoder(
    tiny_bert, sst2_small, conll_small, tmp_path, ner_first
):
    from transformers import AutoModel

    result = train(multitask_recipe(tiny_bert, sst2_small, conll_small, tmp_path, ner_first))
    root_task, other = ("ner", "sentiment") if ner_first else ("sentiment", "ner")
    tasks = result.metrics["tasks"]
    assert set(tasks) == {"sentiment", "ner"}
    assert "accuracy" in tasks["sentiment"]["eval"] and "f1" in tasks["ner"]["eval"]
    # the encoder is one: the same weights in both task folders, and it was trained
    root = AutoModel.from_pretrained(str(result.bundle)).state_dict()
    second = AutoModel.from_pretrained(str(result.bundle / "tasks" / other)).state_dict()
    start = AutoModel.from_pretrained(str(tiny_bert)).state_dict()
    assert all(torch.equal(root[k], second[k]) for k in root)
    assert not torch.equal(
        root["embeddings.word_embeddings.weight"], start["embeddings.word_embeddings.weight"]
    )
    # the bundle answers for each task
    sentiment = graftwork.load(result.bundle, task="sentiment")
    assert sentiment.predict(["a fine film"])[0]["label"] in {"0", "1"}
    tagger = graftwork.load(result.bundle, task="ner")
    assert "entities" in tagger.predict(["Peter lives in Berlin ."])[0]
    again = tagger.evaluate(conll_small["eval"])
    assert again["f1"] == pytest.approx(tasks["ner"]["eval"]["f1"])
    root_type = "ner" if ner_first else "classification"
    assert graftwork.load(result.bundle).task_config.type == root_type
    with pytest.raises(BundleError, match=f"no task 'pos'; its tasks: {root_task}, {other}"):
        graftwork.load(result.bundle, task="pos")
    specs = expand([f"svc={result.bundle}"])
    assert specs == [
        f"svc-{root_task}={result.bundle / '.'}",
        f"svc-{other}={result.bundle / 'tasks' / other}",
    ]


def test_multitask_recipes_are_checked(tiny_bert, sst2_small, conll_small, tmp_path):
    recipe = multitask_recipe(tiny_bert, sst2_small, conll_small, tmp_path)
    one = {**recipe, "multitask": {"tasks": {"only": recipe["multitask"]["tasks"]["ner"]}}}
    with pytest.raises(RecipeError, match="at least two tasks"):
        load_recipe(one)
    with pytest.raises(RecipeError, match="top-level data section empty"):
        train({**recipe, "data": {"train": str(sst2_small["train"])}})
    with pytest.raises(RecipeError, match="supports method full"):
        train({**recipe, "method": "lora", "name": "mt-lora"})
    typo = {**recipe, "multitask": {**recipe["multitask"], "samplng": "equal"}}
    with pytest.raises(RecipeError, match="sampling"):
        load_recipe(typo)
