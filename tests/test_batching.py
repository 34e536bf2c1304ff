"""Batching: length grouping is a permutation, deterministic per (seed, epoch), and pads less."""

from __future__ import annotations

import random

from graftwork.data.batching import collate, inference_batches, training_batches
from graftwork.data.encode import IGNORE


def lengths(n=1000, seed=0):
    rng = random.Random(seed)
    return [rng.randint(3, 60) for _ in range(n)]


def padding(batches, lens):
    return sum(max(lens[i] for i in b) * len(b) - sum(lens[i] for i in b) for b in batches)


def test_each_example_once_per_epoch_and_same_order_for_same_seed_and_epoch():
    lens = lengths()
    batches = training_batches(lens, 32, seed=5, epoch=0)
    assert sorted(i for b in batches for i in b) == list(range(len(lens)))
    assert batches == training_batches(lens, 32, seed=5, epoch=0)
    assert batches != training_batches(lens, 32, seed=5, epoch=1)


def test_length_grouping_cuts_padding_against_random_batches():
    lens = lengths()
    grouped = training_batches(lens, 32, seed=1, epoch=0, group_by_length=True)
    plain = training_batches(lens, 32, seed=1, epoch=0, group_by_length=False)
    assert padding(grouped, lens) < 0.2 * padding(plain, lens)


def test_inference_batches_are_longest_first_and_cover_everything():
    lens = lengths(100)
    batches = inference_batches(lens, 16)
    flat = [i for b in batches for i in b]
    assert sorted(flat) == list(range(100))
    assert [lens[i] for i in flat] == sorted(lens, reverse=True)


def test_collate_pads_ids_mask_and_token_labels():
    features = [{"input_ids": [1, 2, 3]}, {"input_ids": [4]}]
    batch = collate(features, pad_id=0, labels=[[5, 6, 7], [8]])
    assert batch["input_ids"].tolist() == [[1, 2, 3], [4, 0, 0]]
    assert batch["attention_mask"].tolist() == [[1, 1, 1], [1, 0, 0]]
    assert batch["labels"].tolist() == [[5, 6, 7], [8, IGNORE, IGNORE]]
    assert collate(features, 0, labels=[1, 0])["labels"].tolist() == [1, 0]
