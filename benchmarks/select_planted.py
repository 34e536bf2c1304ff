"""Data selection that finds the domain: planted in-domain lines in an out-of-domain pool.

Every `graft select --by` (dsir sampled and deterministic, tfidf centroid and max, embedding
centroid with MiniLM) on the same pools, in one run; precision and recall of the planted lines
among the K selected (K = the number planted, where the two are equal, and K = twice that, for
recall).
- easy (issue 24): 200 held-out 10-K paragraphs planted among 20,000 Multi30k English
  captions; the task side 200 other 10-K paragraphs.
- hard: 200 Financial PhraseBank sentences (finance news) planted among 10,000 10-K paragraphs
  (finance, but filings, not news) and 10,000 captions; the task side 200 other PhraseBank
  sentences.
Each case is drawn `--splits` times (a seeded shuffle of each source; the Gumbel draw takes the
same seed); embedding runs on the first draw only. dsir's hashing space is also tried at 2,500,
5,000 and 40,000 buckets (deterministic top-k).
- scale: the easy case's 200 planted paragraphs among 1,000,000 caption lines (Multi30k's
  29,000 training captions repeated, each copy with one word dropped), and a 100,000-line pool
  beside it to show memory does not grow with the pool: time, peak resident memory (each
  selection alone in a fresh process) and precision at K, for dsir and tfidf (embedding at
  MiniLM's rate on 2 cores would take hours there).
Pools are written to a temporary folder, never into the project. Seeded (`--seed`).

    python benchmarks/select_planted.py                       # all three
    python benchmarks/select_planted.py --big 0 --no-embedding  # planted cases, fast scorers
"""

from __future__ import annotations

import argparse
import multiprocessing
import random
import resource
import tempfile
import time
from pathlib import Path

from graftwork.config.recipe import data_root
from graftwork.machine import cpu_name
from graftwork.runs.select import select

WAYS = {  # label -> select() keyword arguments
    "dsir": {"by": "dsir"},
    "dsir --deterministic": {"by": "dsir", "sample": False},
    "tfidf": {"by": "tfidf"},
    "tfidf --score max": {"by": "tfidf", "score": "max"},
    "embedding": {"by": "embedding"},
}
BUCKETS = {  # dsir's hashing space beside the default 10,000 (deterministic, fast)
    f"dsir --det. --buckets {b}": {"by": "dsir", "sample": False, "buckets": b}
    for b in (2_500, 5_000, 40_000)
}


def lines(path: Path) -> list[str]:
    return [line.strip() for line in path.read_text(encoding="utf-8").splitlines() if line.strip()]


def sources() -> dict[str, list[str]]:
    data = Path(data_root())
    phrasebank = [row.split("\t", 1)[1] for row in lines(data / "finance/phrasebank_train.tsv")[1:]]
    return {
        "captions": lines(data / "multi30k/train.en"),
        "10k": lines(data / "finance/sec10k_corpus.txt"),
        "phrasebank": phrasebank,
    }


def write_pool(folder: Path, name: str, planted: list[str], other: list[str], seed: int):
    """A shuffled pool file and the line numbers (1-based) of its planted lines."""
    rows = [(text, True) for text in planted] + [(text, False) for text in other]
    random.Random(seed).shuffle(rows)
    path = folder / f"{name}.txt"
    path.write_text("\n".join(text for text, _ in rows) + "\n", encoding="utf-8")
    return path, {i for i, (_, mark) in enumerate(rows, start=1) if mark}


def chosen_lines(output: Path) -> list[int]:
    return [int(row.split("\t")[1]) for row in output.read_text(encoding="utf-8").splitlines()[1:]]


def measure(pool: Path, like: Path, top: int, out: Path, kwargs: dict, queue) -> None:
    """One selection in this (fresh) process: its lines, seconds and peak RSS back by `queue`."""
    started = time.perf_counter()
    select(pool, like, top, out, **kwargs)
    seconds = time.perf_counter() - started
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # KiB -> MiB on Linux
    queue.put((chosen_lines(out), seconds, peak))


