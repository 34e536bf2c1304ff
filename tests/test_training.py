"""End to end on tiny models: train → evaluate → bundle, and the bundle outside graftwork."""

from __future__ import annotations

import json

import pytest
import torch

import graftwork
from conftest import tiny_recipe
from graftwork.backbones.load import resolve
from graftwork.config.recipe import BackboneConfig
from graftwork.errors import BackboneError, BundleError, DataError, GraftError
from graftwork.runs.finetune import train

TEXTS = ["a gripping , funny film", "dull and far too long", "the cast is wonderful"]


def hf_logits(model_class, bundle, texts, **kwargs):
    from transformers import AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(str(bundle))
    model = model_class.from_pretrained(str(bundle)).eval()
    with torch.inference_mode():
        return model(**tokenizer(texts, return_tensors="pt", padding=True, **kwargs)).logits


def test_classification_bundle_loads_in_plain_transformers_with_equal_predictions(
    tiny_bert, sst2_small, tmp_path
):
    from transformers import AutoModelForSequenceClassification

    result = graftwork.run(tiny_recipe(tiny_bert, sst2_small, tmp_path))
    assert 0.0 <= result.metrics["eval"]["accuracy"] <= 1.0
    assert result.metrics["eval"]["examples"] == 200
    assert (result.run_dir / "report.html").read_text().count("<svg") == 2  # loss + confusion
    manifest = json.loads((result.bundle / "graftwork.json").read_text())
    assert manifest["labels"] == ["0", "1"] and "model.safetensors" in manifest["files"]
    assert not (result.bundle / "pytorch_model.bin").exists()

    ours = graftwork.load(result.bundle).predict(TEXTS, top_k=2)
    logits = hf_logits(AutoModelForSequenceClassification, result.bundle, TEXTS)
    probs = logits.softmax(-1)
    for answer, row in zip(ours, probs, strict=True):
        assert answer["label"] == str(int(row.argmax()))
        assert answer["score"] == pytest.approx(float(row.max()), abs=1e-5)
        assert answer["top_k"][1]["score"] == pytest.approx(float(row.min()), abs=1e-5)


def test_ner_bundle_loads_in_plain_transformers_with_equal_predictions(
    tiny_bert, conll_small, tmp_path
):
    from transformers import AutoModelForTokenClassification

    recipe = tiny_recipe(tiny_bert, conll_small, tmp_path, task="ner", train={"epochs": 2})
    result = graftwork.run(recipe)
    metrics = result.metrics["eval"]
    assert {"f1", "precision", "recall", "f1_strict", "per_type"} <= set(metrics)
    assert set(metrics["per_type"]) <= {"PER", "ORG", "LOC", "MISC"}
    assert "entity type" in (result.run_dir / "report.html").read_text()

    words = ["EU", "rejects", "German", "call", "to", "boycott", "British", "lamb", "."]
    predictor = graftwork.load(result.bundle)
    tags = predictor.predict([" ".join(words)])[0]["tags"]
    logits = hf_logits(
        AutoModelForTokenClassification, result.bundle, [words], is_split_into_words=True
    )
    from transformers import AutoTokenizer

    word_ids = AutoTokenizer.from_pretrained(str(result.bundle))(
        [words], is_split_into_words=True
    ).word_ids(0)
    first = {w: i for i, w in reversed(list(enumerate(word_ids))) if w is not None}
    id2label = predictor.model.config.id2label
    assert tags == [id2label[int(logits[0, first[w]].argmax())] for w in range(len(words))]


def test_same_recipe_and_seed_give_the_same_metrics(tiny_bert, sst2_small, tmp_path):
    first = train(tiny_recipe(tiny_bert, sst2_small, tmp_path / "a"))
    second = train(tiny_recipe(tiny_bert, sst2_small, tmp_path / "b"))
    assert first.metrics["eval"] == second.metrics["eval"]
    assert first.metrics["train"]["loss_history"] == second.metrics["train"]["loss_history"]
    other = train(tiny_recipe(tiny_bert, sst2_small, tmp_path / "c", train={"seed": 4}))
    assert other.metrics["train"]["loss_history"] != first.metrics["train"]["loss_history"]


