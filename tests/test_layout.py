"""The architecture layout table, checked on tiny random models of every family it lists
(2 layers, hidden 32, 2 heads of 16; built here from configs, nothing downloaded)."""

from __future__ import annotations

import pytest
import torch

from graftwork.backbones import layout
from graftwork.backbones.layout import depth_of_parameters
from graftwork.backbones.surgery import prunable_layers
from graftwork.compress.distill import layer_list, shrink_copy
from graftwork.errors import GraftError

SIZES = {"vocab_size": 99, "pad_token_id": 0}
IDS = torch.tensor([[5, 6, 7, 8, 1, 2]])  # ends in T5's (1) and BART's (2) end-of-sequence


def build(kind: str):
    import transformers as t

    bert = {"hidden_size": 32, "num_hidden_layers": 2, "num_attention_heads": 2}
    bert |= {"intermediate_size": 64, **SIZES}
    t5 = {"d_model": 32, "d_ff": 64, "num_heads": 2, "d_kv": 16, "num_layers": 2, **SIZES}
    built = {
        "bert": lambda: t.BertForSequenceClassification(t.BertConfig(**bert)),
        "roberta": lambda: t.RobertaForTokenClassification(t.RobertaConfig(**bert)),
        "xlm-roberta": lambda: t.XLMRobertaModel(t.XLMRobertaConfig(**bert)),
        "electra": lambda: t.ElectraForSequenceClassification(
            t.ElectraConfig(embedding_size=16, **bert)
        ),
        "distilbert": lambda: t.DistilBertForSequenceClassification(
            t.DistilBertConfig(dim=32, n_layers=2, n_heads=2, hidden_dim=64, **SIZES)
        ),
        "gpt2": lambda: t.GPT2ForSequenceClassification(
            t.GPT2Config(n_embd=32, n_layer=2, n_head=2, bos_token_id=1, eos_token_id=1, **SIZES)
        ),
        "llama": lambda: t.LlamaForSequenceClassification(
            t.LlamaConfig(num_key_value_heads=2, **bert)
        ),
        "t5": lambda: t.T5ForSequenceClassification(t.T5Config(**t5)),
        "t5-encoder-gated": lambda: t.T5EncoderModel(
            t.T5Config(feed_forward_proj="gated-gelu", **t5)
        ),
        "bart": lambda: t.BartForSequenceClassification(
            t.BartConfig(
                d_model=32,
                encoder_layers=2,
                decoder_layers=2,
                encoder_attention_heads=2,
                decoder_attention_heads=2,
                encoder_ffn_dim=64,
                decoder_ffn_dim=64,
                **SIZES,
            )
        ),
    }
    torch.manual_seed(0)
    return built[kind]().eval()


