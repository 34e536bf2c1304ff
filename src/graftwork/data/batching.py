"""Batching: length-grouped sampling for training, length-sorted batches for inference.

Grouping examples of similar length into a batch cuts padding (SST-2 phrases range from 1 to
~60 tokens); the order stays random at the level of mega-batches and batches, seeded by
(seed, epoch) so any epoch's order can be rebuilt exactly on resume.
"""

from __future__ import annotations

import torch

from graftwork.data.encode import IGNORE

MEGA_BATCHES = 50  # a shuffled window of this many batches is sorted by length


def training_batches(
    lengths: list[int], batch_size: int, seed: int, epoch: int, group_by_length: bool = True
) -> list[list[int]]:
    """The epoch's batches of example indices; the same (seed, epoch) gives the same batches."""
    generator = torch.Generator().manual_seed(seed * 1_000_003 + epoch)
    order = torch.randperm(len(lengths), generator=generator).tolist()
    if group_by_length:
        window = batch_size * MEGA_BATCHES
        order = [
            i
            for start in range(0, len(order), window)
            for i in sorted(order[start : start + window], key=lambda j: -lengths[j])
        ]
    batches = [order[i : i + batch_size] for i in range(0, len(order), batch_size)]
    if group_by_length:
        shuffle = torch.randperm(len(batches), generator=generator).tolist()
        batches = [batches[i] for i in shuffle]
    return batches


def inference_batches(
    lengths: list[int], batch_size: int, max_tokens: int | None = None
) -> list[list[int]]:
    """Longest first, so memory peaks at once and padding is minimal. A batch ends at
    `batch_size` examples or when its padded size (examples × longest) would pass `max_tokens`."""
    order = sorted(range(len(lengths)), key=lambda i: -lengths[i])
    batches: list[list[int]] = []
    current: list[int] = []
    for i in order:
        longest = lengths[current[0]] if current else lengths[i]
        full = len(current) >= batch_size
        over = max_tokens is not None and current and (len(current) + 1) * longest > max_tokens
        if full or over:
            batches.append(current)
            current = []
        current.append(i)
    if current:
        batches.append(current)
    return batches


def collate(
    features: list[dict], pad_id: int, labels: list | None = None
) -> dict[str, torch.Tensor]:
    """Pad to the longest in the batch; labels are ints (classification) or lists (tokens)."""
    width = max(len(f["input_ids"]) for f in features)
    batch = {
        "input_ids": torch.full((len(features), width), pad_id, dtype=torch.long),
        "attention_mask": torch.zeros((len(features), width), dtype=torch.long),
    }
    if "token_type_ids" in features[0]:
        batch["token_type_ids"] = torch.zeros((len(features), width), dtype=torch.long)
    for row, f in enumerate(features):
        n = len(f["input_ids"])
        batch["input_ids"][row, :n] = torch.tensor(f["input_ids"])
        batch["attention_mask"][row, :n] = 1
        if "token_type_ids" in batch:
            batch["token_type_ids"][row, :n] = torch.tensor(f["token_type_ids"])
    if "task" in features[0]:  # multi-task: every batch holds one task's examples
        batch["task"] = torch.tensor(features[0]["task"])
    if labels is not None:
        if isinstance(labels[0], list):  # per token: the input's (NER) or a target's (seq2seq)
            longest = max(width, *(len(lab) for lab in labels))
            batch["labels"] = torch.full((len(features), longest), IGNORE, dtype=torch.long)
            for row, lab in enumerate(labels):
                batch["labels"][row, : len(lab)] = torch.tensor(lab)
        else:
            batch["labels"] = torch.tensor(labels, dtype=torch.long)
    return batch
