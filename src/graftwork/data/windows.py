"""Long texts: split each input into overlapping windows, and join the windows' logits again.

One place for every path that runs a model on inputs it did not train on: `graft predict`,
`graft eval`, the Python API (`Predictor.predict` / `.evaluate`), a run's own evaluation of its
eval/test splits and the server all split with `split` and join with `join`, so they answer a
long document alike.

An input longer than the window is cut into windows of `window` tokens (special tokens
included) where consecutive windows share `stride` tokens (Hugging Face's `stride`); the fast
tokenizer makes them (`return_overflowing_tokens=True`). An input that fits is one window,
encoded exactly as training encodes it (`data.encode`), so short inputs get the answers they
got before windows existed. `settings` chooses and checks (window, stride): the window is the
bundle's `data.max_length` unless the server is told otherwise, the stride a quarter of the
window's text tokens.

What a window holds and how windows are joined is the task's business (`Task.split_windows`,
`Task.merge_windows`); the pieces they are built from live here:

- `split_texts` / `aggregate`: a text's windows, and one row of label logits from the windows'
  rows, by their mean or by their maximum (a label strong in any one window wins).
- `split_words` / `merge_words`: a word list's windows; each word takes the logits of its first
  piece from the window where that piece has the most context, i.e. lies farthest from a window
  edge that cut the text (the start and end of the text itself are not cuts). The result is one
  row per word, for the task's own `decode`, so entities keep their character offsets.

Left out: running the model (`inference.forward`) and decoding (the tasks' `decode`).
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from graftwork.data.encode import model_inputs
from graftwork.errors import GraftError

AGGREGATES = ("mean", "max")


@dataclass
class Document:
    """One input: its example and the features of its windows (one if it fits)."""

    example: dict
    windows: list[dict]


def split(task, tokenizer, examples: list[dict], window: int, stride: int) -> list[Document]:
    """Each example as a `Document`, its windows made by the task (`Task.split_windows`)."""
    per_example = task.split_windows(tokenizer, examples, window, stride)
    return [Document(e, w) for e, w in zip(examples, per_example, strict=True)]


def flat(docs: list[Document]) -> list[dict]:
    """Every window of every document, in order (what the model runs on)."""
    return [feature for doc in docs for feature in doc.windows]


def join(task, docs: list[Document], logits: list, how: str = "mean") -> tuple[list, list]:
    """(features, logits), one of each per document, from the logits of `flat(docs)`."""
    features, rows, start = [], [], 0
    for doc in docs:
        end = start + len(doc.windows)
        feature, row = task.merge_windows(doc.windows, logits[start:end], how)
        features.append(feature)
        rows.append(row)
        start = end
    return features, rows


def settings(
    tokenizer, window: int, stride: int | None = None, limit: int | None = None
) -> tuple[int, int]:
    """(window, stride) in tokens: the stride defaults to a quarter of the window's text tokens
    and must be smaller than them; the window must fit the model's positions (`limit`)."""
    if limit is not None and window > limit:
        raise GraftError(f"--window {window} is longer than the model allows ({limit} tokens)")
    room = window - tokenizer.num_special_tokens_to_add(pair=False)
    stride = stride if stride is not None else room // 4
    if stride >= room:
        raise GraftError(
            f"--stride {stride} must be smaller than a window's {room} text tokens "
            f"(--window {window} less special tokens)"
        )
    return window, stride


def model_limit(tokenizer, folder: str | Path) -> int | None:
    """The most tokens the model in `folder` takes: its positions, or the tokenizer's limit."""
    config_file = Path(folder) / "config.json"
    model_config = json.loads(config_file.read_text()) if config_file.is_file() else {}
    limits = [
        model_config.get("max_position_embeddings"),
        getattr(tokenizer, "model_max_length", None),
    ]
    return min((n for n in limits if isinstance(n, int) and 0 < n < 1_000_000), default=None)


# ---------------------------------------------------------------- the pieces tasks use


def _overflow(tokenizer, inputs: list, window: int, stride: int, **options):
    """The tokenizer's encoding of `inputs` cut into windows, and per window (its index in the
    encoding, the input it comes from, its model features); `options` go to the tokenizer."""
    enc = tokenizer(
        inputs,
        truncation=True,
        max_length=window,
        stride=stride,
        return_overflowing_tokens=True,
        **options,
    )
    keys = model_inputs(enc)
    samples = enc["overflow_to_sample_mapping"]
    return enc, [(i, sample, {k: enc[k][i] for k in keys}) for i, sample in enumerate(samples)]


def split_texts(tokenizer, texts: list[str], window: int, stride: int) -> list[list[dict]]:
    """Per text, its windows' features (`input_ids`, and `token_type_ids` if the model has them)."""
    out: list[list[dict]] = [[] for _ in texts]
    for _, sample, feature in _overflow(tokenizer, texts, window, stride)[1]:
        out[sample].append(feature)
    return out


def split_words(tokenizer, words: list[list[str]], window: int, stride: int) -> list[list[dict]]:
    """Per word list, its windows' features, each with `word_ids` and `first` (first pieces).

    A piece is its word's first when it is the word's first in the window, unless it opens a
    window after the first one: a window may begin inside a word, and then only a piece at
    offset 0 of its word is the first. (Checking the offset only there keeps a window that
    holds a whole text identical to `encode.first_pieces`, whatever a tokenizer's offsets say.)
    """
    enc, pieces = _overflow(
        tokenizer, words, window, stride, is_split_into_words=True, return_offsets_mapping=True
    )
    out: list[list[dict]] = [[] for _ in words]
    for i, sample, feature in pieces:
        word_ids = enc.word_ids(i)
        offsets = enc["offset_mapping"][i]
        content = [p for p, w in enumerate(word_ids) if w is not None]
        lead = content[0] if content and out[sample] else None  # opens a later window
        feature["word_ids"] = word_ids
        feature["first"] = [
            w is not None and (p == 0 or word_ids[p - 1] != w) and (p != lead or offsets[p][0] == 0)
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
    tokenizer's normalisation) get no row, and `decode` tags them `O`.
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
