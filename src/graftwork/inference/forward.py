"""Inference shared by evaluation, `graft predict`, export checks and the server.

A backend is a `forward(batch) -> logits` function over collated batches (PyTorch or ONNX
Runtime). Batches are sorted by length (longest first) and cut by a batch size and a token
budget, so padding is minimal; results come back in the input order.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch

from graftwork.data.batching import collate, inference_batches


def torch_forward(model):
    """Forward function for a transformers model, in eval mode and without autograd."""
    model.eval()
    device = next(model.parameters()).device

    @torch.inference_mode()
    def forward(batch: dict) -> np.ndarray:
        return model(**{k: v.to(device) for k, v in batch.items()}).logits.float().cpu().numpy()

    return forward


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


def evaluate_examples(
    forward, tokenizer, task, examples, id2label, max_length: int, batch_size: int, path: Path
) -> dict:
    label2id = {label: i for i, label in id2label.items()}
    features, labels = task.encode(tokenizer, examples, label2id, max_length, path)
    logits = logits_for(forward, features, batch_size, tokenizer.pad_token_id)
    return task.evaluate(examples, features, logits, labels, id2label)


def evaluate_sets(
    forward, tokenizer, task, sets: dict, id2label, max_length: int, batch_size: int
) -> dict:
    """`evaluate_examples` for each named labelled set (a ReadResult: examples and path)."""
    return {
        name: evaluate_examples(
            forward, tokenizer, task, result.examples, id2label, max_length, batch_size, result.path
        )
        for name, result in sets.items()
    }


def predict_examples(
    forward,
    tokenizer,
    task,
    examples,
    id2label,
    max_length: int,
    batch_size: int,
    top_k: int = 1,
    max_tokens: int | None = None,
) -> list[dict]:
    features, _ = task.encode(tokenizer, examples, {}, max_length, Path("<input>"))
    logits = logits_for(forward, features, batch_size, tokenizer.pad_token_id, max_tokens)
    return task.decode(examples, features, logits, id2label, top_k)
