"""Seeded subsets: the same (examples, n, seed) always gives the same sample, in file order.

Training (`data.max_train_examples`), pruning and the benchmarks all sample through here, so a
later stage can see exactly the examples a bundle was trained on. `hold_out` splits a training
file into the part a run trains on and the part it evaluates on (`data.holdout`, for data that
ships without an eval file): every stage that reads a recipe's training file (training,
pruning, INT8 calibration, export's parity check) goes through it, so none of them sees the
held-out examples as training data."""

from __future__ import annotations

import torch


def subsample(examples: list[dict], n: int | None, seed: int) -> list[dict]:
    if n is None or n >= len(examples):
        return examples
    generator = torch.Generator().manual_seed(seed)
    keep = sorted(torch.randperm(len(examples), generator=generator)[:n].tolist())
    return [examples[i] for i in keep]


def hold_out(examples: list[dict], fraction: float, seed: int) -> tuple[list[dict], list[dict]]:
    """(kept, held out): a seeded `fraction` of the examples held out, both parts in file
    order; the same (examples, fraction, seed) always gives the same split."""
    held_count = max(1, round(len(examples) * fraction))
    if held_count >= len(examples):
        raise ValueError(
            f"data.holdout {fraction} of {len(examples)} examples leaves none to train on"
        )
    generator = torch.Generator().manual_seed(seed)
    held = set(torch.randperm(len(examples), generator=generator)[:held_count].tolist())
    kept = [e for i, e in enumerate(examples) if i not in held]
    return kept, [e for i, e in enumerate(examples) if i in held]


def train_part(examples: list[dict], data) -> list[dict]:
    """The examples of a recipe's training file that it trains on (all of them unless the
    recipe's `data.holdout` holds some out for evaluation)."""
    if getattr(data, "holdout", None) is None:
        return examples
    return hold_out(examples, data.holdout, data.holdout_seed)[0]


def held_part(examples: list[dict], data) -> list[dict]:
    """The examples of a recipe's training file held out as its eval split (`data.holdout`)."""
    return hold_out(examples, data.holdout, data.holdout_seed)[1]


def split_part(examples: list[dict], data, split: str) -> list[dict]:
    """The examples of split `split` among those read for it: with `data.holdout`, the kept part
    of the training file for "train" and the held-out part for "eval" (the recipe read its
    training file for both); any other split as read."""
    if split == "eval" and data.holdout is not None:
        return held_part(examples, data)
    return train_part(examples, data) if split == "train" else examples
