"""The torch side of DANN (`objectives/dann.py`): gradient reversal, the domain classifier,
pooling, and the joint source + target batch.

`objectives/dann.py` imports this module inside its functions, so that reading the recipe
imports no torch.

Leaves out: per-token domain classifiers (the classifier reads one pooled vector a sentence).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from graftwork.data.encode import IGNORE


class _Reverse(torch.autograd.Function):
    @staticmethod
    def forward(ctx, x: torch.Tensor, coefficient: float) -> torch.Tensor:
        ctx.coefficient = coefficient
        return x.view_as(x)

    @staticmethod
    def backward(ctx, grad: torch.Tensor):
        return -ctx.coefficient * grad, None


def reverse_gradient(x: torch.Tensor, coefficient: float) -> torch.Tensor:
    """Identity forward; the backward pass multiplies the incoming gradient by −coefficient."""
    return _Reverse.apply(x, coefficient)


class DomainHead(nn.Module):
    """pooled [B, H] → reversed gradient → Linear → ReLU → Dropout → Linear → domain logit [B].

    `config` is the objective's `DannConfig` (its `hidden` units and `dropout`)."""

    def __init__(self, hidden_size: int, config):
        super().__init__()
        self.coefficient = 0.0  # λ_p, set before every batch
        self.classifier = nn.Sequential(
            nn.Linear(hidden_size, config.hidden),
            nn.ReLU(),
            nn.Dropout(config.dropout),
            nn.Linear(config.hidden, 1),
        )

    def forward(self, pooled: torch.Tensor) -> torch.Tensor:
        return self.classifier(reverse_gradient(pooled, self.coefficient)).squeeze(-1)


def mean_pool(hidden: torch.Tensor, attention_mask: torch.Tensor) -> torch.Tensor:
    """Mean of hidden [B, L, H] over the positions where attention_mask [B, L] is 1 → [B, H]."""
    mask = attention_mask.unsqueeze(-1).to(hidden.dtype)  # [B, L, 1]
    return (hidden * mask).sum(1) / mask.sum(1).clamp(min=1.0)


def process() -> tuple[int, int]:
    """(rank, world size) of this process in data-parallel training; (0, 1) alone."""
    if torch.distributed.is_available() and torch.distributed.is_initialized():
        return torch.distributed.get_rank(), torch.distributed.get_world_size()
    return 0, 1


def pad_batch(batch: dict[str, torch.Tensor], width: int, pad_id: int) -> dict:
    """Right-pad every [B, L] tensor of a collated batch to [B, width]."""
    fill = {"input_ids": pad_id, "labels": IGNORE}
    out = {}
    for key, value in batch.items():
        extra = width - value.shape[1] if value.dim() == 2 else 0
        out[key] = F.pad(value, (0, extra), value=fill.get(key, 0)) if extra > 0 else value
    return out


def join(source: dict[str, torch.Tensor], target: dict[str, torch.Tensor], pad_id: int):
    """Source rows then target rows, padded to one width; labels stay source-only."""
    width = max(source["input_ids"].shape[1], target["input_ids"].shape[1])
    source, target = pad_batch(source, width, pad_id), pad_batch(target, width, pad_id)
    return {k: torch.cat([source[k], target[k]]) for k in source if k != "labels"}


def domain_loss(logit: torch.Tensor, n_source: int, n_target: int):
    """(binary cross-entropy of the domain logits [n_source + n_target], accuracy): source
    rows are domain 0, target rows domain 1."""
    domain = torch.cat([torch.zeros(n_source), torch.ones(n_target)]).to(logit.device)
    loss = F.binary_cross_entropy_with_logits(logit, domain)
    hit = ((logit.detach() > 0).float() == domain).float().mean()
    return loss, float(hit)
