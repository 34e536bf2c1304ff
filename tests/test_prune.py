"""Structured pruning: smaller models that load anywhere, and importance that ranks sensibly."""

from __future__ import annotations

import copy
import json

import pytest
import torch

import graftwork
from conftest import tiny_recipe
from graftwork.backbones.surgery import apply_pruning, find_layers, prune_heads, standard_copy
from graftwork.compress.importance import (
    choose_heads,
    choose_neurons,
    importance,
    normalise_by_layer,
)
from graftwork.config.recipe import DataConfig, TaskConfig
from graftwork.data.batching import collate
from graftwork.data.readers import read_examples
from graftwork.errors import BundleError, GraftError
from graftwork.runs.finetune import train
from graftwork.runs.prune import prune_bundle
from graftwork.tasks import classification

TEXTS = ["a gripping , funny film", "dull and far too long", "the cast is wonderful", "meh"]


@pytest.fixture(autouse=True, scope="module")
def one_thread():
    """Tiny models run fastest on one thread (and on a busy machine, far faster)."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


@pytest.fixture(scope="module")
def trained(tiny_bert, sst2_small, tmp_path_factory):
    """A tiny classification bundle: 2 layers × 2 heads, intermediate size 64."""
    out = tmp_path_factory.mktemp("prune-run")
    return train(
        tiny_recipe(tiny_bert, sst2_small, out, train={"epochs": 0.5, "threads": 1})
    ).bundle


@pytest.fixture(scope="module")
def pruned(trained, tmp_path_factory):
    out = tmp_path_factory.mktemp("pruned") / "bundle"
    report = prune_bundle(
        trained, out, heads=0.5, ffn=0.25, recovery_epochs=0.5, max_examples=200, seed=5
    )
    return out, report


@pytest.fixture
def model(tiny_bert):
    """An in-memory 3-layer BERT with 4 heads (size 8) per layer, without dropout."""
    from transformers import AutoTokenizer, BertConfig, BertForSequenceClassification

    config = BertConfig(
        vocab_size=len(AutoTokenizer.from_pretrained(str(tiny_bert))),
        hidden_size=32,
        num_hidden_layers=3,
        num_attention_heads=4,
        intermediate_size=64,
        max_position_embeddings=128,
        hidden_dropout_prob=0.0,
        attention_probs_dropout_prob=0.0,
        num_labels=2,
    )
    torch.manual_seed(0)
    return BertForSequenceClassification(config).eval()


@pytest.fixture(scope="module")
def batches(tiny_bert, sst2_small):
    """Four labelled batches of 16 real SST-2 phrases."""
    from transformers import AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(str(tiny_bert))
    examples = read_examples(sst2_small["train"], TaskConfig(), DataConfig()).examples[:64]
    features, labels = classification.encode(
        tokenizer, examples, {"0": 0, "1": 1}, 64, sst2_small["train"]
    )
    return [
        collate(features[i : i + 16], tokenizer.pad_token_id, labels[i : i + 16])
        for i in range(0, 64, 16)
    ]


def logits(model, batch):
    inputs = {k: v for k, v in batch.items() if k != "labels"}
    with torch.inference_mode():
        return model.eval()(**inputs).logits


def test_pruned_bundle_loads_in_plain_transformers_with_the_sliced_models_logits(trained, pruned):
    from transformers import AutoModelForSequenceClassification, AutoTokenizer

    out, _ = pruned
    plain = AutoModelForSequenceClassification.from_pretrained(str(out))
    manifest = json.loads((out / "graftwork.json").read_text())
    sliced = apply_pruning(AutoModelForSequenceClassification.from_pretrained(str(out)), manifest)
    assert [b.attention.self.query.out_features for b in find_layers(sliced)] == [16, 16]
    assert [b.attention.self.query.out_features for b in find_layers(plain)] == [32, 32]

    batch = dict(AutoTokenizer.from_pretrained(str(out))(TEXTS, return_tensors="pt", padding=True))
    original = AutoModelForSequenceClassification.from_pretrained(str(trained))
    assert logits(sliced, batch).shape == logits(original, batch).shape == (len(TEXTS), 2)
    torch.testing.assert_close(logits(sliced, batch), logits(plain, batch), atol=1e-5, rtol=0)


def test_intermediate_size_shrinks_by_the_requested_fraction(pruned):
    out, report = pruned
    config = json.loads((out / "config.json").read_text())
    assert config["intermediate_size"] == 64 - 16
    assert report["intermediate_size"] == 48 and report["intermediate_size_before"] == 64
    assert report["parameters_after"] < report["parameters_before"]


def test_pruned_bundle_records_the_pruning_and_fresh_metrics(pruned):
    out, report = pruned
    manifest = json.loads((out / "graftwork.json").read_text())
    pruning = manifest["pruning"]
    assert pruning["heads"] == 0.5 and pruning["ffn"] == 0.25
    assert pruning["pruned_heads"] == report["pruned_heads"]
    assert sum(len(h) for h in pruning["pruned_heads"].values()) == 2  # one per layer
    assert pruning["recovery"]["steps"] > 0 and pruning["importance"]["examples"] == 200
    assert manifest["task"] == "classification" and manifest["labels"] == ["0", "1"]
    assert manifest["metrics"]["eval"]["examples"] == 200
    assert "accuracy" in pruning["metrics_before"]["eval"]
    assert manifest["metrics"]["parameters"]["total"] == pruning["parameters_after"]
    answers = graftwork.load(out, backend="torch").predict(TEXTS)  # hashes verify
    assert {a["label"] for a in answers} <= {"0", "1"}


def test_ner_bundles_prune_to_standard_token_classification_models(
    tiny_bert, conll_small, tmp_path
):
    from transformers import AutoModelForTokenClassification, AutoTokenizer

    recipe = tiny_recipe(tiny_bert, conll_small, tmp_path, task="ner", train={"threads": 1})
    bundle = train(recipe).bundle
    out = tmp_path / "pruned"
    report = prune_bundle(bundle, out, heads=0.25, ffn=0.5, recovery_epochs=0, max_examples=100)
    assert report["heads_pruned"] == 1 and report["intermediate_size"] == 32
    assert "f1" in report["metrics"]["eval"]
    plain = AutoModelForTokenClassification.from_pretrained(str(out))
    manifest = json.loads((out / "graftwork.json").read_text())
    sliced = apply_pruning(AutoModelForTokenClassification.from_pretrained(str(out)), manifest)
    batch = dict(AutoTokenizer.from_pretrained(str(out))(TEXTS, return_tensors="pt", padding=True))
    assert logits(sliced, batch).shape == (len(TEXTS), batch["input_ids"].shape[1], 9)
    torch.testing.assert_close(logits(sliced, batch), logits(plain, batch), atol=1e-5, rtol=0)


def test_pruned_head_count_matches_the_fraction_and_every_layer_keeps_one():
    scores = torch.tensor([[0.1, 0.2, 0.3, 0.4], [5.0, 6.0, 7.0, 8.0], [0.05, 9.0, 9.0, 9.0]])
    chosen = choose_heads(scores, 0.5)  # the lowest six, but layer 0 keeps its best head
    assert chosen == {0: [0, 1, 2], 1: [0, 1], 2: [0]}
    almost_all = choose_heads(scores, 0.99)
    assert sum(len(h) for h in almost_all.values()) == 9
    assert all(len(h) == 3 for h in almost_all.values())
    assert choose_heads(scores, 0.0) == {0: [], 1: [], 2: []}


def test_a_head_whose_values_are_zero_has_no_importance_and_is_pruned_first(model, batches):
    value = find_layers(model)[1].attention.self.value
    with torch.no_grad():
        value.weight[16:24] = 0  # head 2 of layer 1
        value.bias[16:24] = 0
    heads, _ = importance(model, batches)
    assert heads[1, 2] == 0
    assert (heads.flatten().sort().values[1:] > 0).all()
    assert choose_heads(normalise_by_layer(heads), 1 / 12) == {0: [], 1: [2], 2: []}


def test_a_dead_ffn_neuron_has_no_importance_and_is_removed_first(model, batches):
    dense = find_layers(model)[0].intermediate.dense
    with torch.no_grad():
        dense.weight[7] = 0  # gelu(0) = 0: neuron 7 of layer 0 never fires
        dense.bias[7] = 0
    _, neurons = importance(model, batches)
    assert neurons[0, 7] == 0 and (neurons[1:] > 0).all()
    keep = choose_neurons(neurons, 1 / 64)
    assert [len(k) for k in keep] == [63, 63, 63]
    assert 7 not in keep[0].tolist()


def test_zeroed_heads_in_the_standard_shape_give_the_sliced_models_outputs(model, batches):
    heads = {0: [1, 3], 1: [0], 2: []}
    sliced = copy.deepcopy(model)
    prune_heads(sliced, heads)
    assert [b.attention.self.value.out_features for b in find_layers(sliced)] == [16, 24, 32]
    full = standard_copy(sliced, heads)
    assert [b.attention.self.value.out_features for b in find_layers(full)] == [32, 32, 32]
    assert not full.bert.encoder.layer[0].attention.self.value.weight[8:16].any()
    for batch in batches:
        torch.testing.assert_close(logits(full, batch), logits(sliced, batch), atol=1e-5, rtol=0)
    manifest = {"pruning": {"pruned_heads": {"0": [1, 3], "1": [0], "2": []}}}
    again = apply_pruning(full, manifest)
    assert [b.attention.self.value.out_features for b in find_layers(again)] == [16, 24, 32]
    torch.testing.assert_close(logits(again, batches[0]), logits(sliced, batches[0]))


def test_apply_pruning_refuses_heads_whose_weights_are_not_zero(model):
    with pytest.raises(BundleError, match="are not zero"):
        apply_pruning(model, {"pruning": {"pruned_heads": {"1": [0]}}})
    assert apply_pruning(model, {"task": "classification"}) is model  # not pruned: unchanged


@pytest.mark.parametrize(
    ("heads", "ffn"), [(-0.1, 0.2), (1.0, 0.2), (0.2, 1.0), (0.2, -0.5), (float("nan"), 0.2)]
)
def test_fractions_outside_zero_to_one_are_refused(heads, ffn, tmp_path):
    with pytest.raises(GraftError, match=r"(heads|ffn): Input should be (greater|less) than"):
        prune_bundle(tmp_path / "bundle", tmp_path / "out", heads=heads, ffn=ffn)


def test_other_architectures_are_refused_with_a_clear_message():
    from transformers import GPT2Config, GPT2ForSequenceClassification

    gpt2 = GPT2ForSequenceClassification(GPT2Config(n_layer=1, n_head=2, n_embd=8, vocab_size=50))
    with pytest.raises(GraftError, match="pruning supports BERT-family encoders.*gpt2"):
        find_layers(gpt2)
