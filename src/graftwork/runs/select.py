"""Data selection: the K sentences of a large unlabelled pool most like a task's data.

`graft select --pool POOL --like TASK_DATA --top K --by dsir|tfidf|embedding --output FILE`
scores every line of the pool (a UTF-8 text file, one sentence or paragraph a line) by how much
it is like the task's texts and writes the best K, highest score first, with their scores.

The pool is streamed: it is read `chunk` lines at a time and only a heap of the K best lines
is kept, so memory is K lines plus one chunk, whatever the pool's size. Exact duplicates are
written once (a repeat has the score of the copy already kept, and a later line wins no tie,
so checking the heap alone is exact). Ties keep the earlier line.

Three ways to score (`by`):
- `dsir` (default): importance resampling over hashed unigram and bigram counts
  (`graftwork.data.dsir`): a bag-of-n-grams model of the task and one of the pool (a first
  streamed pass), a line's score its log importance weight log p_task(x) - log p_pool(x), and
  the K lines drawn without replacement by Gumbel top-k (`seed`), or, with `sample=False`, the
  K highest weights. The output holds the drawn lines ordered by weight. A line repeated in the
  pool gets one key per copy (as often drawn as the pool holds it) and is written once.
- `tfidf` (scikit-learn): `HashingVectorizer` counts words and bigrams (English stop words
  left out: they carry no topic, and without them "the"/"and" set the task's centroid)
  without a vocabulary
  to hold, so a first pass over the pool can count each term's document frequency in
  chunks; `TfidfTransformer` then weights with the pool's IDF (smoothed, sublinear term
  frequency, L2-normalised rows). IDF is the pool's, not the task's: a word every task
  sentence has ("company" in financial news) would otherwise weigh nothing.
- `embedding`: mean-pooled, L2-normalised last hidden states of a backbone (any graftwork
  backbone name or folder; `minilm-l6`, a sentence-embedding model, by default), batched.

Against the task, for `tfidf` and `embedding`, `score` is `centroid` (default: cosine to the
mean of the task's normalised vectors, which ranks by closeness to the task as a whole, the
domain-similarity ranking of data-selection work) or `max` (the cosine to the nearest task
sentence: it favours near-copies of single task sentences, and costs pool × task products).

Output: a `.tsv` file is a table `score<TAB>line<TAB>sentence` (`graft pretrain` reads its
`sentence` column); any other file holds the sentences one a line, as `graft pretrain`, DANN's
`objective.target` and distillation's unlabelled text read them, with the scores beside it in
`FILE.scores.tsv` (`score<TAB>line`, line: the pool's line number). Both are written
atomically; the counts (lines read, duplicates, written) are returned as a `Selection`. A
`top` larger than the pool's distinct lines is an error (nothing is written).

Leaves out: scoring with a cross-entropy difference of two language models (Moore-Lewis),
and sentence splitting of paragraphs (a pool line is the unit).
"""

from __future__ import annotations

import heapq
import logging
import math
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from graftwork.backbones import load as backbones
from graftwork.backbones.quiet import quiet
from graftwork.bundle import atomic
from graftwork.config.recipe import BackboneConfig
from graftwork.data import dsir
from graftwork.errors import DataError, GraftError
from graftwork.runs.corpus import read_documents

log = logging.getLogger("graftwork")

BYS = ("dsir", "tfidf", "embedding")
SCORES = ("centroid", "max")
HASH_FEATURES = 2**20  # hashing space: collisions rare enough for sentence-level similarity


@dataclass(frozen=True)
class Selection:
    """What a selection did: how many lines were read, kept and written, in how long."""

    pool_lines: int
    duplicates_skipped: int
    written: int
    output: Path
    seconds: float
    best: float | None
    worst: float | None


def pool_chunks(path: Path, chunk: int) -> Iterator[list[tuple[int, str]]]:
    """(line number, text) of the pool's non-blank lines, `chunk` at a time (UTF-8, with or
    without a byte-order mark; a line that is not UTF-8 is a DataError naming it)."""
    path = Path(path)
    if not path.is_file():
        raise DataError(f"--pool {path} is not a file; give a text file with one sentence a line")
    batch: list[tuple[int, str]] = []
    with open(path, "rb") as fh:
        for number, raw in enumerate(fh, start=1):
            if number == 1:
                raw = raw.removeprefix(b"\xef\xbb\xbf")
            try:
                text = raw.decode("utf-8").strip()
            except UnicodeDecodeError as exc:
                raise DataError(
                    f"--pool {path}, line {number}: byte 0x{raw[exc.start]:02x} at column "
                    f"{exc.start + 1} is not UTF-8; re-save the pool as UTF-8 text"
                ) from None
            if text:
                batch.append((number, text))
            if len(batch) >= chunk:
                yield batch
                batch = []
    if batch:
        yield batch


# ---------------------------------------------------------------- scorers


