"""Objectives: DANN's gradient reversal and domain classifier, EWC's anchored penalty, each
trained end to end on a tiny model and saved as a plain bundle; bad configs name the key."""

from __future__ import annotations

import json
import math

import pytest
import torch
from safetensors.torch import load_file

import graftwork
from conftest import DATA, conll_sentences, tiny_recipe
from graftwork import registry
from graftwork.backbones import load as backbones
from graftwork.config.recipe import DataConfig, TaskConfig, load_recipe
from graftwork.data.readers import read_examples
from graftwork.errors import DataError, GraftError, RecipeError
from graftwork.objectives import dann, layers, prepare
from graftwork.objectives.dann import DannConfig, schedule
from graftwork.objectives.ewc import penalty
from graftwork.objectives.layers import DomainHead, reverse_gradient
from graftwork.runs.finetune import train
from graftwork.runs.stages import read_splits
from graftwork.train.loop import param_groups


def prepared(recipe: dict):
    """The task model of `recipe` with its objective prepared, as `pipeline.train` does it."""
    recipe = load_recipe(recipe)
    folder = backbones.resolve(recipe.backbone)
    tokenizer = backbones.load_tokenizer(folder, recipe.backbone)
    splits = read_splits(recipe, tokenizer)
    model = backbones.load_model(
        folder, recipe.backbone, splits.task.model_class(), splits.labels, tokenizer
    )
    return model, prepare(recipe, model, splits)


def weights(bundle):
    return load_file(str(bundle / "model.safetensors"))


def manifest(bundle) -> dict:
    return json.loads((bundle / "graftwork.json").read_text())


@pytest.fixture(scope="module")
def wikiann_small(tmp_path_factory):
    """200 target-domain sentences (WikiANN English) and 100 to evaluate on."""
    folder = tmp_path_factory.mktemp("wikiann")
    (folder / "train").write_text(conll_sentences(DATA / "wikiann" / "en" / "train", 200))
    (folder / "test").write_text(conll_sentences(DATA / "wikiann" / "en" / "test", 100))
    return {"target": folder / "train", "test": folder / "test"}


def dann_recipe(tiny_bert, conll_small, wikiann_small, out, **objective) -> dict:
    recipe = tiny_recipe(tiny_bert, conll_small, out, task="ner")
    recipe["data"].update(
        test=str(wikiann_small["test"]), drop_labels=["MISC"], max_train_examples=64
    )
    recipe["objective"] = {"type": "dann", "target": str(wikiann_small["target"]), **objective}
    return recipe


# ---------------------------------------------------------------- DANN mechanics


def test_gradient_reversal_is_the_identity_forward_and_minus_lambda_backward():
    x = torch.randn(4, 3, dtype=torch.float64, requires_grad=True)
    y = reverse_gradient(x, 0.7)
    assert torch.equal(y, x)
    incoming = torch.randn(4, 3, dtype=torch.float64)
    (grad,) = torch.autograd.grad(y, x, incoming)
    torch.testing.assert_close(grad, -0.7 * incoming)


def test_lambda_schedule_is_ganins_and_rises_from_zero_towards_one():
    assert schedule(0.0) == 0.0
    assert schedule(0.5, gamma=10) == pytest.approx(2 / (1 + math.exp(-5)) - 1)
    assert schedule(1.0) == pytest.approx(0.99991, abs=1e-5)
    values = [schedule(p / 10) for p in range(11)]
    assert values == sorted(values)


def test_domain_head_learns_normally_but_sends_the_encoder_the_reversed_gradient():
    head = DomainHead(8, DannConfig(target="unused", hidden=5, dropout=0.0))
    head.coefficient = 0.5
    pooled = torch.randn(4, 8, requires_grad=True)
    reversed_grad, head_grad = torch.autograd.grad(
        head(pooled).sum(), [pooled, head.classifier[0].weight]
    )
    plain_grad, plain_head_grad = torch.autograd.grad(
        head.classifier(pooled).squeeze(-1).sum(), [pooled, head.classifier[0].weight]
    )
    torch.testing.assert_close(reversed_grad, -0.5 * plain_grad)
    torch.testing.assert_close(head_grad, plain_head_grad)


