"""Long texts: split each input into overlapping windows, and join the windows' logits again.

A text longer than the model's limit is cut into windows of `window` tokens (special tokens
included) where consecutive windows share `stride` tokens (Hugging Face's `stride`); the fast
tokenizer makes them (`return_overflowing_tokens=True`). A text that fits is one window, encoded
exactly as `graft predict` encodes it, so short inputs get the same answers.

- Classification: the windows' logits are aggregated per label, by their mean or by their
  maximum (a label strong in any one window wins).
- NER: the words come from `tasks.ner.from_text`; each word takes the logits of its first piece
  from the window where that piece has the most context, i.e. lies farthest from a window edge
  that cut the text (the start and end of the text itself are not cuts). The result is one row
  per word, handed to the task's own `decode`, so entities keep their character offsets in the
  original text.

Left out: sentence pairs (a served text is one sequence), and decoding itself (the tasks'
`decode` functions do it).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from graftwork.data.encode import model_inputs

AGGREGATES = ("mean", "max")


@dataclass
class Document:
    """One input text: its example (`task.from_text`) and one feature per window."""

    example: dict
    windows: list[dict]


def split(task_name: str, task, tokenizer, texts: list[str], window: int, stride: int):
    """Each text as a `Document`; features carry what the model needs (plus NER's word maps)."""
    examples = [task.from_text(t) for t in texts]
    if task_name == "ner":
        windows = split_words(tokenizer, [e["tokens"] for e in examples], window, stride)
    else:
        windows = split_texts(tokenizer, texts, window, stride)
    return [Document(e, w) for e, w in zip(examples, windows, strict=True)]


def split_texts(tokenizer, texts: list[str], window: int, stride: int) -> list[list[dict]]:
    """Per text, its windows' features (`input_ids`, and `token_type_ids` if the model has them)."""
    enc = tokenizer(
        texts,
        truncation=True,
        max_length=window,
        stride=stride,
        return_overflowing_tokens=True,
    )
    out: list[list[dict]] = [[] for _ in texts]
    keys = model_inputs(enc)
    for i, sample in enumerate(enc["overflow_to_sample_mapping"]):
        out[sample].append({k: enc[k][i] for k in keys})
    return out


def split_words(tokenizer, words: list[list[str]], window: int, stride: int) -> list[list[dict]]:
    """Per word list, its windows' features, each with `word_ids` and `first` (first pieces)."""
    enc = tokenizer(
        words,
        is_split_into_words=True,
        truncation=True,
        max_length=window,
        stride=stride,
        return_overflowing_tokens=True,
        return_offsets_mapping=True,
    )
    out: list[list[dict]] = [[] for _ in words]
    keys = model_inputs(enc)
    for i, sample in enumerate(enc["overflow_to_sample_mapping"]):
        feature = {k: enc[k][i] for k in keys}
        word_ids = enc.word_ids(i)
        offsets = enc["offset_mapping"][i]
        # A window may begin inside a word; a word's first piece starts at offset 0 of the word.
        feature["word_ids"] = word_ids
        feature["first"] = [
            w is not None and offsets[p][0] == 0 and (p == 0 or word_ids[p - 1] != w)
            for p, w in enumerate(word_ids)
        ]
        out[sample].append(feature)
    return out


def aggregate(logits: list[np.ndarray], how: str = "mean") -> np.ndarray:
    """One row of label logits from the windows' rows: their mean, or each label's maximum."""
    stacked = np.stack([np.asarray(row, dtype=np.float64) for row in logits])
    return stacked.max(axis=0) if how == "max" else stacked.mean(axis=0)


def context(position: int, first: int, last: int, cut_left: bool, cut_right: bool) -> float:
    """Tokens of context on the poorer side of `position`; an uncut side counts as unlimited."""
    left = position - first if cut_left else math.inf
    right = last - position if cut_right else math.inf
    return min(left, right)


def merge_words(windows: list[dict], logits: list[np.ndarray]) -> tuple[dict, np.ndarray]:
    """A one-row-per-word (feature, logits) pair for `ner.decode`, from the windows' logits.

    Each word's row is its first piece's logits in the window where the piece has the most
    context; on a tie the earlier window wins. Words with no piece (nothing left after the
    tokenizer's normalisation) get no row, and `decode` tags them `O`, as `graft predict` does.
    """
    best: dict[int, tuple[float, np.ndarray]] = {}
    for k, (feature, rows) in enumerate(zip(windows, logits, strict=True)):
        content = [p for p, w in enumerate(feature["word_ids"]) if w is not None]
        if not content:
            continue
        first, last = content[0], content[-1]
        for p in content:
            if not feature["first"][p]:
                continue
            score = context(p, first, last, cut_left=k > 0, cut_right=k < len(windows) - 1)
            word = feature["word_ids"][p]
            if word not in best or score > best[word][0]:
                best[word] = (score, rows[p])
    words = sorted(best)
    n_labels = logits[0].shape[-1] if logits else 0
    merged = np.stack([best[w][1] for w in words]) if words else np.zeros((0, n_labels))
    return {"word_ids": words}, merged
