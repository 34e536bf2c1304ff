"""Training throughput and accuracy: graftwork's loop against the Hugging Face `Trainer`.

Three sides fine-tune the packaged MiniLM on the same seeded subset (SST-2 or CoNLL-2003) with
the same batch size, learning rate, warm-up, weight decay, epochs and seed, in one process:
graftwork; the `Trainer` with its defaults (random batches); and the `Trainer` with its own
length grouping (`train_sampling_strategy="group_by_length"`, transformers 5). All sides train
on graftwork's encoding of the data (the same token ids) and are scored by the task's own
metric on the whole dev set. The grouped Trainer's `predict` also length-groups the eval set
(with a seeded sampler), so its predictions are put back in the eval set's order by that
sampler's indices (checked against the label ids `predict` returns) before scoring.

The sides run in a rotating order over `--repeats` repeats (repeat r starts with side r), so
drift in the machine's load reaches every side alike; medians and min–max are reported, and
the ratio graftwork / grouped Trainer within each repeat. Throughput is examples per second of
the training call (graftwork's `fit`, the Trainer's `train()`), model loading and evaluation
left out. The model FLOP rate (6 × non-embedding parameters × non-padding tokens per second)
is set against a plain matrix-multiply rate measured in the same run.

    python benchmarks/train_vs_trainer.py --examples 4000 --repeats 3 [--task conll]
        [--precision bf16] [--out FILE]
"""

from __future__ import annotations

import argparse
import json
import statistics
import time
from pathlib import Path

import numpy as np
import torch

from graftwork import registry
from graftwork.backbones import load as backbones
from graftwork.backbones.quiet import quiet_libraries
from graftwork.config.recipe import data_root, load_recipe
from graftwork.data.encode import label_ids
from graftwork.machine import cpu_name
from graftwork.runs.finetune import train
from graftwork.runs.stages import read_splits

TASKS = {
    "sst2": {
        "task": {"type": "classification", "text": "sentence", "label": "label"},
        "train": "sst2/train.tsv",
        "eval": "sst2/dev.tsv",
        "max_length": 128,
    },
    "conll": {
        "task": {"type": "ner"},
        "train": "conll2003/train.txt",
        "eval": "conll2003/dev.txt",
        "max_length": 256,
    },
}
SIDES = ("graftwork", "trainer", "trainer_grouped")
INPUTS = ("input_ids", "attention_mask", "token_type_ids")


def graftwork_recipe(args, out_dir: Path) -> dict:
    spec = TASKS[args.task]
    return {
        "name": f"bench-{args.task}",
        "backbone": "minilm-l6",
        "task": spec["task"],
        "data": {
            "train": str(Path(data_root()) / spec["train"]),
            "eval": str(eval_file(args)),
            "max_length": spec["max_length"],
            "max_train_examples": args.examples,
        },
        "method": {"type": "full"},
        "train": {
            "epochs": args.epochs,
            "batch_size": args.batch_size,
            "lr": args.lr,
            "warmup": 0.06,
            "weight_decay": 0.01,
            "seed": args.seed,
            "precision": args.precision,
            "log_every": 10_000,
        }
        | dict(args.train_option or []),
        "output_dir": str(out_dir),
    }


def eval_file(args) -> Path:
    """The dev set, or (`--max-eval N`) a copy of its first N examples in the output folder."""
    spec = TASKS[args.task]
    whole = Path(data_root()) / spec["eval"]
    if not args.max_eval:
        return whole
    text = whole.read_text(encoding="utf-8")
    if args.task == "conll":  # sentences are blocks separated by blank lines
        blocks = [b for b in text.split("\n\n") if b.strip() and not b.startswith("-DOCSTART-")]
        part = "\n\n".join(blocks[: args.max_eval]) + "\n"
    else:  # a header line, then one example a line
        part = "".join(text.splitlines(keepends=True)[: args.max_eval + 1])
    path = args.out.parent / f"dev-{args.task}-{args.max_eval}{whole.suffix}"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(part, encoding="utf-8")
    return path


def prepare_data(args) -> dict:
    """graftwork's encoding of the training subset and the dev set, for the Trainer sides."""
    recipe = load_recipe(graftwork_recipe(args, Path("runs/bench")))
    folder = backbones.resolve(recipe.backbone)
    tokenizer = backbones.load_tokenizer(folder, recipe.backbone)
    splits = read_splits(recipe, tokenizer)
    task = registry.task(recipe.task.type)
    label2id = {label: i for i, label in enumerate(splits.labels)}
    dev = splits.evals["eval"]
    dev_features, dev_targets = task.encode(
        tokenizer, dev.examples, label2id, recipe.data.max_length, dev.shown
    )

    def items(features, targets):
        return [
            {k: f[k] for k in INPUTS if k in f} | {"labels": t}
            for f, t in zip(features, targets, strict=True)
        ]

    return {
        "folder": folder,
        "tokenizer": tokenizer,
        "task": task,
        "labels": splits.labels,
        "train": items(splits.features, splits.targets),
        "dev": items(dev_features, dev_targets),
        "dev_examples": dev.examples,
        "dev_features": dev_features,
        "dev_gold": label_ids(dev.examples, task.LABEL_KEY, label2id, dev.shown),
        "tokens": sum(len(f["input_ids"]) for f in splits.features),
    }