def test_lora_trains_few_parameters_and_saves_a_peft_adapter(tiny_bert, sst2_small, tmp_path):
    from peft import PeftModel
    from transformers import AutoModelForSequenceClassification, AutoTokenizer

    recipe = tiny_recipe(
        tiny_bert,
        sst2_small,
        tmp_path,
        method={"type": "lora", "r": 4, "alpha": 8, "target": ["query", "value"]},
    )
    result = graftwork.run(recipe)
    params = result.metrics["parameters"]
    assert 0 < params["trainable"] < 0.2 * params["total"]
    adapter = result.bundle / "adapter"
    assert (adapter / "adapter_config.json").is_file()
    assert (adapter / "adapter_model.safetensors").is_file()

    base = AutoModelForSequenceClassification.from_pretrained(
        str(tiny_bert), num_labels=2, id2label={0: "0", 1: "1"}, label2id={"0": 0, "1": 1}
    )
    peft_model = PeftModel.from_pretrained(base, str(adapter)).eval()
    tokenizer = AutoTokenizer.from_pretrained(str(result.bundle))
    with torch.inference_mode():
        via_peft = peft_model(**tokenizer(TEXTS, return_tensors="pt", padding=True)).logits
    merged = hf_logits(AutoModelForSequenceClassification, result.bundle, TEXTS)
    torch.testing.assert_close(via_peft, merged, atol=1e-5, rtol=1e-4)


def test_changed_bundle_file_is_detected(tiny_bert, sst2_small, tmp_path):
    result = train(tiny_recipe(tiny_bert, sst2_small, tmp_path))
    config = result.bundle / "config.json"
    config.write_text(config.read_text().replace('"hidden_size": 32', '"hidden_size": 32 '))
    with pytest.raises(BundleError, match="config.json changed after the bundle was written"):
        graftwork.load(result.bundle)
    with pytest.raises(BundleError, match="not a graftwork bundle"):
        graftwork.load(tiny_bert)


def test_eval_label_never_seen_in_training_fails_before_training(tiny_bert, sst2_small, tmp_path):
    dev = tmp_path / "dev.tsv"
    dev.write_text("label\tsentence\n1\tfine\n2\twhat is this\n")
    recipe = tiny_recipe(tiny_bert, {"train": sst2_small["train"], "eval": dev}, tmp_path)
    with pytest.raises(
        DataError, match=r"dev.tsv, line 3: label '2' never appears in the training data"
    ):
        train(recipe)
    assert not (tmp_path / "tiny" / "bundle").exists()


def test_backbone_errors_say_what_to_do(tmp_path, tiny_bert):
    with pytest.raises(BackboneError, match="does not exist"):
        resolve(BackboneConfig(name=str(tmp_path / "missing")))
    empty = tmp_path / "empty"
    empty.mkdir()
    (empty / "config.json").write_text("{}")
    with pytest.raises(BackboneError, match="holds no weights"):
        resolve(BackboneConfig(name=str(empty)))
    (empty / "pytorch_model.bin").write_bytes(b"")
    with pytest.raises(BackboneError, match="allow_pickle: true"):
        resolve(BackboneConfig(name=str(empty)))
    assert resolve(BackboneConfig(name=str(empty), allow_pickle=True)) == empty
    assert resolve(BackboneConfig(name=str(tiny_bert))) == tiny_bert


def test_unfinished_run_is_not_overwritten_silently(tiny_bert, sst2_small, tmp_path):
    recipe = tiny_recipe(tiny_bert, sst2_small, tmp_path, train={"checkpoint_every": 5})
    leftover = tmp_path / "tiny" / "checkpoints" / "step-00000005"
    leftover.mkdir(parents=True)
    with pytest.raises(GraftError, match="--resume to continue it, or --overwrite"):
        train(recipe)
    assert train(recipe, overwrite=True).metrics["eval"]
    assert not leftover.exists()
