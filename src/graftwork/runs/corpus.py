"""Raw domain text for continued pretraining: documents from files, sequences, BERT masks.

The recipe's `data` section (`PretrainData`) names the text. Documents are the non-empty lines
of a .txt file, of every .txt file under a folder, or the text column of a TSV/CSV/JSONL file;
without held-out text, a seeded fraction of them is held out. A document longer than the
sequence length is cut into consecutive chunks (none of the text is dropped).

Masking is BERT's: `ratio` of the words (whole-word masking: every piece of a chosen word is
masked together; otherwise of the tokens) are chosen, and each chosen token becomes [MASK]
(80 %), a random token (10 %) or stays (10 %). A sequence of n words gets floor(ratio·n + u)
of them (u uniform in [0, 1)), so the expected fraction is exactly the ratio even for short
sequences. Masks are a function of the seed alone. Static masking (BERT's) draws them once, up
front, and trains every epoch on them; dynamic masking (RoBERTa's; `DynamicMasks`) draws a new
mask for every epoch from (seed, epoch) alone (`epoch_seed`; epoch 0 uses the seed itself), so
an epoch's masks can be rebuilt on resume and two runs with one seed see the same masks.

Leaves out: packing several documents into one sequence.
"""

from __future__ import annotations

import logging
import random
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch
from pydantic import BaseModel, ConfigDict, Field

from graftwork.config.recipe import DataConfig, TaskConfig
from graftwork.data.encode import IGNORE, model_inputs
from graftwork.data.readers import read_examples
from graftwork.data.text import text_lines
from graftwork.errors import DataError

log = logging.getLogger("graftwork")

TABLES = (".tsv", ".csv", ".jsonl", ".json")


class PretrainData(BaseModel):
    """The `data` section of a pretraining recipe."""

    model_config = ConfigDict(extra="forbid")

    train: str = Field(
        description="Domain text: a .txt file (one document a line), a folder of .txt files, "
        "or a TSV/CSV/JSONL file (its `text` column)."
    )
    eval: str | None = Field(None, description="Held-out text (same formats).")
    eval_fraction: float = Field(
        0.05, ge=0, lt=1, description="Without `eval`: hold out this fraction of train."
    )
    text: str = Field("sentence", description="TSV/CSV/JSONL: the column with the text.")
    header: bool = Field(True, description="TSV/CSV: the first row names the columns.")
    max_documents: int | None = Field(
        None, ge=1, description="MLM-train on a seeded sample of this many documents."
    )
    max_length: int = Field(128, ge=8, le=8192)


def read_corpus(
    data: PretrainData, resolve: Callable[[str], Path], seed: int
) -> tuple[list[str], list[str]]:
    """(train, held-out) documents; without data.eval, a seeded eval_fraction of train.
    `resolve` turns a path as the recipe gives it into a file (`RecipeBase.resolve_path`)."""
    train = read_documents(resolve(data.train), data.text, data.header)
    if data.eval is not None:
        return train, read_documents(resolve(data.eval), data.text, data.header)
    if data.eval_fraction == 0:
        return train, []
    n_eval = max(1, round(len(train) * data.eval_fraction))
    if n_eval >= len(train):
        raise DataError(
            f"{data.train}: {len(train)} document(s) are too few to hold out "
            f"{data.eval_fraction:.0%}; add text, or give data.eval"
        )
    generator = torch.Generator().manual_seed(seed)
    held = set(torch.randperm(len(train), generator=generator)[:n_eval].tolist())
    kept = [d for i, d in enumerate(train) if i not in held]
    return kept, [d for i, d in enumerate(train) if i in held]


def read_documents(path: Path, text: str, header: bool) -> list[str]:
    """Documents (non-empty lines, or rows of a table's `text` column) of a file or folder."""
    if not path.exists():
        raise DataError(
            f"text file {path} does not exist; check data.train / data.eval in the recipe"
        )
    if path.is_dir():
        files = sorted(path.rglob("*.txt"))
        if not files:
            raise DataError(f"folder {path} holds no .txt files; put the domain text in *.txt")
        documents = [doc for file in files for doc in _lines(file)]
    elif path.suffix.lower() in TABLES:
        fmt = DataConfig(header=header, on_bad_rows="skip")
        columns = TaskConfig(text=text, label=text)  # no label column needed
        result = read_examples(path, columns, fmt, require_labels=False)
        if result.skipped:
            log.warning("%s: skipped %d row(s) without text", path, len(result.skipped))
        documents = [e["text"] for e in result.examples]
    else:
        documents = _lines(path)
    if not documents:
        raise DataError(f"{path}: no text found (empty?); give one document per line")
    return documents


