"""The architecture layout table: where a backbone keeps its embeddings, its stack(s) of layers
and, in each layer, the attention q/k/v/o projections, the FFN projections and the head size.

One `Layout` per family of transformers models; `find(model)` returns the first whose layer
list the model has (paths start at `model.base_model`), with every part resolved. A part that
the family lacks, or that one model of it leaves out (ModernBERT has Llama's `layers` but
not its `embed_tokens`), is None: each user checks for the parts it needs and raises its own
error. What the users take from it:
- freezing, layer-wise learning rates and gradual unfreezing (`depth_of_parameters`, method
  full): the embeddings and the layers, bottom to top. A model with two stacks (T5, BART with
  their decoders) is refused: its layers are not one line. T5's encoder alone is one stack.
- distillation (`compress/distill.py`): the first stack's layer list, from which a student
  copy keeps evenly spaced layers (an encoder-decoder keeps its decoder whole). T5 is
  refused: only its first layer holds the relative position bias.
- pruning (`backbones/surgery.py`): q/k/v/o, the FFN in/out projections and the head size,
  of the BERT family only (the one attention whose head bookkeeping surgery updates).
- bottleneck adapters (`methods/`): each layer's `attn_out` and `ffn_out`; `Layer.slot`
  gives the module that owns a part, where an adapter hangs as a child.

Leaves out: the decoder's cross-attention (T5 `layer.1.EncDecAttention`, BART
`encoder_attn`), layer norms, and families not listed (their models get each user's error).
"""

from __future__ import annotations

from dataclasses import dataclass

from torch import nn

from graftwork.errors import GraftError

ROLES = ("q", "k", "v", "qkv", "attn_out", "ffn_in", "ffn_gate", "ffn_out")


@dataclass(frozen=True, kw_only=True)
class Stack:
    """One stack: its layer list (from base_model) and the paths of a layer's parts (from the
    layer). `a|b`: the first of the alternatives present; None: the family has no such part."""

    layers: str
    attn_out: str
    ffn_in: str
    ffn_out: str
    head_size: str  # the attribute holding the size of one attention head
    q: str | None = None
    k: str | None = None
    v: str | None = None
    qkv: str | None = None  # q, k and v as one fused projection (GPT-2)
    ffn_gate: str | None = None  # gated FFNs (Llama, T5 v1.1): the activated in-projection


@dataclass(frozen=True, kw_only=True)
class Layout:
    name: str
    covers: str  # for messages
    embeddings: tuple[str, ...]  # every module below the first layer, from base_model
    stacks: tuple[Stack, ...]  # bottom first: encoder, then decoder
    bias_in_first_layer: bool = False  # T5: the relative position bias lives in layer 0 only


BERT = Layout(
    name="bert",
    covers="BERT family (BERT, RoBERTa, XLM-R, ELECTRA, MiniLM)",
    embeddings=("embeddings", "embeddings_project"),  # ELECTRA projects small embeddings up
    stacks=(
        Stack(
            layers="encoder.layer",
            q="attention.self.query",
            k="attention.self.key",
            v="attention.self.value",
            attn_out="attention.output.dense",
            ffn_in="intermediate.dense",
            ffn_out="output.dense",
            head_size="attention.self.attention_head_size",
        ),
    ),
)
DISTILBERT = Layout(
    name="distilbert",
    covers="DistilBERT",
    embeddings=("embeddings",),
    stacks=(
        Stack(
            layers="transformer.layer",
            q="attention.q_lin",
            k="attention.k_lin",
            v="attention.v_lin",
            attn_out="attention.out_lin",
            ffn_in="ffn.lin1",
            ffn_out="ffn.lin2",
            head_size="attention.attention_head_size",
        ),
    ),
)
GPT2 = Layout(
    name="gpt2",
    covers="GPT-2",
    embeddings=("wte", "wpe"),
    stacks=(
        Stack(
            layers="h",
            qkv="attn.c_attn",  # Conv1D, like every projection of GPT-2
            attn_out="attn.c_proj",
            ffn_in="mlp.c_fc",
            ffn_out="mlp.c_proj",
            head_size="attn.head_dim",
        ),
    ),
)
LLAMA = Layout(
    name="llama",
    covers="Llama (and Mistral, Qwen2, which share its layout)",
    embeddings=("embed_tokens",),
    stacks=(
        Stack(
            layers="layers",
            q="self_attn.q_proj",
            k="self_attn.k_proj",
            v="self_attn.v_proj",
            attn_out="self_attn.o_proj",
            ffn_gate="mlp.gate_proj",
            ffn_in="mlp.up_proj",
            ffn_out="mlp.down_proj",
            head_size="self_attn.head_dim",
        ),
    ),
)


def _t5_stack(layers: str, ffn: str) -> Stack:
    attn = "layer.0.SelfAttention"
    return Stack(
        layers=layers,
        q=f"{attn}.q",
        k=f"{attn}.k",
        v=f"{attn}.v",
        attn_out=f"{attn}.o",
        ffn_gate=f"{ffn}.wi_0",  # gated (T5 v1.1, Flan-T5); plain T5 has one `wi`
        ffn_in=f"{ffn}.wi|{ffn}.wi_1",
        ffn_out=f"{ffn}.wo",
        head_size=f"{attn}.key_value_proj_dim",
    )


T5 = Layout(
    name="t5",
    covers="T5",
    embeddings=("shared",),
    stacks=(
        _t5_stack("encoder.block", "layer.1.DenseReluDense"),
        _t5_stack("decoder.block", "layer.2.DenseReluDense"),  # layer.1: cross-attention
    ),
    bias_in_first_layer=True,
)


