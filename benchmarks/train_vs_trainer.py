"""Training throughput and accuracy: graftwork's loop against the Hugging Face `Trainer`.

Both sides fine-tune the packaged MiniLM on the same seeded SST-2 subset with the same batch
size, learning rate, warm-up, weight decay, epochs and seed, in one process, one after the
other, and are evaluated on the whole SST-2 dev set. The Trainer runs with its defaults
otherwise (`DataCollatorWithPadding`, random batches). Throughput counts the training loop
only (examples / second of `train()`), not model loading.

    python benchmarks/train_vs_trainer.py --examples 8000 [--precision bf16] [--out FILE]
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import numpy as np
import torch

from graftwork.backbones import load as backbones
from graftwork.config.recipe import DataConfig, TaskConfig, data_root
from graftwork.data.sampling import subsample
from graftwork.machine import cpu_name
from graftwork.runs.finetune import quiet_libraries, train


def run_trainer(args, examples, dev, out_dir: Path) -> dict:
    from transformers import (
        AutoModelForSequenceClassification,
        AutoTokenizer,
        DataCollatorWithPadding,
        Trainer,
        TrainingArguments,
    )

    folder = backbones.resolve("minilm-l6")
    tokenizer = AutoTokenizer.from_pretrained(str(folder))
    torch.manual_seed(args.seed)
    model = AutoModelForSequenceClassification.from_pretrained(str(folder), num_labels=2)

    def encode(rows):
        enc = tokenizer([r["text"] for r in rows], truncation=True, max_length=args.max_length)
        return [
            {
                "input_ids": enc["input_ids"][i],
                "token_type_ids": enc["token_type_ids"][i],
                "attention_mask": enc["attention_mask"][i],
                "labels": int(r["label"]),
            }
            for i, r in enumerate(rows)
        ]

    train_set, dev_set = encode(examples), encode(dev)
    targs = TrainingArguments(
        output_dir=str(out_dir),
        per_device_train_batch_size=args.batch_size,
        per_device_eval_batch_size=64,
        learning_rate=args.lr,
        num_train_epochs=1,
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
    )
    trainer = Trainer(
        model=model,
        args=targs,
        train_dataset=train_set,
        data_collator=DataCollatorWithPadding(tokenizer),
    )
    started = time.perf_counter()
    trainer.train()
    seconds = time.perf_counter() - started
    logits = trainer.predict(dev_set).predictions
    accuracy = float((np.argmax(logits, -1) == np.array([r["labels"] for r in dev_set])).mean())
    return {
        "examples_per_second": len(train_set) / seconds,
        "seconds": seconds,
        "accuracy": accuracy,
    }


def run_graftwork(args, out_dir: Path) -> dict:
    recipe = {
        "name": "bench-graftwork",
        "backbone": "minilm-l6",
        "task": {"type": "classification", "text": "sentence", "label": "label"},
        "data": {
            "train": str(Path(data_root()) / "sst2" / "train.tsv"),
            "eval": str(Path(data_root()) / "sst2" / "dev.tsv"),
            "max_length": args.max_length,
            "max_train_examples": args.examples,
        },
        "method": {"type": "full"},
        "train": {
            "epochs": 1,
            "batch_size": args.batch_size,
            "lr": args.lr,
            "warmup": 0.06,
            "weight_decay": 0.01,
            "seed": args.seed,
            "precision": args.precision,
            "log_every": 10_000,
        },
        "output_dir": str(out_dir),
    }
    result = train(recipe, overwrite=True)
    t = result.metrics["train"]
    return {
        "examples_per_second": t["examples_per_second"],
        "seconds": t["examples"] / t["examples_per_second"],
        "accuracy": result.metrics["eval"]["accuracy"],
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--examples", type=int, default=8000)
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--lr", type=float, default=1e-4)
    parser.add_argument("--max-length", type=int, default=128)
    parser.add_argument("--seed", type=int, default=13)
    parser.add_argument("--precision", choices=["fp32", "bf16"], default="fp32")
    parser.add_argument("--out", type=Path, default=Path("runs/bench/train_vs_trainer.json"))
    args = parser.parse_args()
    quiet_libraries()
    torch.set_num_threads(torch.get_num_threads())
    work = args.out.parent
    work.mkdir(parents=True, exist_ok=True)

    from graftwork.data.readers import read_examples

    task = TaskConfig(text="sentence", label="label")
    train_rows = read_examples(
        Path(data_root()) / "sst2" / "train.tsv", task, DataConfig()
    ).examples
    examples = subsample(train_rows, args.examples, args.seed)  # the same subset graftwork uses
    dev = read_examples(Path(data_root()) / "sst2" / "dev.tsv", task, DataConfig()).examples

    ours = run_graftwork(args, work)
    theirs = run_trainer(args, examples, dev, work / "hf-trainer")
    ratio = ours["examples_per_second"] / theirs["examples_per_second"]
    report = {
        "cpu": cpu_name(),
        "threads": torch.get_num_threads(),
        "torch": torch.__version__,
        "settings": vars(args) | {"out": str(args.out)},
        "graftwork": ours,
        "hf_trainer": theirs,
        "throughput_ratio": ratio,
        "accuracy_difference_points": 100 * (ours["accuracy"] - theirs["accuracy"]),
    }
    args.out.write_text(json.dumps(report, indent=2))
    print(
        f"CPU: {report['cpu']} ({report['threads']} threads), {args.examples} SST-2 examples, "
        f"batch {args.batch_size}, lr {args.lr}, {args.precision}"
    )
    print(f"{'':12}{'examples/s':>12}{'seconds':>10}{'dev acc':>10}")
    for name, row in (("graftwork", ours), ("HF Trainer", theirs)):
        print(
            f"{name:12}{row['examples_per_second']:12.1f}{row['seconds']:10.1f}{row['accuracy']:10.4f}"
        )
    print(
        f"throughput ratio graftwork / Trainer: {ratio:.2f}x; "
        f"accuracy difference {report['accuracy_difference_points']:+.2f} points"
    )


if __name__ == "__main__":
    main()