class DsirScorer:
    """Log importance weights under hashed-n-gram models of the task and of the pool (the
    pool's counted in a first streamed pass); `keys` adds the seeded Gumbel noise."""

    def __init__(self, pool: Path, task_texts: list[str], chunk: int, buckets: int):
        self.featurize = dsir.hasher(buckets)
        task, _ = dsir.bucket_counts(self.featurize, [task_texts], buckets)
        texts = ([text for _, text in rows] for rows in pool_chunks(pool, chunk))
        counts, self.docs = dsir.bucket_counts(self.featurize, texts, buckets)
        if self.docs == 0:
            raise DataError(f"--pool {pool}: no text found (empty?); give one sentence a line")
        self.ratio = dsir.log_ratio(task, counts)

    def weights(self, texts: list[str]) -> np.ndarray:
        return dsir.weights(self.featurize, self.ratio, texts)


class TfidfScorer:
    """Cosine of TF-IDF vectors (the pool's IDF, counted in a first streamed pass)."""

    def __init__(self, pool: Path, task_texts: list[str], chunk: int):
        from sklearn.feature_extraction.text import HashingVectorizer, TfidfTransformer

        self.hasher = HashingVectorizer(
            n_features=HASH_FEATURES,
            ngram_range=(1, 2),
            stop_words="english",
            alternate_sign=False,
            norm=None,
        )
        df = np.zeros(HASH_FEATURES, dtype=np.int64)
        docs = 0
        for rows in pool_chunks(pool, chunk):
            counts = self.hasher.transform([text for _, text in rows])
            df += np.bincount(counts.indices, minlength=HASH_FEATURES)  # one per row and term
            docs += len(rows)
        if docs == 0:
            raise DataError(f"--pool {pool}: no text found (empty?); give one sentence a line")
        self.docs = docs
        self.tfidf = TfidfTransformer(sublinear_tf=True)
        self.tfidf.idf_ = np.log((1 + docs) / (1 + df)) + 1.0  # sklearn's smoothed IDF
        self.task = self.vectors(task_texts)

    def vectors(self, texts: list[str]):
        return self.tfidf.transform(self.hasher.transform(texts))  # rows L2-normalised

    def similarities(self, texts: list[str]):
        """(texts, task) cosine matrix, dense."""
        return (self.vectors(texts) @ self.task.T).toarray()

    def centroid(self, texts: list[str]) -> np.ndarray:
        mean = np.asarray(self.task.mean(axis=0)).ravel()
        norm = np.linalg.norm(mean) or 1.0
        return np.asarray(self.vectors(texts) @ (mean / norm)).ravel()


class EmbeddingScorer:
    """Cosine of mean-pooled backbone embeddings (eval mode, batched, no autograd)."""

    def __init__(self, backbone: str, task_texts: list[str], batch_size: int, max_length: int):
        from transformers import AutoModel

        config = BackboneConfig(name=backbone)
        folder = backbones.resolve(config)
        self.tokenizer = backbones.load_tokenizer(folder, config)
        with quiet():
            self.model = AutoModel.from_pretrained(str(folder), use_safetensors=True).eval()
        self.batch_size, self.max_length = batch_size, max_length
        self.task = self.vectors(task_texts)

    def vectors(self, texts: list[str]) -> np.ndarray:
        import torch

        from graftwork.data.batching import inference_batches  # torch

        enc = self.tokenizer(texts, truncation=True, max_length=self.max_length)
        lengths = [len(ids) for ids in enc["input_ids"]]
        out = np.zeros((len(texts), self.model.config.hidden_size), dtype=np.float32)
        for rows in inference_batches(lengths, self.batch_size):
            batch = self.tokenizer.pad(
                {k: [enc[k][i] for i in rows] for k in enc.keys()},  # noqa: SIM118
                return_tensors="pt",
            )
            with torch.inference_mode():
                hidden = self.model(**batch).last_hidden_state  # (batch, seq, hidden)
            mask = batch["attention_mask"].unsqueeze(-1).to(hidden.dtype)
            mean = (hidden * mask).sum(1) / mask.sum(1).clamp(min=1)
            out[rows] = torch.nn.functional.normalize(mean, dim=-1).float().numpy()
        return out

    def similarities(self, texts: list[str]) -> np.ndarray:
        return self.vectors(texts) @ self.task.T

    def centroid(self, texts: list[str]) -> np.ndarray:
        mean = self.task.mean(axis=0)
        return self.vectors(texts) @ (mean / (np.linalg.norm(mean) or 1.0))


# ---------------------------------------------------------------- selection


