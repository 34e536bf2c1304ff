"""The `setfit` package beside `graft fewshot`, on the splits benchmarks/fewshot.py drew.

Reads the per-class training samples benchmarks/fewshot.py wrote (`TASK-N-SEED.tsv` in its
output folder) and the evaluation rows it used, and for each sample trains setfit's own
`SetFitModel` and `graft fewshot` (same backbone, pair rounds, batch size, epochs, seed and
maximum length; zero-shot off), in alternating order, timing each from loading the backbone to
predicting the evaluation rows; prints accuracy, seconds and the time ratio per cell and the
median ratio. `--no-graft`: the setfit side alone. setfit is not a graftwork dependency:
install it beside (`pip install --no-deps --target DIR setfit`, then PYTHONPATH=DIR).

    python benchmarks/setfit_side.py --folder runs/bench-fewshot-sst2 --sizes 8,64
"""

from __future__ import annotations

import argparse
import csv
import json
import statistics
import time
from pathlib import Path

from fewshot import TASKS
from graftwork.backbones import load as backbones
from graftwork.machine import cpu_name
from graftwork.runs.fewshot import fewshot

MAX_LENGTH = 256  # the packaged MiniLM's max_seq_length, which SetFitModel keeps


def rows(path: Path) -> tuple[list[str], list[str]]:
    with open(path, encoding="utf-8", newline="") as fh:
        table = list(csv.reader(fh, delimiter="\t", quoting=csv.QUOTE_NONE))[1:]
    return [r[1] for r in table], [r[0] for r in table]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--folder", type=Path, required=True)
    parser.add_argument("--task", default="sst2")
    parser.add_argument("--sizes", default="8,64")
    parser.add_argument("--seeds", type=int, default=3)
    parser.add_argument("--iterations", type=int, default=5)
    parser.add_argument("--backbone", default="minilm-l6")
    parser.add_argument("--no-graft", action="store_true", help="the setfit side alone")
    args = parser.parse_args()

    eval_path = args.folder / f"{args.task}-eval.tsv"
    eval_texts, eval_labels = rows(eval_path)
    names = TASKS[args.task][2]
    out = []
    for n in map(int, args.sizes.split(",")):
        for seed in range(1, args.seeds + 1):
            train_path = args.folder / f"{args.task}-{n}-{seed}.tsv"
            cell = {"task": args.task, "per_class": n, "seed": seed}
            sides = [] if args.no_graft else ["graft"]
            sides.insert(seed % 2, "setfit")  # alternate which side runs first
            for side in sides:
                started = time.perf_counter()
                if side == "setfit":
                    cell["setfit_package"] = setfit_accuracy(
                        args, train_path, eval_texts, eval_labels, seed
                    )
                else:
                    metrics = fewshot(
                        {
                            "name": f"{args.task}-graft-side-{n}-{seed}",
                            "backbone": args.backbone,
                            "task": {"type": "classification", "label_names": names},
                            "data": {
                                "train": str(train_path),
                                "eval": str(eval_path),
                                "max_length": MAX_LENGTH,
                            },
                            "output_dir": str(args.folder),
                            "fewshot": {"iterations": args.iterations, "zero_shot": False},
                            "train": {"seed": seed, "epochs": 1, "batch_size": 16},
                        }
                    )
                    cell["graft_fewshot"] = metrics["eval"]["accuracy"]
                cell[f"{side}_seconds"] = time.perf_counter() - started
            if not args.no_graft:
                cell["setfit_over_graft_time"] = cell["setfit_seconds"] / cell["graft_seconds"]
            out.append(cell)
            print(json.dumps(cell), flush=True)
    summary = {"machine": cpu_name(), "cells": out}
    if not args.no_graft:
        ratios = [c["setfit_over_graft_time"] for c in out]
        summary["median_setfit_over_graft_time"] = statistics.median(ratios)
        print(
            f"graft fewshot is {statistics.median(ratios):.2f}x the setfit package's speed "
            f"(median of {len(ratios)}; range {min(ratios):.2f}-{max(ratios):.2f}x)"
        )
    (args.folder / "setfit_package.json").write_text(
        json.dumps(summary, indent=2), encoding="utf-8"
    )


def setfit_accuracy(args, train_path: Path, eval_texts, eval_labels, seed: int) -> float:
    """setfit's SetFitModel, loaded, trained and scored on the evaluation rows."""
    from datasets import Dataset
    from setfit import SetFitModel, Trainer, TrainingArguments

    texts, labels = rows(train_path)
    model = SetFitModel.from_pretrained(str(backbones.resolve(args.backbone)))
    model.model_body.max_seq_length = MAX_LENGTH
    trainer = Trainer(
        model=model,
        args=TrainingArguments(
            batch_size=16,
            num_epochs=1,
            num_iterations=args.iterations,
            seed=seed,
            report_to="none",
            output_dir=str(args.folder / "setfit-checkpoints"),
            save_strategy="no",
            show_progress_bar=False,
        ),
        train_dataset=Dataset.from_dict({"text": texts, "label": labels}),
    )
    trainer.train()
    predicted = model.predict(eval_texts, as_numpy=True)
    return sum(str(p) == g for p, g in zip(predicted, eval_labels, strict=True)) / len(eval_labels)


if __name__ == "__main__":
    main()