def test_mean_pool_ignores_padding():
    hidden = torch.tensor([[[1.0], [3.0], [100.0]]])
    assert layers.mean_pool(hidden, torch.tensor([[1, 1, 0]])).item() == 2.0


def test_domain_classifier_trains_in_the_loops_optimizer_at_head_lr_and_is_not_saved(
    tiny_bert, conll_small, wikiann_small, tmp_path
):
    recipe = dann_recipe(tiny_bert, conll_small, wikiann_small, tmp_path, head_lr=5.0)
    model, hooks = prepared(recipe)
    head = {id(p) for p in getattr(model, dann.ATTR).parameters()}
    groups = param_groups(model, 0.01, 1e-3, hooks.scales(None))
    assert sum(len(g["params"]) for g in groups) == len(list(model.parameters()))
    for group in groups:
        mine = {id(p) in head for p in group["params"]}
        assert len(mine) == 1  # a group holds head parameters only, or none
        assert group["lr"] == pytest.approx(5e-3 if mine == {True} else 1e-3)
    hooks.finisher(registry.method("full")).finish(model, tmp_path)
    assert not hasattr(model, dann.ATTR)


def test_target_rows_are_a_pure_function_of_seed_step_and_micro_batch():
    rows = dann.target_rows(1000, 32, seed=13, step=5, micro=0)
    assert rows == dann.target_rows(1000, 32, seed=13, step=5, micro=0)
    assert len(rows) == 32 and all(0 <= r < 1000 for r in rows)
    for other in [(13, 6, 0), (13, 5, 1), (14, 5, 0)]:
        assert rows != dann.target_rows(1000, 32, *other)


def test_drop_labels_reads_the_named_entity_types_as_o(conll_small):
    task = TaskConfig(type="ner")
    plain = read_examples(conll_small["train"], task, DataConfig()).examples
    dropped = read_examples(conll_small["train"], task, DataConfig(drop_labels=["MISC"])).examples
    assert any(t.endswith("-MISC") for e in plain for t in e["tags"])
    for a, b in zip(plain, dropped, strict=True):
        assert b["tags"] == ["O" if t.endswith("-MISC") else t for t in a["tags"]]


# ---------------------------------------------------------------- DANN end to end


def test_dann_trains_end_to_end_and_the_bundle_is_a_plain_model(
    tiny_bert, conll_small, wikiann_small, tmp_path
):
    result = train(dann_recipe(tiny_bert, conll_small, wikiann_small, tmp_path, hidden=16))
    info = manifest(result.bundle)
    assert info["objective"]["type"] == "dann"
    assert info["objective"]["target_examples"] == 200
    assert result.metrics["train"]["examples"] == 64
    assert info["objective"]["lambda_last"] == pytest.approx(0.1, rel=2e-3)  # weight · λ_p(≈1)
    assert 0.0 <= info["objective"]["domain_accuracy_recent"] <= 1.0
    assert info["labels"] == ["O", "B-LOC", "I-LOC", "B-ORG", "I-ORG", "B-PER", "I-PER"]
    assert not [k for k in weights(result.bundle) if k.startswith(dann.ATTR)]
    assert "test" in result.metrics  # the target domain is scored
    loaded = graftwork.load(result.bundle)
    assert loaded.evaluate(wikiann_small["test"])["f1"] == pytest.approx(
        result.metrics["test"]["f1"]
    )
    assert "tags" in loaded.predict(["Angela Merkel visited Paris ."])[0]


def test_dann_weight_zero_trains_exactly_as_without_the_objective(
    tiny_bert, conll_small, wikiann_small, tmp_path
):
    recipe = dann_recipe(tiny_bert, conll_small, wikiann_small, tmp_path, hidden=16)
    runs = {
        name: weights(train(recipe, [f"name={name}", *over]).bundle)
        for name, over in {
            "plain": ["objective=null"],
            "zero": ["objective.weight=0"],
            "dann": [],
        }.items()
    }
    plain, zero, adversarial = runs["plain"], runs["zero"], runs["dann"]
    assert all(torch.equal(plain[k], zero[k]) for k in plain)
    assert any(not torch.equal(plain[k], adversarial[k]) for k in plain)