def trainer_side(args, data: dict, out_dir: Path, grouped: bool, around=None) -> dict:
    """Train and score with the Trainer; `around(train)` wraps the training call (profiling)."""
    from transformers import (
        DataCollatorForTokenClassification,
        DataCollatorWithPadding,
        Trainer,
        TrainingArguments,
    )

    task, tokenizer = data["task"], data["tokenizer"]
    torch.manual_seed(args.seed)
    model = task.model_class().from_pretrained(
        str(data["folder"]),
        num_labels=len(data["labels"]),
        id2label=dict(enumerate(data["labels"])),
        label2id={label: i for i, label in enumerate(data["labels"])},
    )
    token_task = task.HEADLINE == "f1"
    collator = (DataCollatorForTokenClassification if token_task else DataCollatorWithPadding)(
        tokenizer
    )
    targs = TrainingArguments(
        output_dir=str(out_dir),
        per_device_train_batch_size=args.batch_size,
        per_device_eval_batch_size=64,
        learning_rate=args.lr,
        num_train_epochs=args.epochs,
        warmup_steps=0.06,  # a float below 1 is a ratio of the steps (transformers 5)
        weight_decay=0.01,
        seed=args.seed,
        save_strategy="no",
        eval_strategy="no",
        logging_strategy="no",
        report_to="none",
        disable_tqdm=True,
        bf16=args.precision == "bf16",
        use_cpu=not torch.cuda.is_available(),
        train_sampling_strategy="group_by_length" if grouped else "random",
    )
    trainer = Trainer(
        model=model,
        args=targs,
        train_dataset=data["train"],
        data_collator=collator,
        processing_class=tokenizer,
    )
    started = time.perf_counter()
    (around or (lambda run: run()))(trainer.train)
    seconds = time.perf_counter() - started
    out = trainer.predict(data["dev"])
    # the eval sampler is rebuilt with the same seeded generator for every call, so its
    # indices are the order predict used (None: sequential)
    sampler = trainer._get_eval_sampler(data["dev"])
    order = np.array(list(sampler) if sampler is not None else range(len(data["dev"])))
    check_order(out.label_ids, data["dev"], order)
    logits = np.empty(len(order), dtype=object)
    for position, index in enumerate(order):
        row = out.predictions[position]
        logits[index] = row[: len(data["dev"][index]["input_ids"])] if token_task else row
    metrics = task.evaluate(
        data["dev_examples"],
        data["dev_features"],
        list(logits),
        data["dev_gold"],
        dict(enumerate(data["labels"])),
    )
    return {"seconds": seconds, "metric": metrics[task.HEADLINE]}


def check_order(returned, dev: list[dict], order) -> None:
    """The label ids predict returned are the dev set's, read in `order`."""
    for position, index in enumerate(order):
        gold = np.asarray(dev[index]["labels"])
        got = np.asarray(returned[position])[: gold.size] if gold.ndim else returned[position]
        if not np.array_equal(np.asarray(got).reshape(gold.shape), gold):
            raise RuntimeError(f"predictions not in the sampler's order at position {position}")


def graftwork_side(args, data: dict, out_dir: Path) -> dict:
    result = train(graftwork_recipe(args, out_dir), overwrite=True)
    return {
        "seconds": result.metrics["train"]["seconds"],
        "metric": result.metrics["eval"][data["task"].HEADLINE],
    }


def matmul_rate(precision: str, shape=(2048, 2048, 2048), seconds: float = 2.0) -> float:
    """GFLOP/s of a plain (m×k)·(k×n) matrix multiply on this machine now."""
    dtype = torch.bfloat16 if precision == "bf16" else torch.float32
    m, k, n = shape
    a, b = torch.randn(m, k, dtype=dtype), torch.randn(k, n, dtype=dtype)
    a @ b
    count, started = 0, time.perf_counter()
    while time.perf_counter() - started < seconds:
        a @ b
        count += 1
    return 2 * m * k * n * count / (time.perf_counter() - started) / 1e9


def non_embedding_parameters(data: dict) -> int:
    model = (
        data["task"]
        .model_class()
        .from_pretrained(str(data["folder"]), num_labels=len(data["labels"]))
    )
    return sum(p.numel() for n, p in model.named_parameters() if "embeddings" not in n)


