"""Vocabulary extension: domain terms become single tokens, each starting from its old pieces.

Terms come from a list file (one term per line) and/or are mined from the domain corpus: the
words (as the tokenizer's own normalizer and pre-tokenizer see them, so lower-cased for an
uncased model) that occur at least `min_count` times and that the tokenizer splits into at
least `min_pieces` pieces, most frequent first, at most `max_terms`. Each term is added to the
fast tokenizer as a whole-word token (`single_word=True`: "melodramatic" becomes one token, but
"unmelodramatic" is tokenized as before) that is matched after normalization (so "Melodramatic"
in an uncased model's input finds it too). The model's embeddings are resized and each new row
is the mean of the embedding rows of the pieces the old tokenizer gave the term; with the MLM
decoder tied to the embeddings that is also its output row, and its output bias is the mean of
the pieces' biases. `tokens_per_word` measures the effect on held-out text.

Leaves out: removing or replacing existing tokens, training a new tokenizer, and terms for
tokenizers without a normalizer/pre-tokenizer pair (the `tokenizers` fast tokenizers all have
one; slow, Python-only tokenizers are not supported).
"""

from __future__ import annotations

import logging
from collections import Counter
from pathlib import Path

import torch
from pydantic import BaseModel, ConfigDict, Field, model_validator

from graftwork.data.text import text_lines
from graftwork.errors import DataError

log = logging.getLogger("graftwork")


class MineConfig(BaseModel):
    model_config = ConfigDict(extra="forbid")
    min_count: int = Field(20, ge=1, description="A word must occur this often in the corpus.")
    min_pieces: int = Field(3, ge=2, description="…and be split into at least this many pieces.")
    max_terms: int = Field(500, ge=1, description="Keep at most this many, most frequent first.")


class VocabConfig(BaseModel):
    model_config = ConfigDict(extra="forbid")
    terms: str | None = Field(None, description="File of terms to add, one per line.")
    mine: MineConfig | None = Field(None, description="Mine frequent split words from data.train.")

    @model_validator(mode="after")
    def _something_to_add(self):
        if self.terms is None and self.mine is None:
            raise ValueError(
                "vocab needs `terms: FILE` (one term per line) and/or `mine: {min_count: 20}`; "
                "remove the vocab section to keep the vocabulary as it is"
            )
        return self


def words(tokenizer, text: str) -> list[str]:
    """The words of `text` as the tokenizer sees them (normalized, then pre-tokenized)."""
    backend = tokenizer.backend_tokenizer
    if backend.normalizer is not None:
        text = backend.normalizer.normalize_str(text)
    if backend.pre_tokenizer is None:
        return text.split()
    return [word for word, _ in backend.pre_tokenizer.pre_tokenize_str(text)]


def normalize(tokenizer, term: str) -> str:
    normalizer = tokenizer.backend_tokenizer.normalizer
    return (normalizer.normalize_str(term) if normalizer is not None else term).strip()


def read_terms(path: Path) -> list[str]:
    if not path.is_file():
        raise DataError(
            f"vocab.terms file {path} does not exist; give a text file with one term per line"
        )
    terms = [line.strip() for line in text_lines(path, expected="one term a line")]
    terms = [t for t in terms if t]
    if not terms:
        raise DataError(f"vocab.terms file {path} holds no terms; write one term per line")
    return terms


def mine_terms(tokenizer, documents: list[str], cfg: MineConfig) -> list[str]:
    """Frequent words the tokenizer splits into ≥ min_pieces pieces, most frequent first."""
    counts = Counter(w for doc in documents for w in words(tokenizer, doc))
    frequent = [w for w, n in counts.items() if n >= cfg.min_count and any(c.isalpha() for c in w)]
    if not frequent:
        return []
    pieces = tokenizer(frequent, add_special_tokens=False)["input_ids"]
    split = [w for w, ids in zip(frequent, pieces, strict=True) if len(ids) >= cfg.min_pieces]
    split.sort(key=lambda w: (-counts[w], w))
    return split[: cfg.max_terms]


def extend(model, tokenizer, terms: list[str]) -> list[str]:
    """Add `terms` to tokenizer and model; returns the terms added (normalized, in order).

    Terms that are already a single token, or repeat, are skipped. Each new embedding row (and
    output bias) is the mean of those of the term's pieces under the old tokenizer."""
    from tokenizers import AddedToken

    new: list[str] = []
    for term in terms:
        term = normalize(tokenizer, term)
        if term and term not in new and len(tokenizer.tokenize(term)) > 1:
            new.append(term)
    skipped = len(terms) - len(new)
    if skipped:
        log.info("vocab: %d term(s) skipped (already one token, or repeated)", skipped)
    if not new:
        return []
    pieces = tokenizer(new, add_special_tokens=False)["input_ids"]
    tokenizer.add_tokens([AddedToken(t, single_word=True, normalized=True) for t in new])
    ids = tokenizer.convert_tokens_to_ids(new)
    model.resize_token_embeddings(len(tokenizer), mean_resizing=False)
    embeddings = model.get_input_embeddings().weight
    bias = _output_bias(model)
    with torch.no_grad():
        for new_id, old_ids in zip(ids, pieces, strict=True):
            embeddings[new_id] = embeddings[old_ids].mean(dim=0)
            if bias is not None:
                bias[new_id] = bias[old_ids].mean()
    log.info("vocab: added %d term(s), e.g. %s", len(new), ", ".join(new[:8]))
    return new


def _output_bias(model) -> torch.Tensor | None:
    output = model.get_output_embeddings() if hasattr(model, "get_output_embeddings") else None
    bias = getattr(output, "bias", None)
    return bias if isinstance(bias, torch.Tensor) else None


def tokens_per_word(tokenizer, documents: list[str]) -> float:
    """Tokens (without special tokens) per word, over all documents."""
    n_words = sum(len(words(tokenizer, doc)) for doc in documents)
    n_tokens = sum(len(ids) for ids in tokenizer(documents, add_special_tokens=False)["input_ids"])
    return n_tokens / max(1, n_words)