def test_dann_resumes_to_the_same_weights(
    tiny_bert, conll_small, wikiann_small, tmp_path, monkeypatch
):
    # 8 batches an epoch, 2 per step: checkpoints at steps 3, 4 (epoch end) and 6; crash at 7
    train_cfg = {"epochs": 2, "batch_size": 8, "grad_accum": 2, "checkpoint_every": 3}
    recipe = dann_recipe(tiny_bert, conll_small, wikiann_small, tmp_path, hidden=16)
    recipe["train"].update(train_cfg)
    reference = train(recipe, ["name=reference"])

    original = dann.Dann.on_step

    def crash_at_step_7(self, step, steps):
        if step == 7:
            raise KeyboardInterrupt("simulated crash")
        original(self, step, steps)

    monkeypatch.setattr(dann.Dann, "on_step", crash_at_step_7)
    with pytest.raises(KeyboardInterrupt):
        train(recipe, ["name=crashed"])
    monkeypatch.undo()
    assert (tmp_path / "crashed" / "checkpoints" / "step-00000006").is_dir()
    resumed = train(recipe, ["name=crashed"], resume=True)
    got, want = weights(resumed.bundle), weights(reference.bundle)
    assert all(torch.equal(got[k], want[k]) for k in want)
    assert manifest(resumed.bundle)["objective"]["lambda_last"] == pytest.approx(
        manifest(reference.bundle)["objective"]["lambda_last"]
    )


# ---------------------------------------------------------------- EWC


def test_ewc_penalty_is_zero_at_the_anchor_and_positive_away_from_it():
    param = torch.nn.Parameter(torch.randn(6, dtype=torch.float64))
    anchor = param.detach().clone()
    fisher = torch.rand(6, dtype=torch.float64) + 0.1
    assert float(penalty([(param, anchor, fisher)], 50.0).detach()) == 0.0
    with torch.no_grad():
        param.add_(0.1)
    value = penalty([(param, anchor, fisher)], 50.0)
    assert float(value.detach()) > 0
    assert float(value.detach()) == pytest.approx(0.5 * 50.0 * float((fisher * 0.01).sum()))
    (grad,) = torch.autograd.grad(value, param)  # λ F (θ − θ*): pulls back to the anchor
    torch.testing.assert_close(grad, 50.0 * fisher * 0.1)


@pytest.fixture(scope="module")
def task_a(tiny_bert, sst2_small, tmp_path_factory):
    """Task A: the tiny model fine-tuned on SST-2."""
    out = tmp_path_factory.mktemp("task-a")
    return train(tiny_recipe(tiny_bert, sst2_small, out) | {"name": "a"})


def ewc_recipe(tiny_bert, conll_small, task_a, out, strength: float) -> dict:
    recipe = tiny_recipe(tiny_bert, conll_small, out, task="ner")
    recipe["data"]["max_train_examples"] = 64
    recipe["objective"] = {
        "type": "ewc",
        "previous": str(task_a.bundle),
        "lambda": strength,
        "fisher_examples": 100,
    }
    return recipe


def encoder_distance(bundle, anchor) -> float:
    mine = weights(bundle)
    return sum(
        float((mine[k] - anchor[k]).pow(2).sum())
        for k in mine
        if k.startswith("bert.") and k in anchor
    )


def test_ewc_starts_from_task_a_and_keeps_its_encoder_closer_than_plain_fine_tuning(
    tiny_bert, conll_small, task_a, tmp_path
):
    runs = {
        name: train(ewc_recipe(tiny_bert, conll_small, task_a, tmp_path, strength) | {"name": name})
        for name, strength in {"plain": 0.0, "ewc": 1e4}.items()
    }
    anchor = weights(task_a.bundle)
    assert encoder_distance(runs["ewc"].bundle, anchor) < encoder_distance(
        runs["plain"].bundle, anchor
    )
    for name, run in runs.items():
        forgetting = run.metrics["task_a"]
        assert forgetting["metric"] == "accuracy"
        assert forgetting["before"]["eval"]["accuracy"] == pytest.approx(
            task_a.metrics["eval"]["accuracy"]
        )
        assert forgetting["forgetting"]["eval"] == pytest.approx(
            forgetting["before"]["eval"]["accuracy"] - forgetting["after"]["eval"]["accuracy"]
        )
        on_disk = json.loads((run.run_dir / "metrics.json").read_text())
        assert on_disk["task_a"] == forgetting
        info = manifest(run.bundle)["objective"]
        assert info["previous"] == str(task_a.bundle) and info["lambda"] == (
            0.0 if name == "plain" else 1e4
        )
        assert graftwork.load(run.bundle).predict(["EU rejects German call ."])[0]["tags"]
    assert manifest(runs["ewc"].bundle)["objective"]["fisher_examples"] == 100
    assert manifest(runs["ewc"].bundle)["objective"]["penalty_last"] > 0


