"""Freezing, layer-wise learning rates, gradual unfreezing and the frozen (head-only) method."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest
import torch
import yaml

import graftwork
from conftest import tiny_recipe
from graftwork import registry
from graftwork.backbones.layout import depth_of_parameters
from graftwork.config.recipe import load_recipe
from graftwork.errors import GraftError, RecipeError
from graftwork.methods import count_parameters, full
from graftwork.runs.finetune import train
from graftwork.train.loop import param_groups

# the peft methods, and for each a weight of layer 0 that its merged update changes
PEFT_METHODS = ["lora", "dora", "ia3"]
MERGED = {
    "lora": "attention.self.query",
    "dora": "attention.self.query",
    "ia3": "attention.self.key",
}
# what each trains besides the head (peft's parameter names)
OWN = {"lora": ("lora_A", "lora_B"), "dora": ("lora_A", "lora_B", "lora_magnitude_vector")}
OWN["ia3"] = ("ia3_l",)
TEXTS = ["a gripping , funny film", "dull and far too long", "meh"]


def classifier(folder):
    from transformers import AutoModelForSequenceClassification

    torch.manual_seed(0)
    return AutoModelForSequenceClassification.from_pretrained(str(folder), num_labels=2)


def encoder_weights(folder) -> dict[str, torch.Tensor]:
    from transformers import AutoModel

    return {k: v.clone() for k, v in AutoModel.from_pretrained(str(folder)).state_dict().items()}


def changed(before: dict, after: dict, prefix: str) -> bool:
    keys = [k for k in before if k.startswith(prefix)]
    assert keys, prefix
    return any(not torch.equal(before[k], after[k]) for k in keys)


def test_depths_put_embeddings_layers_and_head_in_order(tiny_bert):
    depths = depth_of_parameters(classifier(tiny_bert))
    assert depths["bert.embeddings.word_embeddings.weight"] == 0
    assert depths["bert.encoder.layer.0.attention.self.query.weight"] == 1
    assert depths["bert.encoder.layer.1.output.dense.weight"] == 2
    assert depths["classifier.weight"] == 3
    assert depths["bert.pooler.dense.weight"] == 3


def test_frozen_embeddings_and_first_layer_do_not_move(tiny_bert, sst2_small, tmp_path):
    method = {"type": "full", "freeze_embeddings": True, "freeze_layers": 1}
    result = train(tiny_recipe(tiny_bert, sst2_small, tmp_path, method=method))
    before, after = encoder_weights(tiny_bert), encoder_weights(result.bundle)
    assert not changed(before, after, "embeddings.")
    assert not changed(before, after, "encoder.layer.0.")
    assert changed(before, after, "encoder.layer.1.")
    assert result.metrics["parameters"]["trainable_pct"] < 100


def test_layer_lr_decay_gives_each_depth_its_learning_rate(tiny_bert):
    model = classifier(tiny_bert)
    config = full.FullConfig(layer_lr_decay=0.5)
    scales = full.lr_scales(model, config)
    assert scales["classifier.weight"] == 1.0
    assert scales["bert.encoder.layer.1.attention.self.query.weight"] == 0.5
    assert scales["bert.encoder.layer.0.attention.self.query.weight"] == 0.25
    assert scales["bert.embeddings.word_embeddings.weight"] == 0.125
    groups = param_groups(model, 0.01, 1e-3, scales)
    lr_of = {id(p): g["lr"] for g in groups for p in g["params"]}
    assert lr_of[id(model.bert.embeddings.word_embeddings.weight)] == pytest.approx(1.25e-4)
    assert lr_of[id(model.classifier.weight)] == pytest.approx(1e-3)
    decay_of = {id(p): g["weight_decay"] for g in groups for p in g["params"]}
    assert decay_of[id(model.classifier.bias)] == 0.0
    assert decay_of[id(model.classifier.weight)] == 0.01


def test_gradual_unfreezing_opens_one_layer_at_a_time_from_the_top(tiny_bert):
    model = classifier(tiny_bert)
    config = full.FullConfig(gradual_unfreeze=True, unfreeze_fraction=0.5)
    full.apply(model, config)
    on_step = full.schedule(model, config)
    depths = depth_of_parameters(model)
    params = dict(model.named_parameters())
    open_depths = []
    for step in range(100):
        on_step(step, 100)
        open_depths.append({depths[n] for n, p in params.items() if p.requires_grad})
    assert open_depths[0] == {3}  # the head (and pooler) only
    lowest = [min(d) for d in open_depths]
    assert lowest == sorted(lowest, reverse=True)  # never freezes again
    assert sorted(set(lowest), reverse=True) == [3, 2, 1, 0]  # one depth at a time
    assert open_depths[49] == {0, 1, 2, 3}  # everything by half of training
    on_step(0, 100)  # a resumed run at step 0 is back to the head only
    assert {depths[n] for n, p in params.items() if p.requires_grad} == {3}


def test_gradual_unfreezing_trains_end_to_end_and_moves_every_layer(
    tiny_bert, sst2_small, tmp_path
):
    method = {"type": "full", "gradual_unfreeze": True, "layer_lr_decay": 0.8}
    result = train(tiny_recipe(tiny_bert, sst2_small, tmp_path, method=method))
    before, after = encoder_weights(tiny_bert), encoder_weights(result.bundle)
    assert changed(before, after, "embeddings.") and changed(before, after, "encoder.layer.0.")
    predictor = graftwork.load(result.bundle)
    assert predictor.predict(["a fine film"])[0]["label"] in {"0", "1"}


def test_gradual_unfreezing_is_refused_with_two_processes(tiny_bert, sst2_small, tmp_path):
    method = {"type": "full", "gradual_unfreeze": True}
    path = tmp_path / "r.yaml"
    path.write_text(yaml.safe_dump(tiny_recipe(tiny_bert, sst2_small, tmp_path, method=method)))
    done = subprocess.run(
        [sys.executable, "-m", "graftwork.cli", "train", str(path), "--nproc", "2"],
        capture_output=True,
        text=True,
        timeout=300,
        env={**os.environ, "OMP_NUM_THREADS": "1"},
    )
    assert done.returncode == 2, done.stderr
    assert "gradual unfreezing changes which parameters train" in done.stderr
    assert "run it with one process" in done.stderr
    assert "Traceback" not in done.stderr
    assert not (tmp_path / "tiny" / "bundle").exists()  # refused before anything trained


def test_frozen_method_trains_only_the_head(tiny_bert, sst2_small, tmp_path):
    model = registry.method("frozen").apply(
        classifier(tiny_bert), load_recipe({"method": "frozen"}).method
    )
    trainable = {n for n, p in model.named_parameters() if p.requires_grad}
    assert trainable == {"classifier.weight", "classifier.bias"}
    assert count_parameters(model)["trainable"] == model.classifier.weight.numel() + 2

    result = train(tiny_recipe(tiny_bert, sst2_small, tmp_path, method="frozen"))
    before, after = encoder_weights(tiny_bert), encoder_weights(result.bundle)
    assert not changed(before, after, "")
    assert result.metrics["eval"]["accuracy"] > 0


def test_freezing_options_are_validated(tiny_bert, sst2_small, tmp_path):
    with pytest.raises(RecipeError, match="freeze_layers is 5 but the backbone has 2 layers"):
        full.apply(classifier(tiny_bert), full.FullConfig(freeze_layers=5))
    with pytest.raises(RecipeError, match="layer_lr_decay"):
        load_recipe({"method": {"type": "full", "layer_lr_decay": 1.5}})
    with pytest.raises(RecipeError, match="unfreeze_after|did you mean|unfreeze_fraction"):
        load_recipe({"method": {"type": "full", "unfreeze_after": 0.3}})


def test_unknown_layout_is_a_clear_error():
    with pytest.raises(GraftError, match="layer stack"):
        depth_of_parameters(torch.nn.Sequential(torch.nn.Linear(2, 2)))


@pytest.mark.parametrize("method", PEFT_METHODS)
def test_gradient_checkpointing_trains_the_same_model(
    tiny_bert_nodrop, sst2_small, tmp_path, method
):
    plain = train(tiny_recipe(tiny_bert_nodrop, sst2_small, tmp_path / "a", method=method))
    recomputed = train(
        tiny_recipe(
            tiny_bert_nodrop,
            sst2_small,
            tmp_path / "b",
            method=method,
            train={"gradient_checkpointing": True},
        )
    )
    a, b = encoder_weights(plain.bundle), encoder_weights(recomputed.bundle)
    assert changed(encoder_weights(tiny_bert_nodrop), a, f"encoder.layer.0.{MERGED[method]}")
    for key in a:
        torch.testing.assert_close(a[key], b[key], atol=1e-5, rtol=1e-4)
    assert plain.metrics["eval"]["accuracy"] == recomputed.metrics["eval"]["accuracy"]


def probe_logits(model, folder) -> torch.Tensor:
    from transformers import AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(str(folder))
    model.eval()
    with torch.inference_mode():
        return model(**tokenizer(TEXTS, return_tensors="pt", padding=True)).logits


@pytest.mark.parametrize("method", PEFT_METHODS)
def test_peft_methods_save_a_peft_adapter_and_bundle_the_merged_model(tiny_bert, tmp_path, method):
    from peft import PeftModel

    module = registry.method(method)
    base = probe_logits(classifier(tiny_bert), tiny_bert)
    model = module.apply(classifier(tiny_bert), load_recipe({"method": method}).method)
    fresh = probe_logits(model, tiny_bert)
    torch.testing.assert_close(fresh, base, rtol=1e-5, atol=1e-6)  # IA3, LoRA: exactly
    trainable = [n for n, p in model.named_parameters() if p.requires_grad]
    own = [n for n in trainable if any(part in n for part in OWN[method])]
    assert own and all(n in own or ".classifier." in f".{n}" for n in trainable), trainable
    with torch.no_grad():  # as if trained: move every trainable parameter
        for param in model.parameters():
            if param.requires_grad:
                param.add_(torch.randn_like(param) * 0.1)
    adapted = probe_logits(model, tiny_bert)
    assert not torch.allclose(adapted, base, atol=1e-3)

    merged = module.finish(model, tmp_path)
    assert type(merged).__name__ == "BertForSequenceClassification"  # plain transformers
    torch.testing.assert_close(probe_logits(merged, tiny_bert), adapted, rtol=1e-5, atol=1e-5)
    adapter = tmp_path / "adapter"
    assert module.task_bytes(tmp_path, 0) == sum(
        p.stat().st_size for p in adapter.iterdir() if p.is_file()
    )
    peft_model = PeftModel.from_pretrained(classifier(tiny_bert), str(adapter))
    torch.testing.assert_close(probe_logits(peft_model, tiny_bert), adapted, rtol=1e-5, atol=1e-5)


def test_ia3_feedforward_modules_must_be_targets():
    assert load_recipe({"method": "ia3"}).method.target == ["key", "value", "output.dense"]
    with pytest.raises(RecipeError, match="not in target"):
        load_recipe({"method": {"type": "ia3", "target": ["key"], "feedforward": ["output.dense"]}})
