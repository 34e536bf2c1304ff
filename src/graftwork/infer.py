"""Inference shared by evaluation, `graft predict` and (later) the server.

Batches are sorted by length (longest first) so padding is minimal, and results are put back in
the input order. One function scores gold data (`evaluate_examples`), one answers users
(`predict_examples`); both run the same forward passes.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch

from .data.batching import collate, inference_batches


@torch.inference_mode()
def logits_for(model, features: list[dict], batch_size: int, pad_id: int) -> list[np.ndarray]:
    """One array per example: [labels] for sequence tasks, [its length, labels] for tokens."""
    was_training = model.training
    model.eval()
    device = next(model.parameters()).device
    out: list[np.ndarray] = [None] * len(features)  # type: ignore[list-item]
    for idx in inference_batches([len(f["input_ids"]) for f in features], batch_size):
        batch = collate([features[i] for i in idx], pad_id)
        logits = model(**{k: v.to(device) for k, v in batch.items()}).logits.float().cpu().numpy()
        for row, i in enumerate(idx):
            out[i] = (
                logits[row] if logits.ndim == 2 else logits[row, : len(features[i]["input_ids"])]
            )
    model.train(was_training)
    return out


def evaluate_examples(
    model, tokenizer, task, examples, id2label, max_length: int, batch_size: int, path: Path
) -> dict:
    label2id = {label: i for i, label in id2label.items()}
    features, labels = task.encode(tokenizer, examples, label2id, max_length, path)
    logits = logits_for(model, features, batch_size, tokenizer.pad_token_id)
    return task.evaluate(examples, features, logits, labels, id2label)


def predict_examples(
    model, tokenizer, task, examples, id2label, max_length: int, batch_size: int, top_k: int = 1
) -> list[dict]:
    features, _ = task.encode(tokenizer, examples, {}, max_length, Path("<input>"))
    logits = logits_for(model, features, batch_size, tokenizer.pad_token_id)
    return task.decode(examples, features, logits, id2label, top_k)
