"""Tasks: one module per task, each implementing `tasks.base.Task`, registered in
`graftwork.registry.TASKS`. Helpers every task shares live here."""

from __future__ import annotations


def softmax(logits):
    import numpy as np

    shifted = logits - logits.max(axis=-1, keepdims=True)
    exp = np.exp(shifted)
    return exp / exp.sum(axis=-1, keepdims=True)