# family → (layout, embeddings, {role: path in layer i of the first stack}, {stack: prefix})
BERT_PARTS = {
    "q": "attention.self.query",
    "k": "attention.self.key",
    "v": "attention.self.value",
    "attn_out": "attention.output.dense",
    "ffn_in": "intermediate.dense",
    "ffn_out": "output.dense",
}
LLAMA_PARTS = {
    "q": "self_attn.q_proj",
    "k": "self_attn.k_proj",
    "v": "self_attn.v_proj",
    "attn_out": "self_attn.o_proj",
    "ffn_gate": "mlp.gate_proj",
    "ffn_in": "mlp.up_proj",
    "ffn_out": "mlp.down_proj",
}
T5_ATTN = {r: f"layer.0.SelfAttention.{r}" for r in "qkv"} | {"attn_out": "layer.0.SelfAttention.o"}
EXPECTED = {
    "bert": (layout.BERT, ["bert.embeddings"], BERT_PARTS, ["bert.encoder.layer"]),
    "roberta": (layout.BERT, ["roberta.embeddings"], BERT_PARTS, ["roberta.encoder.layer"]),
    "xlm-roberta": (layout.BERT, ["embeddings"], BERT_PARTS, ["encoder.layer"]),
    "electra": (
        layout.BERT,
        ["electra.embeddings", "electra.embeddings_project"],
        BERT_PARTS,
        ["electra.encoder.layer"],
    ),
    "distilbert": (
        layout.DISTILBERT,
        ["distilbert.embeddings"],
        {
            "q": "attention.q_lin",
            "k": "attention.k_lin",
            "v": "attention.v_lin",
            "attn_out": "attention.out_lin",
            "ffn_in": "ffn.lin1",
            "ffn_out": "ffn.lin2",
        },
        ["distilbert.transformer.layer"],
    ),
    "gpt2": (
        layout.GPT2,
        ["transformer.wte", "transformer.wpe"],
        {"qkv": "attn.c_attn", "attn_out": "attn.c_proj", "ffn_in": "mlp.c_fc"}
        | {"ffn_out": "mlp.c_proj"},
        ["transformer.h"],
    ),
    "llama": (layout.LLAMA, ["model.embed_tokens"], LLAMA_PARTS, ["model.layers"]),
    "t5": (
        layout.T5,
        ["transformer.shared"],
        T5_ATTN | {"ffn_in": "layer.1.DenseReluDense.wi", "ffn_out": "layer.1.DenseReluDense.wo"},
        ["transformer.encoder.block", "transformer.decoder.block"],
    ),
    "t5-encoder-gated": (
        layout.T5,
        ["shared"],
        T5_ATTN
        | {"ffn_gate": "layer.1.DenseReluDense.wi_0", "ffn_in": "layer.1.DenseReluDense.wi_1"}
        | {"ffn_out": "layer.1.DenseReluDense.wo"},
        ["encoder.block"],
    ),
    "bart": (
        layout.BART,
        ["model.shared"],
        {
            "q": "self_attn.q_proj",
            "k": "self_attn.k_proj",
            "v": "self_attn.v_proj",
            "attn_out": "self_attn.out_proj",
            "ffn_in": "fc1",
            "ffn_out": "fc2",
        },
        ["model.encoder.layers", "model.decoder.layers"],
    ),
}
ONE_STACK = [k for k, (lay, *_) in EXPECTED.items() if k != "t5" and len(lay.stacks) == 1]
ONE_STACK.append("t5-encoder-gated")


@pytest.fixture(scope="module")
def models():
    return {kind: build(kind) for kind in EXPECTED}


def names(model) -> dict[int, str]:
    return {id(module): name for name, module in model.named_modules()}


@pytest.mark.parametrize("kind", list(EXPECTED))
def test_the_table_finds_every_part_where_the_model_keeps_it(models, kind):
    model = models[kind]
    expected_layout, embeddings, parts, stacks = EXPECTED[kind]
    found = layout.find(model)
    assert found is not None and found.layout is expected_layout
    name = names(model)
    assert [name[id(m)] for m in found.embeddings] == embeddings
    assert [name[id(s.modules)] for s in found.stacks] == stacks
    assert len(found.layers) == 2 * len(stacks)
    for stack_prefix, stack in zip(stacks, found.stacks, strict=True):
        for i, layer in enumerate(stack.layers):
            assert name[id(layer.module)] == f"{stack_prefix}.{i}"
            assert layer.head_size == 16
            for role in layout.ROLES:
                part = layer.part(role)
                where = parts.get(role)
                if "decoder" in stack_prefix and where and "DenseReluDense" in where:
                    where = where.replace("layer.1.", "layer.2.")  # after cross-attention
                shown = f"{stack_prefix}.{i}.{where}" if where else None
                assert (name[id(part)] if part is not None else None) == shown, (role, kind)


