"""Structured surgery on BERT-family encoders: slice attention heads and FFN neurons out.

`compress.prune` decides what to remove and calls these; a pruned bundle stores the removed
heads as zeros (transformers cannot express per-layer head counts), and `apply_pruning` slices
them out again when the predictor loads it. Here, below the inference layer, so that both can
use it.
"""

from __future__ import annotations

import copy

import torch
from torch import nn

from graftwork.errors import BundleError, GraftError

SUPPORTED = "BERT-family encoders (BERT, RoBERTa, ELECTRA, MiniLM)"
LAYOUT = (
    "base_model.encoder.layer[i] with attention.self.{query,key,value}, attention.output.dense, "
    "intermediate.dense and output.dense"
)


# ---------------------------------------------------------------- the model's prunable parts


def find_layers(model) -> list[nn.Module]:
    """The encoder layers of a BERT-family model; a clear error for any other layout."""
    blocks = getattr(getattr(getattr(model, "base_model", model), "encoder", None), "layer", None)
    try:
        linears = [
            m
            for b in blocks
            for m in (
                b.attention.self.query,
                b.attention.self.key,
                b.attention.self.value,
                b.attention.output.dense,
                b.intermediate.dense,
                b.output.dense,
            )
        ]
        ok = len(blocks) > 0 and all(isinstance(m, nn.Linear) for m in linears)
        ok = ok and all(hasattr(b.attention.self, "attention_head_size") for b in blocks)
    except (AttributeError, TypeError):
        ok = False
    if not ok:
        kind = getattr(getattr(model, "config", None), "model_type", type(model).__name__)
        raise GraftError(
            f"pruning supports {SUPPORTED}; this model ({kind}) has a different layout "
            f"(expected {LAYOUT}). Prune a bundle trained from a BERT-family backbone"
        )
    return list(blocks)


def _head_index(heads: list[int], size: int) -> torch.Tensor:
    """Rows (of query/key/value) or columns (of attention.output.dense) holding `heads`."""
    return torch.cat([torch.arange(h * size, (h + 1) * size) for h in heads])


def _take(linear: nn.Linear, index: torch.Tensor, dim: int) -> nn.Linear:
    """A smaller copy keeping output rows (dim 0) or input columns (dim 1) `index`."""
    index = index.to(linear.weight.device)
    weight = linear.weight.detach().index_select(dim, index)
    out = nn.Linear(
        weight.shape[1], weight.shape[0], linear.bias is not None, weight.device, weight.dtype
    )
    with torch.no_grad():
        out.weight.copy_(weight)
        if linear.bias is not None:
            out.bias.copy_(linear.bias if dim == 1 else linear.bias.index_select(0, index))
    return out


def _spread(linear: nn.Linear, index: torch.Tensor, width: int, dim: int) -> nn.Linear:
    """The inverse of `_take`: a `width`-wide copy with zeros where rows/columns were removed."""
    index = index.to(linear.weight.device)
    shape = list(linear.weight.shape)
    shape[dim] = width
    weight = linear.weight.new_zeros(shape).index_copy(dim, index, linear.weight.detach())
    out = nn.Linear(shape[1], shape[0], linear.bias is not None, weight.device, weight.dtype)
    with torch.no_grad():
        out.weight.copy_(weight)
        if linear.bias is not None:
            bias = linear.bias.detach()
            out.bias.copy_(bias if dim == 1 else bias.new_zeros(width).index_copy(0, index, bias))
    return out


def _kept_heads(model, layer: int, dropped: list[int]) -> list[int]:
    total = model.config.num_attention_heads
    if any(not 0 <= h < total for h in dropped) or len(set(dropped)) >= total:
        raise BundleError(
            f"pruned heads {dropped} of layer {layer} are not valid for a model with {total} "
            "heads per layer (each index in range, at least one head kept); the manifest does "
            "not match the model"
        )
    return [h for h in range(total) if h not in set(dropped)]


def prune_heads(model, pruned: dict[int, list[int]]) -> None:
    """Slice heads out in place (head numbers refer to the unpruned model; repeat calls no-op)."""
    for i, block in enumerate(find_layers(model)):
        dropped = list(pruned.get(i, ()))
        attn = block.attention.self
        size = attn.attention_head_size
        keep = _kept_heads(model, i, dropped)
        present = attn.query.out_features // size
        if not dropped or present == len(keep):
            continue
        if present != model.config.num_attention_heads:
            raise BundleError(
                f"layer {i} has {present} heads; expected {model.config.num_attention_heads} "
                f"(unpruned) or {len(keep)} (pruned); the manifest does not match the model"
            )
        index = _head_index(keep, size)
        attn.query, attn.key, attn.value = (
            _take(m, index, 0) for m in (attn.query, attn.key, attn.value)
        )
        block.attention.output.dense = _take(block.attention.output.dense, index, 1)
        attn.num_attention_heads, attn.all_head_size = len(keep), len(keep) * size


def prune_ffn(model, keep: list[torch.Tensor]) -> None:
    """Keep neurons `keep[i]` of layer i (the same count in every layer), in place."""
    for block, index in zip(find_layers(model), keep, strict=True):
        block.intermediate.dense = _take(block.intermediate.dense, index, 0)
        block.output.dense = _take(block.output.dense, index, 1)
    model.config.intermediate_size = len(keep[0])


def standard_copy(model, pruned: dict[int, list[int]]):
    """A copy in the standard shape, the pruned heads' weights zero, for `save_pretrained`."""
    full = copy.deepcopy(model)
    total = model.config.num_attention_heads
    for i, block in enumerate(find_layers(full)):
        if not pruned.get(i):
            continue
        attn = block.attention.self
        size = attn.attention_head_size
        index = _head_index(_kept_heads(model, i, list(pruned[i])), size)
        width = total * size
        attn.query, attn.key, attn.value = (
            _spread(m, index, width, 0) for m in (attn.query, attn.key, attn.value)
        )
        block.attention.output.dense = _spread(block.attention.output.dense, index, width, 1)
        attn.num_attention_heads, attn.all_head_size = total, width
    return full


def apply_pruning(model, manifest: dict):
    """Slice the heads a pruned bundle stores as zeros out of `model` (loaded by
    `from_pretrained`); returns the model. A no-op for bundles that were not pruned."""
    pruned = (manifest.get("pruning") or {}).get("pruned_heads") or {}
    heads = {int(layer): list(h) for layer, h in pruned.items() if h}
    if not heads:
        return model
    blocks = find_layers(model)
    for i, dropped in heads.items():
        attn = blocks[i].attention.self
        if attn.query.out_features != model.config.num_attention_heads * attn.attention_head_size:
            continue  # already sliced
        index = _head_index(dropped, attn.attention_head_size)
        value_rows = attn.value.weight.detach().index_select(0, index)
        out_cols = blocks[i].attention.output.dense.weight.detach().index_select(1, index)
        if value_rows.any() or out_cols.any():
            raise BundleError(
                f"layer {i}: the weights of heads {dropped}, pruned according to the manifest, "
                "are not zero; the weights do not belong to this manifest. Re-create the bundle"
            )
    prune_heads(model, heads)
    return model
