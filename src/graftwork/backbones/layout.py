"""Where a backbone keeps its embeddings and its stack of layers, bottom to top.

Freezing, layer-wise learning rates and gradual unfreezing all need the same two facts about
a model: which parameters are the embeddings and which belong to layer i. This module finds
them for the layouts transformers uses for encoders and decoders; anything else gets an error
that says which methods still work.

Leaves out: encoder-decoder models (two stacks; T5/Marian), whose layer order is not a line.
"""

from __future__ import annotations

from torch import nn

from graftwork.errors import GraftError

# (embeddings attribute, layer-list attribute path) on the model's base_model
LAYOUTS = (
    ("embeddings", "encoder.layer"),  # BERT, RoBERTa, ELECTRA, MiniLM, XLM-R
    ("embeddings", "transformer.layer"),  # DistilBERT
    ("wte", "h"),  # GPT-2
)


def _get(module, dotted: str):
    for part in dotted.split("."):
        module = getattr(module, part, None)
        if module is None:
            return None
    return module


def stack(model) -> tuple[nn.Module, list[nn.Module]]:
    """(embeddings, [layer 0, …, layer L-1]) of `model`'s backbone."""
    base = getattr(model, "base_model", model)
    for embeddings, layers in LAYOUTS:
        emb, blocks = _get(base, embeddings), _get(base, layers)
        if isinstance(emb, nn.Module) and isinstance(blocks, nn.ModuleList) and len(blocks):
            return emb, list(blocks)
    raise GraftError(
        f"{type(model).__name__}: cannot find the embeddings and layer stack (known layouts: "
        "BERT family, DistilBERT, GPT-2), so freezing, layer_lr_decay and gradual_unfreeze do "
        "not apply; use method full without them, lora or frozen"
    )


def depth_of_parameters(model) -> dict[str, int]:
    """Parameter name → depth: 0 embeddings, i+1 layer i, L+1 everything above (head, pooler).

    Word embeddings tied to an output layer count as embeddings."""
    emb, blocks = stack(model)
    depth_of_module = {id(emb): 0}
    depth_of_module.update({id(block): i + 1 for i, block in enumerate(blocks)})
    top = len(blocks) + 1
    owner: dict[int, int] = {}
    for module in model.modules():
        if id(module) in depth_of_module:
            for param in module.parameters():
                owner.setdefault(id(param), depth_of_module[id(module)])
    return {name: owner.get(id(p), top) for name, p in model.named_parameters()}
