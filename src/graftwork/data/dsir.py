"""Importance weights over hashed n-grams (DSIR: Xie et al. 2023, "Data Selection for Language
Models via Importance Resampling"), for `graft select --by dsir`.

A text is a bag of its lower-cased word unigrams and bigrams (words and punctuation runs, as
NLTK's WordPunct tokenizer splits them), hashed into `buckets` features (10,000, the paper's
size). Two multinomials over the buckets, each with add-one smoothing, are fitted by counting:
one on the task's texts, one on the pool (streamed: counts are summed a chunk at a time, so
memory is one chunk whatever the pool's size). A pool text's log importance weight is
`sum_j count_j * (log p_task[j] - log p_pool[j])`, the log-likelihood ratio of the text under
the two bag-of-n-gram models. Selecting K texts by importance resampling without replacement is
Gumbel top-k: the K largest `weight + Gumbel(0, 1)` keys, from a seeded generator drawn in
pool order (so the draw does not depend on how the pool is chunked); `gumbel_keys(..., None)`
gives the K largest weights instead (deterministic top-k).

Why not the authors' package (PyPI `data-selection`, 1.0.3): it hashes each n-gram with
SHA-256 in a Python loop (minutes for a million lines where scikit-learn's `HashingVectorizer`
takes seconds), draws its Gumbel noise from NumPy's global generator (no seed of its own),
drops texts under 100 tokens by default (every caption or news sentence), and reads JSON lines
into a cache folder of its own; what graftwork needs (line numbers, a streaming top-K with
duplicates written once, atomic outputs) would sit around it anyway. The model itself is
counting and one sparse product, written here on scikit-learn and NumPy.

Leaves out: the paper's length filter, several target mixtures (`separate_targets`), fitting
the pool model on a sample of the pool, and n-grams above bigrams.
"""

from __future__ import annotations

from collections.abc import Iterable

import numpy as np

BUCKETS = 10_000  # the paper's hashing space
WORDPUNCT = r"(?u)\w+|[^\w\s]+"  # NLTK's WordPunctTokenizer: word runs and punctuation runs


def hasher(buckets: int = BUCKETS):
    """The n-gram featurizer: (texts) -> sparse (texts, buckets) counts."""
    from sklearn.feature_extraction.text import HashingVectorizer

    return HashingVectorizer(
        n_features=buckets,
        ngram_range=(1, 2),
        token_pattern=WORDPUNCT,
        lowercase=True,
        alternate_sign=False,
        norm=None,
        dtype=np.float64,
    )


def bucket_counts(featurize, chunks: Iterable[list[str]], buckets: int) -> tuple[np.ndarray, int]:
    """(summed bucket counts, number of texts) over `chunks` of texts, one chunk in memory."""
    counts = np.zeros(buckets, dtype=np.float64)
    texts = 0
    for chunk in chunks:
        matrix = featurize.transform(chunk)
        counts += np.bincount(matrix.indices, weights=matrix.data, minlength=buckets)
        texts += len(chunk)
    return counts, texts


def log_ratio(task_counts: np.ndarray, pool_counts: np.ndarray) -> np.ndarray:
    """log p_task - log p_pool per bucket, both multinomials add-one smoothed."""
    task = (task_counts + 1.0) / (task_counts.sum() + task_counts.size)
    pool = (pool_counts + 1.0) / (pool_counts.sum() + pool_counts.size)
    return np.log(task) - np.log(pool)


def weights(featurize, ratio: np.ndarray, texts: list[str]) -> np.ndarray:
    """Each text's log importance weight: its bucket counts dotted with `ratio`."""
    return np.asarray(featurize.transform(texts) @ ratio).ravel()


def gumbel_keys(values: np.ndarray, rng: np.random.Generator | None) -> np.ndarray:
    """Sampling keys: `values` plus standard Gumbel noise (the K largest keys are a draw of K
    without replacement with probabilities proportional to exp(value)); `rng` None: `values`."""
    if rng is None:
        return values
    return values + rng.gumbel(size=values.shape)