def select(
    pool: Path,
    like: Path,
    top: int,
    output: Path,
    by: str = "dsir",
    score: str = "centroid",
    text: str = "sentence",
    chunk: int = 10_000,
    backbone: str = "minilm-l6",
    batch_size: int = 64,
    max_length: int = 128,
    seed: int = 0,
    sample: bool = True,
    buckets: int = dsir.BUCKETS,
) -> Selection:
    """Write the `top` pool lines most like `like`'s texts to `output` (see the module docstring
    for the formats); `like` is a .txt file or a TSV/CSV/JSONL file (`text` column). `score`
    is for tfidf and embedding; `seed`, `sample` and `buckets` for dsir."""
    if by not in BYS:
        raise GraftError(f"--by {by!r}: choose one of {', '.join(BYS)}")
    if score not in SCORES:
        raise GraftError(f"--score {score!r}: choose one of {', '.join(SCORES)}")
    if by == "dsir" and score != "centroid":
        raise GraftError(f"--score {score} is for --by tfidf or embedding; dsir has one weight")
    if top < 1 or chunk < 1 or buckets < 1:
        raise GraftError(f"--top ({top}), --chunk ({chunk}), --buckets ({buckets}) must be >= 1")
    check_output(Path(output), {"pool": Path(pool), "like": Path(like)})
    started = time.perf_counter()
    task_texts = read_documents(Path(like), text, header=True)
    if by == "dsir":
        scorer = DsirScorer(pool, task_texts, chunk, buckets)
    elif by == "tfidf":
        scorer = TfidfScorer(pool, task_texts, chunk)
    else:
        scorer = EmbeddingScorer(backbone, task_texts, batch_size, max_length)
    if by != "embedding" and scorer.docs < top:  # the first pass counted the pool
        raise too_few(pool, top, scorer.docs, "")
    rng = np.random.default_rng(seed) if by == "dsir" and sample else None
    log.info("select: %d task text(s) from %s; scoring %s by %s", len(task_texts), like, pool, by)
    heap: list[tuple[float, int, str, float]] = []  # (key, -line, text, score): smallest worst
    kept: set[str] = set()
    lines = duplicates = 0
    for rows in pool_chunks(pool, chunk):
        texts = [t for _, t in rows]
        if by == "dsir":
            values = scorer.weights(texts)
        elif score == "centroid":
            values = scorer.centroid(texts)
        else:
            values = scorer.similarities(texts).max(axis=1)
        keys = dsir.gumbel_keys(values, rng)
        lines += len(rows)
        for (number, sentence), key, value in zip(rows, keys, values, strict=True):
            item = (float(key), -number, sentence, float(value))
            if sentence in kept:
                duplicates += 1
                continue
            if len(heap) < top:
                heapq.heappush(heap, item)
                kept.add(sentence)
            elif item > heap[0]:
                kept.discard(heapq.heapreplace(heap, item)[2])
                kept.add(sentence)
    if not heap:
        raise DataError(f"--pool {pool}: no text found (empty?); give one sentence a line")
    if len(heap) < top:
        raise too_few(pool, top, len(heap), " distinct")
    best = sorted(((value, n, t) for _, n, t, value in heap), reverse=True)  # by score
    write_selection(Path(output), best)
    return Selection(
        pool_lines=lines,
        duplicates_skipped=duplicates,
        written=len(best),
        output=Path(output),
        seconds=time.perf_counter() - started,
        best=best[0][0],
        worst=best[-1][0],
    )


def too_few(pool: Path, top: int, lines: int, kind: str) -> DataError:
    return DataError(
        f"--top {top}: the pool {pool} has only {lines:,}{kind} line(s); ask for at most "
        f"{lines:,} or give a larger pool"
    )


def _clean(value: float) -> str:
    return "nan" if math.isnan(value) else f"{value:.6f}"


def check_output(output: Path, inputs: dict[str, Path]) -> None:
    """Refuse, before any scoring, an `output` that cannot be written as a file: a folder, a
    path under a file, or one of the `inputs` (or its scores file one of them)."""
    if output.is_dir():
        raise GraftError(f"--output {output} is a folder; give a file name (e.g. {output}/top.txt)")
    parent = output.absolute().parent
    while not parent.exists():
        parent = parent.parent
    if not parent.is_dir():
        raise GraftError(f"--output {output}: {parent} is not a folder; give another path")
    written = [output] if output.suffix.lower() == ".tsv" else [output, scores_path(output)]
    for flag, given in inputs.items():
        for path in written:
            if path.exists() and given.exists() and path.resolve() == given.resolve():
                raise GraftError(
                    f"--output {output}: {path} is the --{flag} file, which the selection "
                    "would overwrite; give another output file"
                )


def write_selection(output: Path, best: list[tuple[float, int, str]]) -> None:
    """`output` (and its scores file) atomically, best first."""
    output.parent.mkdir(parents=True, exist_ok=True)
    if output.suffix.lower() == ".tsv":
        rows = [f"{_clean(s)}\t{-n}\t{t.replace(chr(9), ' ')}" for s, n, t in best]
        atomic.write_text(output, "score\tline\tsentence\n" + "\n".join(rows) + "\n")
        return
    atomic.write_text(output, "\n".join(t for _, _, t in best) + "\n")
    scores = [f"{_clean(s)}\t{-n}" for s, n, _ in best]
    atomic.write_text(scores_path(output), "score\tline\n" + "\n".join(scores) + "\n")


def scores_path(output: Path) -> Path:
    return output.with_name(output.name + ".scores.tsv")
