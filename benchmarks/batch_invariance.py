"""INT8 batch invariance: the old whole-batch run against the row-by-row run the backend uses.

On one exported bundle and one labelled file, in one process, each INT8 forward function
predicts every input alone and within batches: the length-sorted batches `predict` cuts
(`--batch-size`), and shuffled batches of `--mixed` inputs (the server batches whatever
arrives). It prints the labels that differ from the same input alone, the task metric, and
inputs/s over the sorted batches (best of `--repeats` timed passes after a warm-up), with the
CPU's name and the threads used.

- whole batch: the dynamic INT8 graph over each padded batch at once (activation scales are
  computed over the batch, padding and batch-mates included).
- row by row: `graftwork.inference.onnx.rowwise_forward`, what the `onnx-int8` backend runs.

    python benchmarks/batch_invariance.py runs/sst2-full/bundle --data ../shared/data/sst2/dev.tsv
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

import numpy as np

import graftwork
from graftwork.backbones.quiet import quiet_libraries
from graftwork.data.batching import collate
from graftwork.data.readers import read_examples
from graftwork.inference.forward import logits_for
from graftwork.inference.onnx import onnx_forward, rowwise_forward, session
from graftwork.machine import cpu_name
from graftwork.tasks.base import headline


def in_batches(forward, features, groups, pad) -> list[np.ndarray]:
    out: list[np.ndarray] = [None] * len(features)  # type: ignore[list-item]
    for group in groups:
        logits = forward(collate([features[i] for i in group], pad))
        for row, i in enumerate(group):
            n = len(features[i]["input_ids"])
            out[i] = logits[row] if logits.ndim == 2 else logits[row, :n]
    return out


def differing(a: list[np.ndarray], b: list[np.ndarray]) -> int:
    """Inputs whose label (any token's, for token tasks) differs between a and b."""
    return sum(int((x.argmax(-1) != y.argmax(-1)).any()) for x, y in zip(a, b, strict=True))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("bundle", type=Path)
    parser.add_argument("--data", type=Path, required=True)
    parser.add_argument("--limit", type=int, default=None, help="first N examples")
    parser.add_argument("--batch-size", type=int, default=64)
    parser.add_argument("--mixed", type=int, default=16, help="size of the shuffled batches")
    parser.add_argument("--threads", type=int, default=None, help="default: ONNX Runtime's")
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args()
    quiet_libraries()

    predictor = graftwork.load(args.bundle, backend="onnx-int8", threads=args.threads)
    result = read_examples(args.data, predictor.task_config, predictor.data_config)
    examples = result.examples[: args.limit] if args.limit else result.examples
    task, tok = predictor.task, predictor.tokenizer
    label2id = {v: k for k, v in predictor.id2label.items()}
    features, labels = task.encode(tok, examples, label2id, predictor.max_length, result.path)
    pad = tok.pad_token_id
    metric = headline(predictor.task_config.type)
    path = predictor.path / predictor.manifest["artifacts"]["onnx-int8"]["path"]
    order = np.random.default_rng(0).permutation(len(features)).tolist()
    mixed = [order[i : i + args.mixed] for i in range(0, len(order), args.mixed)]
    forwards = {
        "whole batch": onnx_forward(session(path, args.threads)),
        "row by row": rowwise_forward(path, args.threads),
    }
    print(
        f"{cpu_name()}, threads {args.threads or 'default'}: {len(features)} inputs of {args.data}"
    )
    print(
        f"{'INT8 forward':12s} {'≠ alone (sorted)':>17s} {'≠ alone (mixed)':>16s} "
        f"{metric:>9s} {'inputs/s':>9s}"
    )
    for name, forward in forwards.items():
        alone = in_batches(forward, features, [[i] for i in range(len(features))], pad)
        logits_for(forward, features[: args.batch_size], args.batch_size, pad)  # warm-up
        best = float("inf")
        for _ in range(args.repeats):
            started = time.perf_counter()
            batched = logits_for(forward, features, args.batch_size, pad)
            best = min(best, time.perf_counter() - started)
        shuffled = in_batches(forward, features, mixed, pad)
        score = task.evaluate(examples, features, batched, labels, predictor.id2label)[metric]
        print(
            f"{name:12s} {differing(batched, alone):17d} {differing(shuffled, alone):16d} "
            f"{score:9.4f} {len(features) / best:9.1f}",
            flush=True,
        )


if __name__ == "__main__":
    main()
