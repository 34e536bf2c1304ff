"""Inference shared by evaluation, `graft predict`, export checks and the server.

A backend is a `forward(batch) -> logits` function over collated batches (PyTorch or ONNX
Runtime). Batches are sorted by length (longest first) and cut by a batch size and a token
budget, so padding is minimal; results come back in the input order.

Predictions and evaluations run on windows (`data.windows`): each input is split by its task
into windows of `window` tokens sharing `stride` (an input that fits is one window, encoded as
training encoded it), the model runs over every window, and the windows' logits are joined per
input before the task decodes or scores them. `answers` is that last step, shared with the
server (which gets its logits from its batcher), so every path answers a long text alike.
`stride=None` means the default (`data.windows.settings`).

Left out: the backends themselves (`inference/pytorch.py`, `inference/onnx.py`).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch

from graftwork.data import windows
from graftwork.data.batching import collate, inference_batches
from graftwork.data.encode import label_ids
from graftwork.tasks import output_logits


def torch_forward(model):
    """Forward function for a transformers model, in eval mode and without autograd."""
    model.eval()
    device = next(model.parameters()).device

    @torch.inference_mode()
    def forward(batch: dict) -> np.ndarray:
        out = model(**{k: v.to(device) for k, v in batch.items()})
        return output_logits(out).float().cpu().numpy()

    return forward


def task_forward(task, model, tokenizer, generation=None):
    """The forward a task runs `model` with: its `generate` for a generating task (the batch's
    generated answers, with the recipe's `generation` settings), else `torch_forward`."""
    if hasattr(task, "generate"):
        return task.generate(model, tokenizer, generation)
    return torch_forward(model)


def logits_for(
    forward, features: list[dict], batch_size: int, pad_id: int, max_tokens: int | None = None
) -> list[np.ndarray]:
    """One array per example: [labels] for sequence tasks, [its length, labels] for tokens."""
    out: list[np.ndarray] = [None] * len(features)  # type: ignore[list-item]
    lengths = [len(f["input_ids"]) for f in features]
    for idx in inference_batches(lengths, batch_size, max_tokens):
        logits = forward(collate([features[i] for i in idx], pad_id))
        for row, i in enumerate(idx):
            out[i] = logits[row] if logits.ndim == 2 else logits[row, : lengths[i]]
    return out


def window_logits(
    forward,
    tokenizer,
    task,
    examples: list[dict],
    window: int,
    stride: int | None,
    batch_size: int,
    max_tokens: int | None = None,
) -> tuple[list[windows.Document], list[np.ndarray]]:
    """The examples as documents of windows, and the logits of every window, in order."""
    _, stride = windows.settings(tokenizer, window, stride)
    docs = windows.split(task, tokenizer, examples, window, stride)
    logits = logits_for(forward, windows.flat(docs), batch_size, tokenizer.pad_token_id, max_tokens)
    return docs, logits


def answers(task, docs, logits, id2label, top_k: int = 1, aggregate: str = "mean") -> list[dict]:
    """One decoded answer per document, from the logits of all its windows."""
    features, rows = windows.join(task, docs, logits, aggregate)
    return task.decode([doc.example for doc in docs], features, rows, id2label, top_k)


def evaluate_examples(
    forward,
    tokenizer,
    task,
    examples,
    id2label,
    window: int,
    batch_size: int,
    path: Path,
    stride: int | None = None,
) -> dict:
    """The task's metrics on labelled examples (windows joined by their mean)."""
    label2id = {label: i for i, label in id2label.items()}
    labels = label_ids(examples, task.LABEL_KEY, label2id, path)
    docs, logits = window_logits(forward, tokenizer, task, examples, window, stride, batch_size)
    features, rows = windows.join(task, docs, logits)
    return task.evaluate(examples, features, rows, labels, id2label)


def evaluate_sets(
    forward, tokenizer, task, sets: dict, id2label, window: int, batch_size: int
) -> dict:
    """`evaluate_examples` for each named labelled set (a ReadResult: examples and path)."""
    return {
        name: evaluate_examples(
            forward, tokenizer, task, result.examples, id2label, window, batch_size, result.path
        )
        for name, result in sets.items()
    }


def predict_examples(
    forward,
    tokenizer,
    task,
    examples,
    id2label,
    window: int,
    batch_size: int,
    top_k: int = 1,
    max_tokens: int | None = None,
    stride: int | None = None,
    aggregate: str = "mean",
) -> list[dict]:
    """One answer per example (the task's `decode`), long ones read window by window."""
    docs, logits = window_logits(
        forward, tokenizer, task, examples, window, stride, batch_size, max_tokens
    )
    return answers(task, docs, logits, id2label, top_k, aggregate)