def test_ewc_task_b_starts_from_task_a_encoder(tiny_bert, conll_small, task_a, tmp_path):
    model, _ = prepared(ewc_recipe(tiny_bert, conll_small, task_a, tmp_path, 0.0))
    anchor = weights(task_a.bundle)
    mine = model.state_dict()
    shared = [k for k in mine if k.startswith("bert.") and k in anchor]
    assert len(shared) > 10
    assert all(torch.equal(mine[k], anchor[k]) for k in shared)


# ---------------------------------------------------------------- bad configs


@pytest.mark.parametrize(
    ("objective", "message"),
    [
        (
            {"type": "dann", "target": "t", "wieght": 1},
            "unknown key 'objective.wieght'. Did you mean 'weight'?",
        ),
        ({"type": "ewc", "previous": "p", "lamda": 1}, "Did you mean 'lambda'?"),
        (
            {"type": "dann", "target": "t", "weight": -1},
            "objective.weight: Input should be greater than or equal to 0",
        ),
        (
            {"type": "ewc", "previous": "p", "lambda": -2},
            "objective.lambda: Input should be greater",
        ),
        ({"type": "dann"}, "objective.target: Field required"),
        ({"target": "t"}, "give the objective's type: dann or ewc"),
        ({"type": "mmd"}, "does not match any of the expected tags: 'dann', 'ewc'"),
    ],
)
def test_bad_objective_configs_name_the_key(objective, message):
    with pytest.raises(RecipeError) as err:
        load_recipe({"task": {"type": "ner"}, "objective": objective})
    assert message in str(err.value)


@pytest.mark.parametrize(
    ("task", "drop", "message"),
    [
        ("ner", ["B-MISC"], "'B-MISC' is not an entity type"),
        ("ner", ["O"], "'O' is not an entity type"),
        ("classification", ["MISC"], "data.drop_labels maps entity types to O, which only NER"),
    ],
)
def test_bad_drop_labels_are_refused(task, drop, message):
    with pytest.raises(RecipeError) as err:
        load_recipe({"task": {"type": task}, "data": {"drop_labels": drop}})
    assert message in str(err.value)


def test_objective_overrides_switch_it_off_or_change_it():
    recipe = {"task": {"type": "ner"}, "objective": {"type": "ewc", "previous": "a", "lambda": 5}}
    assert load_recipe(recipe, ["objective=null"]).objective is None
    assert load_recipe(recipe, ["objective.lambda=0"]).objective.strength == 0.0
    dumped = load_recipe(recipe).model_dump(mode="json")
    assert dumped["objective"]["lambda"] == 5
    assert load_recipe(dumped).objective.strength == 5


def test_dann_with_a_missing_target_file_says_so(tiny_bert, conll_small, wikiann_small, tmp_path):
    recipe = dann_recipe(tiny_bert, conll_small, wikiann_small, tmp_path)
    recipe["objective"]["target"] = str(tmp_path / "nowhere.txt")
    with pytest.raises(DataError, match="objective.target: .*nowhere.txt does not exist"):
        train(recipe)


def test_ewc_refuses_what_it_cannot_continue_from(
    tiny_bert, tiny_bert_nodrop, conll_small, task_a, tmp_path
):
    recipe = ewc_recipe(tiny_bert, conll_small, task_a, tmp_path, 1.0)
    with pytest.raises(GraftError, match="does not exist; train task A first"):
        train(recipe, [f"objective.previous={tmp_path / 'missing'}"])
    with pytest.raises(RecipeError, match="use method: full"):
        train(recipe, ["method.type=lora"])
    with pytest.raises(RecipeError, match=f"set backbone: {tiny_bert}"):
        train(dict(recipe, backbone=str(tiny_bert_nodrop)))
