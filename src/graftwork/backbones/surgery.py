"""Structured surgery on BERT-family encoders: slice attention heads and FFN neurons out.

`compress.importance` decides what to remove and `runs/prune.py` calls these; a pruned bundle
stores the removed heads as zeros (transformers cannot express per-layer head counts), and
`apply_pruning` slices them out again when the predictor loads it. Here, below the inference
layer, so that both can use it. The parts (q/k/v/o, FFN in/out, head size) come from the
layout table (`backbones/layout.py`).
"""

from __future__ import annotations

import copy

import torch
from torch import nn

from graftwork.backbones import layout
from graftwork.errors import BundleError, GraftError

SUPPORTED = layout.BERT.covers.replace(" family", "-family encoders")


# ---------------------------------------------------------------- the model's prunable parts


def prunable_layers(model) -> list[layout.Layer]:
    """The layers of a BERT-family model, from the layout table; a clear error for any other.

    Only the BERT family: surgery also updates the head counts its attention keeps
    (`num_attention_heads`, `all_head_size`), which other families name differently."""
    found = layout.find(model)
    layers = found.layers if found is not None and found.layout is layout.BERT else []
    roles = ("q", "k", "v", "attn_out", "ffn_in", "ffn_out")
    ok = bool(layers) and all(
        isinstance(layer.part(role), nn.Linear) for layer in layers for role in roles
    )
    if not (ok and all(layer.head_size for layer in layers)):
        stack = layout.BERT.stacks[0]
        expected = (
            f"base_model.{stack.layers}[i] with "
            + ", ".join(getattr(stack, role) for role in roles)
            + f" and {stack.head_size}"
        )
        kind = getattr(getattr(model, "config", None), "model_type", type(model).__name__)
        raise GraftError(
            f"pruning supports {SUPPORTED}; this model ({kind}) has a different layout "
            f"(expected {expected}). Prune a bundle trained from a BERT-family backbone"
        )
    return layers


def find_layers(model) -> list[nn.Module]:
    """The encoder layer modules of a BERT-family model (`prunable_layers`' modules)."""
    return [layer.module for layer in prunable_layers(model)]


QKV = ("q", "k", "v")


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
    for i, layer in enumerate(prunable_layers(model)):
        dropped = list(pruned.get(i, ()))
        size = layer.head_size
        keep = _kept_heads(model, i, dropped)
        present = layer.q.out_features // size
        if not dropped or present == len(keep):
            continue
        if present != model.config.num_attention_heads:
            raise BundleError(
                f"layer {i} has {present} heads; expected {model.config.num_attention_heads} "
                f"(unpruned) or {len(keep)} (pruned); the manifest does not match the model"
            )
        index = _head_index(keep, size)
        for role in QKV:
            layer.replace(role, _take(layer.part(role), index, 0))
        layer.replace("attn_out", _take(layer.attn_out, index, 1))
        attn = layer.attention
        attn.num_attention_heads, attn.all_head_size = len(keep), len(keep) * size


def prune_ffn(model, keep: list[torch.Tensor]) -> None:
    """Keep neurons `keep[i]` of layer i (the same count in every layer), in place."""
    for layer, index in zip(prunable_layers(model), keep, strict=True):
        layer.replace("ffn_in", _take(layer.ffn_in, index, 0))
        layer.replace("ffn_out", _take(layer.ffn_out, index, 1))
    model.config.intermediate_size = len(keep[0])


def standard_copy(model, pruned: dict[int, list[int]]):
    """A copy in the standard shape, the pruned heads' weights zero, for `save_pretrained`."""
    full = copy.deepcopy(model)
    total = model.config.num_attention_heads
    for i, layer in enumerate(prunable_layers(full)):
        if not pruned.get(i):
            continue
        size = layer.head_size
        index = _head_index(_kept_heads(model, i, list(pruned[i])), size)
        width = total * size
        for role in QKV:
            layer.replace(role, _spread(layer.part(role), index, width, 0))
        layer.replace("attn_out", _spread(layer.attn_out, index, width, 1))
        attn = layer.attention
        attn.num_attention_heads, attn.all_head_size = total, width
    return full


def apply_pruning(model, manifest: dict):
    """Slice the heads a pruned bundle stores as zeros out of `model` (loaded by
    `from_pretrained`); returns the model. A no-op for bundles that were not pruned."""
    pruned = (manifest.get("pruning") or {}).get("pruned_heads") or {}
    heads = {int(layer): list(h) for layer, h in pruned.items() if h}
    if not heads:
        return model
    layers = prunable_layers(model)
    for i, dropped in heads.items():
        layer = layers[i]
        if layer.q.out_features != model.config.num_attention_heads * layer.head_size:
            continue  # already sliced
        index = _head_index(dropped, layer.head_size)
        value_rows = layer.v.weight.detach().index_select(0, index)
        out_cols = layer.attn_out.weight.detach().index_select(1, index)
        if value_rows.any() or out_cols.any():
            raise BundleError(
                f"layer {i}: the weights of heads {dropped}, pruned according to the manifest, "
                "are not zero; the weights do not belong to this manifest. Re-create the bundle"
            )
    prune_heads(model, heads)
    return model
