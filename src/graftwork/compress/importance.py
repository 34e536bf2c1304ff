"""Which attention heads and FFN neurons matter: importance scores, and the choice of what to prune.

Importance is measured with the training loss (cross-entropy summed over labelled items).
transformers 5 has no `head_mask`, so both scores come from "gates": forward pre-hooks that
multiply a module's input by a tensor of ones that requires grad.
- heads (Michel et al. 2019, "Are Sixteen Heads Really Better than One?"): |∂L/∂gate| of a gate
  on each head's slice of the context entering the attention output projection, per example,
  summed over examples, then normalised per layer (L2) and ranked across all layers; every
  layer keeps at least one head.
- FFN neurons (first-order Taylor, Molchanov et al. 2017): |Σ_tokens activation × gradient| at
  the input of the FFN output projection per example, summed over examples; this is the same
  gate gradient. Every layer loses the same number of neurons, so `config.intermediate_size`
  shrinks and the saved model is a genuinely smaller standard model.
The projections come from the layout table through `backbones.surgery.prunable_layers`, which
also does the cutting; `runs/prune.py` reads the data, prunes, recovers and writes the bundle.

Leaves out: architectures other than the BERT family, iterative pruning schedules, and
removing whole layers or embedding dimensions.
"""

from __future__ import annotations

import logging

import torch

from graftwork.backbones.surgery import prunable_layers
from graftwork.errors import GraftError
from graftwork.train.loop import summed_loss

log = logging.getLogger("graftwork")


def importance(model, batches) -> tuple[torch.Tensor, torch.Tensor]:
    """Head scores [layers, heads] and FFN neuron scores [layers, neurons] over `batches`
    (collated, with labels): per example |∂L/∂gate|, summed over examples."""
    layers = prunable_layers(model)
    size = layers[0].head_size
    if len({(layer.q.out_features, layer.ffn_in.out_features) for layer in layers}) > 1:
        raise GraftError("importance needs an unpruned model (the same heads in every layer)")
    n_heads = layers[0].q.out_features // size
    n_neurons = layers[0].ffn_in.out_features
    heads = torch.zeros(len(layers), n_heads)
    neurons = torch.zeros(len(layers), n_neurons)
    gates: dict[tuple[str, int], torch.Tensor] = {}

    def gate(key: tuple[str, int], units: int, unit_size: int):
        def hook(module, args):
            x = args[0]  # [batch, tokens, units * unit_size]
            g = torch.ones(x.shape[0], 1, units, 1, dtype=x.dtype, device=x.device)
            gates[key] = g.requires_grad_()
            return (x.reshape(*x.shape[:-1], units, unit_size).mul(g).reshape(x.shape), *args[1:])

        return hook

    handles = []
    for i, layer in enumerate(layers):
        handles.append(layer.attn_out.register_forward_pre_hook(gate(("head", i), n_heads, size)))
        handles.append(layer.ffn_out.register_forward_pre_hook(gate(("ffn", i), n_neurons, 1)))
    was_training = model.training
    model.eval()  # no dropout: the scores are a property of the model, not of a random mask
    device = next(model.parameters()).device
    try:
        for batch in batches:
            gates.clear()
            with torch.enable_grad():
                loss = summed_loss(model, {k: v.to(device) for k, v in batch.items()})
                keys = list(gates)
                grads = torch.autograd.grad(loss, [gates[k] for k in keys])
            for (kind, i), grad in zip(keys, grads, strict=True):
                score = grad.abs().sum(dim=0).flatten().float().cpu()  # [units]
                (heads if kind == "head" else neurons)[i] += score
    finally:
        for handle in handles:
            handle.remove()
        model.train(was_training)
    return heads, neurons


def normalise_by_layer(scores: torch.Tensor) -> torch.Tensor:
    """Each layer's head scores divided by their L2 norm (Michel et al.'s global ranking)."""
    return scores / scores.norm(dim=1, keepdim=True).clamp_min(1e-20)


def choose_heads(scores: torch.Tensor, fraction: float) -> dict[int, list[int]]:
    """The `fraction` of heads with the lowest scores across all layers, keeping >= 1 per layer."""
    n_layers, n_heads = scores.shape
    wanted = round(fraction * n_layers * n_heads)
    possible = n_layers * (n_heads - 1)
    if wanted > possible:
        log.warning(
            "pruning %d of %d heads would empty a layer; pruning %d (one head kept per layer)",
            wanted,
            n_layers * n_heads,
            possible,
        )
        wanted = possible
    pruned: dict[int, list[int]] = {i: [] for i in range(n_layers)}
    count = 0
    for flat in torch.argsort(scores.flatten(), stable=True).tolist():
        if count == wanted:
            break
        layer, head = divmod(flat, n_heads)
        if len(pruned[layer]) < n_heads - 1:
            pruned[layer].append(head)
            count += 1
    return {i: sorted(h) for i, h in pruned.items()}


def choose_neurons(scores: torch.Tensor, fraction: float) -> list[torch.Tensor]:
    """Per layer, the indices (ascending) of the neurons kept: the same count in every layer."""
    n = scores.shape[1]
    keep = n - min(round(fraction * n), n - 1)
    return [torch.argsort(row, descending=True, stable=True)[:keep].sort().values for row in scores]