@pytest.mark.parametrize("kind", list(EXPECTED))
def test_attention_and_ffn_outputs_are_on_the_forward_path(models, kind):
    """A hook on each layer's attn_out and ffn_out fires once per layer in a forward pass."""
    model = models[kind]
    found = layout.find(model)
    fired: list[str] = []
    handles = [
        getattr(layer, role).register_forward_hook(lambda *_, r=role: fired.append(r))
        for layer in found.layers
        for role in ("attn_out", "ffn_out")
    ]
    ids = IDS
    extra = {"decoder_input_ids": ids} if len(found.stacks) > 1 else {}
    try:
        with torch.no_grad():
            model(input_ids=ids, **extra)
    finally:
        for handle in handles:
            handle.remove()
    assert sorted(fired) == sorted(["attn_out", "ffn_out"] * len(found.layers))


def test_a_replaced_part_is_what_the_model_runs():
    model = build("bert")
    layer = layout.find(model).layers[1]
    owner, attr = layer.slot("attn_out")
    assert type(owner).__name__ == "BertSelfOutput" and attr == "dense"  # where adapters hang
    ids = torch.tensor([[5, 6, 7, 8]])
    before = model(input_ids=ids).logits
    zero = torch.nn.Linear(32, 32)
    torch.nn.init.zeros_(zero.weight)
    torch.nn.init.zeros_(zero.bias)
    layer.replace("attn_out", zero)
    assert layer.attn_out is zero and model.bert.encoder.layer[1].attention.output.dense is zero
    assert not torch.allclose(model(input_ids=ids).logits, before)


@pytest.mark.parametrize("kind", ONE_STACK)
def test_freezing_depths_follow_the_table(models, kind):
    model = models[kind]
    found = layout.find(model)
    depths = depth_of_parameters(model)
    groups = [(0, found.embeddings)]
    groups += [(i + 1, [block]) for i, block in enumerate(found.stacks[0].modules)]
    for depth, modules in groups:
        params = {id(p) for module in modules for p in module.parameters()}
        owned = [n for n, p in model.named_parameters() if id(p) in params]
        assert owned and {depths[n] for n in owned} == {depth}
    assert max(depths.values()) == 3  # the head (or the final norm) sits above layer 2


@pytest.mark.parametrize("kind", ["t5", "bart"])
def test_freezing_refuses_a_model_with_an_encoder_and_a_decoder(models, kind):
    with pytest.raises(GraftError, match="an encoder and a decoder stack.*method full without"):
        depth_of_parameters(models[kind])


def test_unknown_models_have_no_layout_and_each_user_says_what_it_needs():
    model = torch.nn.Sequential(torch.nn.Linear(2, 2))
    assert layout.find(model) is None
    with pytest.raises(GraftError, match="cannot find the embeddings and layer stack"):
        depth_of_parameters(model)
    with pytest.raises(GraftError, match="cannot find the layer list of a Sequential"):
        layer_list(model)


@pytest.mark.parametrize("kind", [k for k in EXPECTED if EXPECTED[k][0] is not layout.BERT])
def test_pruning_takes_the_bert_family_only(models, kind):
    with pytest.raises(GraftError, match="pruning supports BERT-family encoders"):
        prunable_layers(models[kind])


@pytest.mark.parametrize("kind", ["bert", "distilbert", "gpt2", "llama", "bart"])
def test_distillation_keeps_the_first_stacks_last_layer(models, kind):
    student, keep = shrink_copy(models[kind], 1)
    assert keep == [1]
    assert len(layer_list(student)) == 1
    assert layer_list(student)[0] is not layer_list(models[kind])[1]  # a copy
    teacher_state = layer_list(models[kind])[1].state_dict()
    for key, value in layer_list(student)[0].state_dict().items():
        assert torch.equal(value, teacher_state[key])
    ids = IDS
    extra = {"decoder_input_ids": ids} if kind == "bart" else {}
    with torch.no_grad():
        student(input_ids=ids, **extra)  # runs with one layer


def test_distillation_refuses_t5_whose_first_layer_holds_the_position_bias(models):
    with pytest.raises(GraftError, match="relative position bias in its first layer"):
        shrink_copy(models["t5-encoder-gated"], 1)