def _bart_stack(layers: str) -> Stack:
    return Stack(
        layers=layers,
        q="self_attn.q_proj",
        k="self_attn.k_proj",
        v="self_attn.v_proj",
        attn_out="self_attn.out_proj",
        ffn_in="fc1",
        ffn_out="fc2",
        head_size="self_attn.head_dim",
    )


BART = Layout(
    name="bart",
    covers="BART (and mBART, Marian)",
    embeddings=("shared",),
    stacks=(_bart_stack("encoder.layers"), _bart_stack("decoder.layers")),
)

LAYOUTS = (BERT, DISTILBERT, GPT2, LLAMA, T5, BART)


def _get(module, dotted: str | None):
    """The object at `dotted` below `module`; None when the path is None or a step is missing."""
    for alternative in (dotted or "").split("|") if dotted else ():
        found = module
        for part in alternative.split("."):
            found = getattr(found, part, None)
            if found is None:
                break
        if found is not None:
            return found
    return None


class Layer:
    """One layer of a found stack: the module, and its parts by role (None where absent)."""

    def __init__(self, module: nn.Module, stack: Stack):
        self.module, self.stack = module, stack

    def part(self, role: str) -> nn.Module | None:
        found = _get(self.module, getattr(self.stack, role))
        return found if isinstance(found, nn.Module) else None

    def slot(self, role: str) -> tuple[nn.Module, str] | None:
        """(owner module, attribute name) of the part: to replace it, or to add beside it."""
        for alternative in (getattr(self.stack, role) or "").split("|"):
            *parents, name = alternative.split(".")
            owner = _get(self.module, ".".join(parents)) if parents else self.module
            if isinstance(getattr(owner, name, None), nn.Module):
                return owner, name
        return None

    def replace(self, role: str, module: nn.Module) -> None:
        owner, name = self.slot(role)
        setattr(owner, name, module)

    @property
    def head_size(self) -> int | None:
        size = _get(self.module, self.stack.head_size)
        return size if isinstance(size, int) else None

    @property
    def attention(self) -> nn.Module | None:
        """The module that holds the head size (and, in the BERT family, the head counts)."""
        return _get(self.module, self.stack.head_size.rpartition(".")[0])

    q = property(lambda self: self.part("q"))
    k = property(lambda self: self.part("k"))
    v = property(lambda self: self.part("v"))
    qkv = property(lambda self: self.part("qkv"))
    attn_out = property(lambda self: self.part("attn_out"))
    ffn_in = property(lambda self: self.part("ffn_in"))
    ffn_gate = property(lambda self: self.part("ffn_gate"))
    ffn_out = property(lambda self: self.part("ffn_out"))


@dataclass
class FoundStack:
    stack: Stack
    owner: nn.Module  # the module whose attribute `name` is the layer list
    name: str
    modules: nn.ModuleList
    layers: list[Layer]


@dataclass
class Found:
    """A model's layout, resolved: its embedding modules and its stacks, bottom first."""

    layout: Layout
    embeddings: list[nn.Module]
    stacks: list[FoundStack]

    @property
    def layers(self) -> list[Layer]:
        """Every layer of every stack, bottom first (the encoder's, then the decoder's)."""
        return [layer for stack in self.stacks for layer in stack.layers]


def find(model) -> Found | None:
    """The layout of `model` (a transformers model, or its base model); None when unknown."""
    base = getattr(model, "base_model", model)
    for layout in LAYOUTS:
        stacks = []
        for stack in layout.stacks:
            *parents, name = stack.layers.split(".")
            owner = _get(base, ".".join(parents)) if parents else base
            modules = getattr(owner, name, None) if isinstance(owner, nn.Module) else None
            if isinstance(modules, nn.ModuleList) and len(modules):
                stacks.append(
                    FoundStack(stack, owner, name, modules, [Layer(m, stack) for m in modules])
                )
        if stacks and stacks[0].stack is layout.stacks[0]:
            embeddings = [_get(base, path) for path in layout.embeddings]
            return Found(layout, [m for m in embeddings if isinstance(m, nn.Module)], stacks)
    return None


# ---------------------------------------------------------------- freezing's view: one line


def stack(model) -> tuple[list[nn.Module], list[nn.Module]]:
    """(embedding modules, [layer 0, …, layer L-1]) of a one-stack backbone, for freezing."""
    found = find(model)
    uses = "so freezing, layer_lr_decay and gradual_unfreeze do not apply"
    instead = "use method full without them, lora or frozen"
    if found is not None and len(found.stacks) > 1:
        raise GraftError(
            f"{type(model).__name__}: a {found.layout.covers} model has an encoder and a decoder "
            f"stack, whose layers are not one line from bottom to top, {uses}; {instead}"
        )
    if found is None or not found.embeddings:
        known = ", ".join(x.covers.split(" (")[0] for x in LAYOUTS if len(x.stacks) == 1)
        raise GraftError(
            f"{type(model).__name__}: cannot find the embeddings and layer stack (known "
            f"layouts: {known}; T5's encoder alone), {uses}; {instead}"
        )
    return found.embeddings, [layer.module for layer in found.layers]


def depth_of_parameters(model) -> dict[str, int]:
    """Parameter name → depth: 0 embeddings, i+1 layer i, L+1 everything above (head, pooler).

    Word embeddings tied to an output layer count as embeddings."""
    embeddings, blocks = stack(model)
    depth_of_module = {id(module): 0 for module in embeddings}
    depth_of_module.update({id(block): i + 1 for i, block in enumerate(blocks)})
    top = len(blocks) + 1
    owner: dict[int, int] = {}
    for module in model.modules():
        if id(module) in depth_of_module:
            for param in module.parameters():
                owner.setdefault(id(param), depth_of_module[id(module)])
    return {name: owner.get(id(p), top) for name, p in model.named_parameters()}
