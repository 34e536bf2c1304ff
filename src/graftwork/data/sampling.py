"""Seeded subsets: the same (examples, n, seed) always gives the same sample, in file order.

Training (`data.max_train_examples`), pruning and the benchmarks all sample through here, so a
later stage can see exactly the examples a bundle was trained on."""

from __future__ import annotations

import torch


def subsample(examples: list[dict], n: int | None, seed: int) -> list[dict]:
    if n is None or n >= len(examples):
        return examples
    generator = torch.Generator().manual_seed(seed)
    keep = sorted(torch.randperm(len(examples), generator=generator)[:n].tolist())
    return [examples[i] for i in keep]
