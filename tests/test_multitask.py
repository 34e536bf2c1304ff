"""Multi-task learning: a shared encoder, one head per task, batches sampled per task."""

from __future__ import annotations

import json
import shutil
from types import SimpleNamespace

import pytest
import torch
from safetensors import safe_open
from safetensors.torch import load_file, save_file

import graftwork
from conftest import tiny_recipe
from graftwork.bundle import read_manifest, write_manifest
from graftwork.bundle.tasks import expand
from graftwork.config.recipe import MultiTaskConfig, load_recipe
from graftwork.errors import BundleError, RecipeError
from graftwork.runs.finetune import train
from graftwork.runs.multitask import batch_plan, sampling_weights
from graftwork.serve import load_models, make_config

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
    # the shared encoder was trained
    root = AutoModel.from_pretrained(str(result.bundle)).state_dict()
    start = AutoModel.from_pretrained(str(tiny_bert)).state_dict()
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


# One encoder on disk and in memory ----------------------------------------------------------


@pytest.fixture(scope="module", params=[False, True], ids=["sentiment-first", "ner-first"])
def trained(request, tiny_bert, sst2_small, conll_small, tmp_path_factory):
    """A trained two-task bundle (root task, other task, the run's result)."""
    out = tmp_path_factory.mktemp("mt")
    result = train(multitask_recipe(tiny_bert, sst2_small, conll_small, out, request.param))
    root_task, other = ("ner", "sentiment") if request.param else ("sentiment", "ner")
    return root_task, other, result


def tensor_bytes(path, keep=lambda name: True) -> int:
    with safe_open(str(path), framework="pt") as weights:
        names = [k for k in list(weights.keys()) if keep(k)]
        return sum(
            weights.get_tensor(k).numel() * weights.get_tensor(k).element_size() for k in names
        )


def test_the_bundle_stores_the_encoder_once(trained):
    _, other, result = trained
    bundle, folder = result.bundle, result.bundle / "tasks" / other
    assert not (folder / "model.safetensors").exists()
    with safe_open(str(folder / "head.safetensors"), framework="pt") as head:
        assert list(head.keys()) and not [k for k in head.keys() if k.startswith("bert.")]  # noqa: SIM118
    encoder = tensor_bytes(bundle / "model.safetensors", lambda k: k.startswith("bert."))
    weights = sum(p.stat().st_size for p in bundle.rglob("*.safetensors"))
    assert weights < 1.3 * encoder


def plain_transformers_model(bundle, task: str, folder):
    """A task model built as bundle.tasks documents it, with transformers alone."""
    from transformers import (
        AutoConfig,
        AutoModelForSequenceClassification,
        AutoModelForTokenClassification,
    )

    auto = AutoModelForTokenClassification if task == "ner" else AutoModelForSequenceClassification
    if folder == bundle:
        return auto.from_pretrained(str(bundle)).eval()
    config = AutoConfig.from_pretrained(str(folder))
    model = auto.from_pretrained(str(bundle), config=config, ignore_mismatched_sizes=True)
    model.load_state_dict(load_file(str(folder / "head.safetensors")), strict=False)
    return model.eval()


def test_each_task_answers_as_before_the_encoder_was_shared(trained, sst2_small, conll_small):
    root_task, other, result = trained
    evals = {"sentiment": (sst2_small["eval"], "accuracy"), "ner": (conll_small["eval"], "f1")}
    for task in (root_task, other):
        predictor = graftwork.load(result.bundle, task=task)
        file, metric = evals[task]
        # the metrics of the trained models in memory, as the run recorded them
        assert predictor.evaluate(file)[metric] == result.metrics["tasks"][task]["eval"][metric]
        folder = result.bundle if task == root_task else result.bundle / "tasks" / task
        reference = plain_transformers_model(result.bundle, task, folder)
        batch = predictor.tokenizer(["Peter saw a fine film in Berlin ."], return_tensors="pt")
        with torch.no_grad():
            expected = reference(**batch).logits
            assert torch.allclose(predictor.model(**batch).logits, expected, atol=1e-6)


def test_the_tasks_of_one_bundle_share_one_encoder_in_memory(trained):
    root_task, other, result = trained
    first = graftwork.load(result.bundle, task=root_task)
    second = graftwork.load(result.bundle, task=other)
    assert first.model.bert is second.model.bert
    config = make_config(threads=torch.get_num_threads())  # torch's setting is global
    served = [m.predictor.model.bert for m in load_models([f"svc={result.bundle}"], config)]
    assert len(served) == 2 and served[0] is served[1]
    pointers = {e.embeddings.word_embeddings.weight.data_ptr() for e in served}
    assert len(pointers) == 1


def copy_of(result, tmp_path):
    bundle = tmp_path / "bundle"
    shutil.copytree(result.bundle, bundle)
    return bundle


def test_a_task_manifest_edited_to_another_task_is_refused(trained, tmp_path):
    _, other, result = trained
    bundle = copy_of(result, tmp_path)
    manifest = bundle / "tasks" / other / "graftwork.json"
    data = json.loads(manifest.read_text())
    data["task"] = "qa"
    manifest.write_text(json.dumps(data))
    with pytest.raises(BundleError, match=r"says task 'qa', but its config.json holds a Bert"):
        graftwork.load(bundle, task=other)


def test_a_changed_shared_encoder_is_caught_when_a_task_folder_is_loaded(trained, tmp_path):
    _, other, result = trained
    bundle = copy_of(result, tmp_path)
    weights = load_file(str(bundle / "model.safetensors"))
    weights["bert.embeddings.word_embeddings.weight"] += 1
    save_file(weights, str(bundle / "model.safetensors"), metadata={"format": "pt"})
    with pytest.raises(BundleError, match=r"model.safetensors changed after the bundle"):
        graftwork.load(bundle / "tasks" / other)


def test_a_bundle_from_before_the_shared_encoder_loads_as_it_did(trained, tmp_path):
    root_task, other, result = trained
    bundle = copy_of(result, tmp_path)
    folder = bundle / "tasks" / other
    plain_transformers_model(bundle, other, folder).save_pretrained(str(folder))  # whole model
    (folder / "head.safetensors").unlink()
    for path in (folder, bundle):  # manifests as they were: no encoder key
        old = {
            k: v
            for k, v in read_manifest(path, verify=False).dump().items()
            if k not in ("encoder", "files")
        }
        write_manifest(path, old)
    new = graftwork.load(result.bundle, task=other)
    before = graftwork.load(bundle, task=other)
    assert before.model.bert is not graftwork.load(bundle, task=root_task).model.bert
    batch = new.tokenizer(["Peter saw a fine film in Berlin ."], return_tensors="pt")
    with torch.no_grad():
        assert torch.allclose(before.model(**batch).logits, new.model(**batch).logits, atol=1e-6)