def spread(values: list[float]) -> dict:
    return {"median": statistics.median(values), "min": min(values), "max": max(values)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--task", choices=sorted(TASKS), default="sst2")
    parser.add_argument("--examples", type=int, default=4000)
    parser.add_argument("--epochs", type=float, default=1.0)
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--lr", type=float, default=1e-4)
    parser.add_argument("--seed", type=int, default=13)
    parser.add_argument("--precision", choices=["fp32", "bf16"], default="fp32")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument(
        "--seeds",
        default="",
        help="comma-separated seeds, one per repeat (the subset, initialisation and order of "
        "repeat r use seed r on every side); overrides --seed and --repeats",
    )
    parser.add_argument("--max-eval", type=int, default=0, help="score on the first N dev examples")
    parser.add_argument("--sides", default=",".join(SIDES), help="comma-separated subset")
    parser.add_argument(
        "--train-option",
        action="append",
        type=lambda s: (s.split("=")[0], json.loads(s.split("=", 1)[1])),
        help="extra graftwork train.KEY=JSON option, e.g. compile=true (repeatable)",
    )
    parser.add_argument("--out", type=Path, default=Path("runs/bench/train_vs_trainer.json"))
    args = parser.parse_args()
    sides = [s for s in args.sides.split(",") if s]
    quiet_libraries()
    work = args.out.parent
    work.mkdir(parents=True, exist_ok=True)
    seeds = [int(s) for s in args.seeds.split(",") if s] or [args.seed] * args.repeats
    args.repeats = len(seeds)
    data_by_seed: dict[int, dict] = {}
    run = {
        "graftwork": lambda data: graftwork_side(args, data, work / "graftwork"),
        "trainer": lambda data: trainer_side(args, data, work / "hf-trainer", grouped=False),
        "trainer_grouped": lambda data: trainer_side(args, data, work / "hf-grouped", grouped=True),
    }
    rates = [matmul_rate(args.precision)]
    results: dict[str, list[dict]] = {s: [] for s in sides}
    for r, seed in enumerate(seeds):
        args.seed = seed
        if seed not in data_by_seed:
            data_by_seed[seed] = prepare_data(args)
        data = data_by_seed[seed]
        examples = len(data["train"]) * args.epochs
        order = sides[r % len(sides) :] + sides[: r % len(sides)]
        for side in order:
            row = run[side](data)
            row["examples_per_second"] = examples / row["seconds"]
            row["position"] = order.index(side)
            row["seed"] = seed
            row["train_tokens"] = data["tokens"] * args.epochs
            results[side].append(row)
            print(
                f"repeat {r + 1} seed {seed} {side:16}{row['examples_per_second']:8.1f} ex/s  "
                f"{row['metric']:.4f}",
                flush=True,
            )
    rates.append(matmul_rate(args.precision))
    params = non_embedding_parameters(data)
    tokens = statistics.median(data["tokens"] * args.epochs for data in data_by_seed.values())
    report: dict = {
        "cpu": cpu_name(),
        "threads": torch.get_num_threads(),
        "torch": torch.__version__,
        "settings": vars(args) | {"out": str(args.out)},
        "non_embedding_parameters": params,
        "train_tokens": tokens,
        "matmul_gflops": rates,
        "sides": results,
    }
    summary = {}
    for side, rows in results.items():
        ex = spread([row["examples_per_second"] for row in rows])
        gflops = [6 * params * row["train_tokens"] / row["seconds"] / 1e9 for row in rows]
        summary[side] = {
            "examples_per_second": ex,
            "metric": spread([row["metric"] for row in rows])
            | {"mean": statistics.mean(row["metric"] for row in rows)},
            "model_gflops": spread(gflops),
        }
    for other in ("trainer", "trainer_grouped"):
        if "graftwork" in results and other in results:
            ratios = [
                g["examples_per_second"] / o["examples_per_second"]
                for g, o in zip(results["graftwork"], results[other], strict=True)
            ]
            summary[f"graftwork_over_{other}"] = spread(ratios)
    report["summary"] = summary
    args.out.write_text(json.dumps(report, indent=2))
    print(
        f"\nCPU: {report['cpu']} ({report['threads']} threads), {args.task}, "
        f"{len(data['train'])} examples × {args.epochs} epoch(s), batch {args.batch_size}, "
        f"lr {args.lr}, {args.precision}, {args.repeats} repeats in rotating order, "
        f"seeds {seeds}"
    )
    headline = data["task"].HEADLINE
    print(
        f"{'side':18}{'ex/s median [min–max]':>26}{'dev ' + headline + ' median [min–max]':>36}"
        f"{'mean':>8}{'GFLOP/s':>10}"
    )
    for side in results:
        s = summary[side]
        e, m = s["examples_per_second"], s["metric"]
        print(
            f"{side:18}{e['median']:10.1f} [{e['min']:.1f}–{e['max']:.1f}]".ljust(44)
            + f"{m['median']:10.4f} [{m['min']:.4f}–{m['max']:.4f}]"
            + f"{m['mean']:8.4f}"
            + f"{s['model_gflops']['median']:8.1f}"
        )
    for key in ("graftwork_over_trainer", "graftwork_over_trainer_grouped"):
        if key in summary:
            s = summary[key]
            print(f"{key}: {s['median']:.2f}x [{s['min']:.2f}–{s['max']:.2f}]")
    print(
        f"model FLOP rate = 6 × {params / 1e6:.2f} M non-embedding parameters × non-padding "
        f"tokens/s; plain {args.precision} 2048³ matmul: "
        + " / ".join(f"{r:.0f}" for r in rates)
        + " GFLOP/s (start / end)"
    )


if __name__ == "__main__":
    main()
