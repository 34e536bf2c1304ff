"""Tasks: one module per task, each implementing `tasks.base.Task`, registered in
`graftwork.registry.TASKS`. Helpers every task shares live here."""

from __future__ import annotations


def output_logits(output):
    """A transformers model output's logits: `.logits`, or for a span head (extractive QA,
    `…ForQuestionAnswering`) its start and end logits stacked on a last axis, (batch, tokens,
    2), so that every path reads a span head as a token-level head with two labels."""
    if getattr(output, "start_logits", None) is None:
        return output.logits
    import torch

    return torch.stack((output.start_logits, output.end_logits), dim=-1)


def softmax(logits):
    import numpy as np

    shifted = logits - logits.max(axis=-1, keepdims=True)
    exp = np.exp(shifted)
    return exp / exp.sum(axis=-1, keepdims=True)
