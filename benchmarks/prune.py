"""Structured pruning: quality, size and PyTorch inference speed before and after, in one run.

Prunes a bundle (default: 30 % of attention heads, 30 % of FFN neurons) with a recovery
fine-tune, then loads the original and the pruned bundle the same way (graftwork, PyTorch
backend, the pruned heads sliced out) and runs both over the same pre-encoded eval file with the
same length-sorted batches and the same number of threads: one warm-up pass, then `--repeats`
timed passes, the best counts. Quality is the task metric from `Predictor.evaluate` (accuracy,
or entity F1 for NER) on the loaded bundles.

    python benchmarks/prune.py runs/sst2-full/bundle
    python benchmarks/prune.py runs/sst2-full/bundle --heads 0.5 --ffn 0.5 --recovery-epochs 2
    python benchmarks/prune.py TINY_BUNDLE --max-examples 200     # a smoke run
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import torch

import graftwork
from graftwork.backbones.surgery import apply_pruning
from graftwork.data.readers import read_examples
from graftwork.inference.forward import logits_for, torch_forward
from graftwork.machine import cpu_name
from graftwork.methods import count_parameters
from graftwork.runs.lifecycle import setup_logging
from graftwork.runs.prune import prune_bundle


def load(bundle: Path, threads: int):
    """A PyTorch predictor with any pruned heads sliced out (apply_pruning is idempotent)."""
    predictor = graftwork.load(bundle, backend="torch", threads=threads)
    predictor.forward = torch_forward(apply_pruning(predictor.model, predictor.manifest))
    return predictor


def measure(predictor, features, eval_path: Path, batch_size: int, repeats: int) -> dict:
    pad = predictor.tokenizer.pad_token_id
    logits_for(predictor.forward, features, batch_size, pad)  # warm-up
    best = float("inf")
    for _ in range(repeats):
        started = time.perf_counter()
        logits_for(predictor.forward, features, batch_size, pad)
        best = min(best, time.perf_counter() - started)
    metrics = predictor.evaluate(eval_path, batch_size=batch_size)
    return {
        "metric": metrics.get("accuracy", metrics.get("f1")),
        "parameters": count_parameters(predictor.model)["total"],
        "seconds": best,
        "inputs_per_second": len(features) / best,
        "size_mb": (predictor.path / "model.safetensors").stat().st_size / 1e6,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("bundle", type=Path)
    parser.add_argument("--heads", type=float, default=0.3, help="share of heads to remove")
    parser.add_argument("--ffn", type=float, default=0.3, help="share of FFN neurons to remove")
    parser.add_argument("--out", type=Path, default=None, help="pruned bundle (default runs/bench)")
    parser.add_argument("--data", type=Path, default=None, help="eval file (default: recipe's)")
    parser.add_argument("--train-data", type=Path, default=None, help="default: recipe's")
    parser.add_argument("--recovery-epochs", type=float, default=1.0)
    parser.add_argument("--recovery-lr", type=float, default=None)
    parser.add_argument("--max-examples", type=int, default=None, help="training sample size")
    parser.add_argument("--seed", type=int, default=13)
    parser.add_argument("--batch-size", type=int, default=64)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--threads", type=int, default=None, help="default: torch's default")
    parser.add_argument("--json", type=Path, default=None)
    args = parser.parse_args()
    setup_logging(None)
    threads = args.threads or torch.get_num_threads()
    torch.set_num_threads(threads)
    name = args.bundle.resolve().parent.name
    out = args.out or Path("runs/bench") / f"prune-{name}" / "bundle"

    started = time.perf_counter()
    report = prune_bundle(
        args.bundle,
        out,
        heads=args.heads,
        ffn=args.ffn,
        data=args.train_data,
        recovery_epochs=args.recovery_epochs,
        recovery_lr=args.recovery_lr,
        max_examples=args.max_examples,
        seed=args.seed,
    )
    prune_seconds = time.perf_counter() - started

    original, pruned = load(args.bundle, threads), load(out, threads)
    recipe = graftwork.load_recipe(original.manifest["recipe"])
    eval_path = args.data or recipe.data_path("eval")
    if eval_path is None:
        raise SystemExit("the bundle's recipe names no eval file; pass --data FILE")
    examples = read_examples(eval_path, original.task_config, original.data_config).examples
    label2id = {label: i for i, label in original.id2label.items()}
    features, _ = original.task.encode(
        original.tokenizer, examples, label2id, original.max_length, eval_path
    )
    tokens = sum(len(f["input_ids"]) for f in features)
    rows = {
        "original": measure(original, features, eval_path, args.batch_size, args.repeats),
        "pruned": measure(pruned, features, eval_path, args.batch_size, args.repeats),
    }
    before, after = rows["original"], rows["pruned"]

    metric = "accuracy" if original.task_config.type == "classification" else "entity F1"
    print(f"CPU: {cpu_name()}, {threads} threads; {eval_path}: {len(features)} inputs")
    print(
        f"pruned {report['heads_pruned']}/{report['heads_total']} heads, FFN "
        f"{report['intermediate_size_before']} → {report['intermediate_size']} per layer; "
        f"importance + recovery ({report['recovery']['steps']} steps) {prune_seconds:.0f}s"
    )
    print(f"{'model':10}{metric:>12}{'parameters':>14}{'inputs/s':>11}{'tokens/s':>11}{'MB':>8}")
    for label, row in rows.items():
        print(
            f"{label:10}{row['metric']:12.4f}{row['parameters']:14,}{row['inputs_per_second']:11.1f}"
            f"{tokens / row['seconds']:11.0f}{row['size_mb']:8.1f}"
        )
    ratio = {
        "speedup": before["seconds"] / after["seconds"],
        "parameters": after["parameters"] / before["parameters"],
        "metric_change_points": 100 * (after["metric"] - before["metric"]),
    }
    print(
        f"pruned / original: {ratio['speedup']:.2f}x throughput, "
        f"{ratio['parameters']:.2f}x parameters, {metric} {ratio['metric_change_points']:+.2f} "
        "points"
    )
    result = {
        "cpu": cpu_name(),
        "threads": threads,
        "data": str(eval_path),
        "tokens": tokens,
        "prune_seconds": prune_seconds,
        "pruning": {k: v for k, v in report.items() if k not in ("metrics", "metrics_before")},
        "rows": rows,
        "ratio": ratio,
    }
    path = args.json or Path("runs/bench") / f"prune-{name}.json"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(result, indent=2, default=float))


if __name__ == "__main__":
    main()
