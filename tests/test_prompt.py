"""Prompt learning (methods prompt_tuning, prefix, ptuning; methods/prompt.py) beyond the method
× task matrix: the bundle keeps its prompt apart in PEFT format, the stages that cannot take
it refuse it with a message, and the options the matrix leaves at their defaults."""

from __future__ import annotations

import json

import peft
import pytest
import torch
from transformers import (
    AutoModelForSequenceClassification,
    AutoTokenizer,
    BertConfig,
    BertForQuestionAnswering,
    BertForSequenceClassification,
    BertForTokenClassification,
    BertModel,
)

import graftwork
from conftest import tiny_recipe
from graftwork.config.recipe import load_recipe
from graftwork.errors import GraftError, RecipeError
from graftwork.methods import prefix, prompt, prompt_tuning, ptuning
from graftwork.runs.finetune import train

TEXTS = ["a gripping , funny film", "dull and far too long"]


@pytest.fixture(scope="module")
def bundle(tiny_bert, sst2_small, tmp_path_factory):
    """A tiny prompt-tuned SST-2 classifier (two steps: the mechanics, not accuracy)."""
    recipe = tiny_recipe(tiny_bert, sst2_small, tmp_path_factory.mktemp("prompt"))
    recipe["method"] = {"type": "prompt_tuning", "tokens": 4}
    recipe["data"]["max_train_examples"] = 32
    recipe["train"] = {**recipe["train"], "threads": 1}
    return train(recipe).bundle


def logits(model, folder) -> torch.Tensor:
    inputs = AutoTokenizer.from_pretrained(str(folder))(TEXTS, return_tensors="pt", padding=True)
    model.eval()
    with torch.inference_mode():
        return model(**inputs).logits


def test_the_prompt_is_a_peft_adapter_beside_the_backbone_and_head(bundle):
    config = json.loads((bundle / prompt.PROMPT_DIR / "adapter_config.json").read_text())
    assert config["peft_type"] == "PROMPT_TUNING" and config["num_virtual_tokens"] == 4
    loaded = logits(graftwork.load(bundle, backend="torch").model, bundle)
    plain = AutoModelForSequenceClassification.from_pretrained(str(bundle))
    with_peft = peft.PeftModel.from_pretrained(plain, str(bundle / prompt.PROMPT_DIR))
    torch.testing.assert_close(logits(with_peft, bundle), loaded)
    # the root weights alone are the backbone and head without the prompt
    bare = AutoModelForSequenceClassification.from_pretrained(str(bundle))
    assert not torch.allclose(logits(bare, bundle), loaded, atol=1e-4)


def test_export_prune_and_distill_refuse_a_prompt_bundle(bundle, tmp_path):
    from graftwork.export import export_bundle
    from graftwork.runs.distill import distill
    from graftwork.runs.prune import prune_bundle

    with pytest.raises(GraftError, match="virtual tokens live in peft's wrapper"):
        export_bundle(bundle)
    with pytest.raises(GraftError, match="Prune a full or LoRA bundle"):
        prune_bundle(bundle, tmp_path / "pruned")
    with pytest.raises(GraftError, match="distil from a full or LoRA bundle"):
        distill(bundle)
    assert not (bundle / "onnx").exists() and not (tmp_path / "pruned").exists()


def tiny_classifier() -> BertForSequenceClassification:
    config = BertConfig(
        vocab_size=50,
        hidden_size=32,
        num_hidden_layers=2,
        num_attention_heads=2,
        intermediate_size=64,
        max_position_embeddings=64,
    )
    torch.manual_seed(0)
    return BertForSequenceClassification(config)


def trainable(model) -> dict[str, int]:
    return {n: p.numel() for n, p in model.named_parameters() if p.requires_grad}


def test_prefix_projection_learns_the_prefix_through_an_mlp():
    config = prefix.PrefixConfig(tokens=4, projection=True, hidden=16)
    names = trainable(prefix.apply(tiny_classifier(), config))
    # embedding (4 x 32) → Linear(32, 16) → tanh → Linear(16, 2 layers x key and value x 32)
    encoder = {n: c for n, c in names.items() if "prompt_encoder" in n}
    assert sum(encoder.values()) == 4 * 32 + (32 * 16 + 16) + (16 * 128 + 128)
    assert any("classifier" in n for n in names)


def test_ptuning_lstm_encoder_trains_beside_the_virtual_tokens():
    names = trainable(ptuning.apply(tiny_classifier(), ptuning.PtuningConfig(encoder="lstm")))
    assert any("lstm_head" in n for n in names) and any("mlp_head" in n for n in names)
    assert any("classifier" in n for n in names)


def test_prefix_hidden_without_projection_is_a_recipe_error(tiny_bert, sst2_small, tmp_path):
    recipe = tiny_recipe(tiny_bert, sst2_small, tmp_path, method={"type": "prefix", "hidden": 16})
    with pytest.raises(RecipeError, match="set projection: true"):
        load_recipe(recipe)


def test_a_model_without_a_head_peft_feeds_is_a_clear_error():
    model = BertModel(tiny_classifier().config)
    with pytest.raises(GraftError, match="BertModel is not a head"):
        prefix.apply(model, prefix.PrefixConfig())


@pytest.mark.parametrize(
    "head", [BertForTokenClassification, BertForQuestionAnswering], ids=["ner", "qa"]
)
@pytest.mark.parametrize(
    "module, config",
    [
        (prompt_tuning, prompt_tuning.PromptTuningConfig(tokens=4)),
        (ptuning, ptuning.PtuningConfig(tokens=4)),
    ],
    ids=["prompt_tuning", "ptuning"],
)
def test_input_prompts_leave_per_token_outputs_aligned_with_the_input(head, module, config):
    torch.manual_seed(0)
    model = head(tiny_classifier().config).eval()
    ids = torch.tensor([[2, 7, 9, 11, 3], [2, 8, 3, 0, 0]])
    inputs = {"input_ids": ids, "attention_mask": (ids != 0).long()}
    with torch.inference_mode():
        base = model(**inputs)
        prompted = module.apply(model, config).eval()(**inputs)
    keys = ["logits"] if head is BertForTokenClassification else ["start_logits", "end_logits"]
    for key in keys:
        assert prompted[key].shape == base[key].shape  # (batch, tokens[, labels])
        assert not torch.allclose(prompted[key], base[key], atol=1e-6)  # the prompt is attended