def run_alone(pool: Path, like: Path, top: int, out: Path, kwargs: dict):
    context = multiprocessing.get_context("spawn")
    queue = context.Queue()
    child = context.Process(target=measure, args=(pool, like, top, out, kwargs, queue))
    child.start()
    result = queue.get()
    child.join()
    return result


def planted_case(folder: Path, name: str, task, planted, other, ways, seed: int) -> None:
    pool, marks = write_pool(folder, name, planted, other, seed)
    like = folder / f"{name}-task.txt"
    like.write_text("\n".join(task) + "\n", encoding="utf-8")
    n = len(planted)
    print(f"\n{name}: {n} planted among {len(other):,}; task {len(task)} lines", flush=True)
    print(f"{'--by':28s} {'P@' + str(n):>7s} {'R@' + str(2 * n):>7s} {'seconds':>8s}")
    for label in ways:
        out = folder / f"{name}-{label.replace(' ', '_')}.tsv"
        started = time.perf_counter()
        select(pool, like, 2 * n, out, **{**WAYS, **BUCKETS}[label], seed=seed)
        seconds = time.perf_counter() - started
        ranked = chosen_lines(out)  # ordered by score: the first n are the top n by score
        if label == "dsir":
            select(pool, like, n, out, **WAYS[label], seed=seed)  # a draw of n, not a prefix
            first = chosen_lines(out)
        else:
            first = ranked[:n]
        precision = len(marks.intersection(first)) / n
        recall = len(marks.intersection(ranked)) / n
        print(f"{label:28s} {precision:7.3f} {recall:7.3f} {seconds:8.1f}", flush=True)


def drop_one_word(text: str, copy: int) -> str:
    words = text.split()
    if len(words) < 3 or copy == 0:
        return text
    del words[copy % len(words)]
    return " ".join(words)


def scale_case(folder: Path, task, planted, captions, sizes, seed: int) -> None:
    like = folder / "scale-task.txt"
    like.write_text("\n".join(task) + "\n", encoding="utf-8")
    print(f"\nscale: {len(planted)} planted 10-K paragraphs among perturbed captions; K = 200")
    print("pool lines --by    P@200  seconds  lines/s  peak MiB")
    for size in sizes:
        other = [
            drop_one_word(captions[i % len(captions)], i // len(captions))
            for i in range(size - len(planted))
        ]
        pool, marks = write_pool(folder, f"scale-{size}", planted, other, seed)
        del other
        for by in ("dsir", "tfidf"):
            out = folder / f"scale-{size}-{by}.tsv"
            chosen, seconds, peak = run_alone(pool, like, len(planted), out, {"by": by})
            precision = len(marks.intersection(chosen)) / len(planted)
            print(
                f"{size:10,d} {by:6s} {precision:6.3f} {seconds:8.1f} {size / seconds:8,.0f} "
                f"{peak:9.0f}",
                flush=True,
            )
        pool.unlink()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--big", type=int, default=1_000_000, help="scale pool lines (0: skip)")
    parser.add_argument("--no-embedding", action="store_true", help="skip --by embedding")
    parser.add_argument(
        "--splits", type=int, default=3, help="draws of the planted cases (embedding: the first)"
    )
    args = parser.parse_args()
    print(f"{cpu_name()}; seed {args.seed}")
    with tempfile.TemporaryDirectory(prefix="select-planted-") as tmp:
        folder = Path(tmp)
        for split in range(args.splits):
            text = sources()
            rng = random.Random(args.seed + split)
            for lines_ in text.values():
                rng.shuffle(lines_)
            caps, tenk, pb = text["captions"], text["10k"], text["phrasebank"]
            ways = [w for w in WAYS if not (w == "embedding" and (args.no_embedding or split))]
            ways += list(BUCKETS)
            seed = args.seed + split
            print(f"\n== split {split} (draw and Gumbel seed {seed})")
            planted_case(folder, "easy", tenk[:200], tenk[200:400], caps[:20_000], ways, seed)
            hard_other = tenk[400:10_400] + caps[:10_000]
            planted_case(folder, "hard", pb[:200], pb[200:400], hard_other, ways, seed)
        if args.big:
            sizes = sorted({min(100_000, args.big), args.big})
            scale_case(folder, tenk[:200], tenk[200:400], caps, sizes, seed)


if __name__ == "__main__":
    main()
