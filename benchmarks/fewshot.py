"""Few-shot accuracy: SetFit (graft fewshot), full, LoRA, prompt learning on the same examples.

For each task, examples per class and seed: the seed draws n examples of each label from the
training file (`runs.fewshot.per_class`, written to a TSV that every method trains on); then
`graft fewshot` (contrastive pairs + logistic head), full fine-tuning and LoRA (graft train,
`--epochs` passes over the n·labels examples), all from MiniLM, scored on the same evaluation
rows. Zero-shot (label descriptions, no examples) is scored once per task. Prints a table of
mean ± standard deviation over the seeds and writes JSON.

    python benchmarks/fewshot.py                       # SST-2 and MR, 8/16/32/64 per class, 3 seeds
    python benchmarks/fewshot.py --tasks sst2 --sizes 8 --seeds 1      # a smoke run
    python benchmarks/fewshot.py --tasks mr --sizes 64 --methods full,lora,prompt_tuning,prefix
"""

from __future__ import annotations

import argparse
import json
import statistics
import time
from pathlib import Path

from graftwork import registry
from graftwork.config.recipe import data_root
from graftwork.data.readers import read_examples
from graftwork.machine import cpu_name
from graftwork.runs.fewshot import fewshot, load_fewshot_recipe, per_class
from graftwork.runs.finetune import train

ROOT = Path(__file__).resolve().parents[1]
# task → (train file, eval file, label names, zero-shot template)
TASKS = {
    "sst2": ("sst2/train.tsv", "sst2/dev.tsv", {"0": "negative", "1": "positive"}, "review"),
    "mr": ("fewshot/mr_train.tsv", "fewshot/mr_test.tsv", {}, "review"),
    "subj": ("fewshot/subj_train.tsv", "fewshot/subj_test.tsv", {}, "sentence"),
}
LRS = {"full": 5e-5, "lora": 1e-3}
# peft's prompt learning (issue 24) at each method's default learning rate
LRS |= {m: registry.method(m).DEFAULT_LR for m in ("prompt_tuning", "prefix", "ptuning")}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--tasks", default="sst2,mr")
    parser.add_argument("--sizes", default="8,16,32,64", help="examples per class")
    parser.add_argument("--seeds", type=int, default=3)
    parser.add_argument("--iterations", type=int, default=5, help="SetFit pair rounds (R)")
    parser.add_argument("--epochs", type=float, default=10, help="full / LoRA passes")
    parser.add_argument("--eval-rows", type=int, default=1000, help="first N evaluation rows")
    parser.add_argument("--methods", default="setfit,full,lora")
    parser.add_argument("--out", type=Path, default=ROOT / "runs" / "bench-fewshot")
    parser.add_argument("--backbone", default="minilm-l6", help="a smoke run: a tiny folder")
    args = parser.parse_args()
    data, out = Path(data_root()), args.out
    out.mkdir(parents=True, exist_ok=True)
    methods = args.methods.split(",")
    results: dict = {"machine": cpu_name(), "args": vars(args) | {"out": str(out)}, "cells": []}
    started = time.perf_counter()
    for task in args.tasks.split(","):
        train_file, eval_file, names, noun = TASKS[task]
        eval_path = out / f"{task}-eval.tsv"
        lines = (data / eval_file).read_text(encoding="utf-8").splitlines()
        eval_path.write_text("\n".join(lines[: args.eval_rows + 1]) + "\n", encoding="utf-8")
        base = {
            "backbone": args.backbone,
            "task": {"type": "classification", "label_names": names},
            "data": {"eval": str(eval_path), "max_length": 64},
            "output_dir": str(out),
        }
        schema = load_fewshot_recipe({**base, "data": {"train": str(data / train_file)}})
        rows = read_examples(data / train_file, schema.task, schema.data).examples
        zero = None
        for n in map(int, args.sizes.split(",")):
            for seed in range(1, args.seeds + 1):
                sample = per_class(rows, n, seed)
                path = out / f"{task}-{n}-{seed}.tsv"
                raw = {v: k for k, v in names.items()}  # the file's spelling of each label
                body = "".join(f"{raw.get(e['label'], e['label'])}\t{e['text']}\n" for e in sample)
                path.write_text("label\tsentence\n" + body, encoding="utf-8")
                cell = {"task": task, "per_class": n, "seed": seed}
                data_section = {**base["data"], "train": str(path)}
                if "setfit" in methods:
                    metrics = fewshot(
                        {
                            **base,
                            "name": f"{task}-setfit-{n}-{seed}",
                            "data": data_section,
                            "fewshot": {
                                "iterations": args.iterations,
                                "zero_shot": zero is None,
                                "template": f"This {noun} is {{label}}.",
                            },
                            "train": {"seed": seed, "epochs": 1, "log_every": 20},
                        }
                    )
                    zero = zero or metrics["zero_shot"]["eval"]["accuracy"]
                    cell["setfit"] = metrics["eval"]["accuracy"]
                    cell["setfit_seconds"] = metrics["train"]["seconds"]
                for method in (m for m in methods if m in LRS):
                    recipe = {
                        **base,
                        "name": f"{task}-{method}-{n}-{seed}",
                        "data": data_section,
                        "method": {"type": method},
                        "train": {
                            "seed": seed,
                            "epochs": args.epochs,
                            "batch_size": 16,
                            "lr": LRS[method],
                            "log_every": 50,
                        },
                    }
                    done = train(recipe, overwrite=True)
                    cell[method] = done.metrics["eval"]["accuracy"]
                    cell[f"{method}_seconds"] = done.metrics["train"]["seconds"]
                results["cells"].append(cell)
                print(json.dumps(cell), flush=True)
                (out / "results.json").write_text(json.dumps(results, indent=2), encoding="utf-8")
        results[f"{task}_zero_shot"] = zero
        results["seconds"] = time.perf_counter() - started
        (out / "results.json").write_text(json.dumps(results, indent=2), encoding="utf-8")
    print(f"\n{cpu_name()}; {results['seconds']:.0f} s")
    for task in args.tasks.split(","):
        print(f"{task}: zero-shot {results.get(f'{task}_zero_shot')}")
        for n in map(int, args.sizes.split(",")):
            cells = [c for c in results["cells"] if c["task"] == task and c["per_class"] == n]
            parts = []
            for method in methods:
                values = [c[method] for c in cells if method in c]
                spread = f" ± {statistics.stdev(values):.3f}" if len(values) > 1 else ""
                parts.append(f"{method} {statistics.mean(values):.3f}{spread}")
            print(f"  {n:3d}/class: " + " | ".join(parts))


if __name__ == "__main__":
    main()
