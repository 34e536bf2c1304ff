"""The `setfit` package beside `graft fewshot`, on the splits benchmarks/fewshot.py drew.

Reads the per-class training samples benchmarks/fewshot.py wrote (`TASK-N-SEED.tsv` in its
output folder) and the evaluation rows it used, trains setfit's own `SetFitModel` (same
backbone, pair rounds, batch size, epochs and seed as graft fewshot) and prints accuracy.
setfit is not a graftwork dependency: install it beside (`pip install setfit`, which adds
only itself to our environment) or point PYTHONPATH at a folder that holds it.

    python benchmarks/setfit_side.py --folder runs/bench-fewshot-sst2 --sizes 8,64
"""

from __future__ import annotations

import argparse
import csv
import json
import time
from pathlib import Path

from graftwork.backbones import load as backbones
from graftwork.machine import cpu_name


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
    args = parser.parse_args()
    from datasets import Dataset
    from setfit import SetFitModel, Trainer, TrainingArguments

    folder = str(backbones.resolve(args.backbone))
    eval_texts, eval_labels = rows(args.folder / f"{args.task}-eval.tsv")
    out = []
    for n in map(int, args.sizes.split(",")):
        for seed in range(1, args.seeds + 1):
            texts, labels = rows(args.folder / f"{args.task}-{n}-{seed}.tsv")
            started = time.perf_counter()
            model = SetFitModel.from_pretrained(folder)
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
            accuracy = sum(str(p) == g for p, g in zip(predicted, eval_labels, strict=True))
            cell = {
                "task": args.task,
                "per_class": n,
                "seed": seed,
                "setfit_package": accuracy / len(eval_labels),
                "seconds": time.perf_counter() - started,
            }
            out.append(cell)
            print(json.dumps(cell), flush=True)
    (args.folder / "setfit_package.json").write_text(
        json.dumps({"machine": cpu_name(), "cells": out}, indent=2), encoding="utf-8"
    )


if __name__ == "__main__":
    main()