def _lines(file: Path) -> list[str]:
    lines = text_lines(file, expected="one document a line")
    return [line.strip() for line in lines if line.strip()]


def encode_documents(tokenizer, documents: list[str], max_length: int) -> list[dict]:
    """Token ids and word ids; a document longer than max_length becomes several chunks."""
    enc = tokenizer(
        documents, truncation=True, max_length=max_length, return_overflowing_tokens=True
    )
    keys = model_inputs(enc)
    return [
        {**{k: enc[k][i] for k in keys}, "word_ids": enc.word_ids(i)}
        for i in range(len(enc["input_ids"]))
    ]


def mask_features(
    features: list[dict], tokenizer, ratio: float, whole_word: bool, seed: int
) -> tuple[list[dict], list[list[int]]]:
    """BERT masking: (features with corrupted input_ids, labels: the original id or IGNORE)."""
    rng = random.Random(seed)
    special = set(tokenizer.all_special_ids)
    replacements = [i for i in range(len(tokenizer)) if i not in special]
    masked, labels = [], []
    for feature in features:
        ids = list(feature["input_ids"])
        units: dict[Any, list[int]] = {}  # word (or position) → its positions
        for pos, word in enumerate(feature["word_ids"]):
            if word is not None:
                units.setdefault(word if whole_word else pos, []).append(pos)
        groups = list(units.values())
        count = int(ratio * len(groups) + rng.random())
        label = [IGNORE] * len(ids)
        for group in rng.sample(groups, count):
            for pos in group:
                label[pos] = ids[pos]
                draw = rng.random()
                if draw < 0.8:
                    ids[pos] = tokenizer.mask_token_id
                elif draw < 0.9:
                    ids[pos] = rng.choice(replacements)
        masked.append({**{k: v for k, v in feature.items() if k != "word_ids"}, "input_ids": ids})
        labels.append(label)
    return masked, labels


def maskable(features: list[dict]) -> list[dict]:
    """The sequences that have at least one word (a mask can fall on them)."""
    return [f for f in features if any(w is not None for w in f["word_ids"])]


def epoch_seed(seed: int, epoch: int) -> int:
    """The masking seed of `epoch` in dynamic masking (epoch 0: `seed`)."""
    return seed + 1_000_003 * epoch


class DynamicMasks:
    """A new mask every epoch: `features` and `labels` are lists that `for_epoch(e)` refills in
    place with epoch e's masking of the same sequences (lengths unchanged), so the training
    loop, which indexes them, reads that epoch's masks. Sequences are every encoded sequence
    with a word; one may get no masked token in an epoch (it then adds nothing to the loss)."""

    def __init__(self, tokenizer, documents, max_length, ratio, whole_word, seed: int):
        self.tokenizer, self.ratio, self.whole_word, self.seed = tokenizer, ratio, whole_word, seed
        self.encoded = maskable(encode_documents(tokenizer, documents, max_length))
        self.features: list[dict] = []
        self.labels: list[list[int]] = []
        self.epoch: int | None = None
        self.for_epoch(0)

    def for_epoch(self, epoch: int) -> None:
        if epoch == self.epoch:
            return
        features, labels = mask_features(
            self.encoded, self.tokenizer, self.ratio, self.whole_word, epoch_seed(self.seed, epoch)
        )
        self.features[:], self.labels[:] = features, labels
        self.epoch = epoch


def masked_sequences(
    tokenizer, documents: list[str], max_length: int, ratio: float, whole_word: bool, seed: int
) -> tuple[list[dict], list[list[int]]]:
    """Encode and mask `documents`; sequences without a masked token are left out."""
    features = encode_documents(tokenizer, documents, max_length)
    features, labels = mask_features(features, tokenizer, ratio, whole_word, seed)
    keep = [i for i, row in enumerate(labels) if any(x != IGNORE for x in row)]
    return [features[i] for i in keep], [labels[i] for i in keep]
