"""`graft tune` on the quickstart recipe against the quickstart's own settings, on one subset.

Both sides train `recipes/quickstart.yaml` (MiniLM-L6, full fine-tuning, SST-2) on the same
`--examples` training sentences (`data.max_train_examples`, drawn with the recipe's seed) and
evaluate on the whole SST-2 dev set (872 sentences) every `--eval-every` optimizer steps,
shipping the best evaluation's weights (`train.keep: best`, the default):

- baseline: the quickstart's values (lr 1e-4, warm-up 0.06, batch 32, 1 epoch);
- study: `--trials` Optuna trials (TPE, median pruning) over lr (log 2e-5..3e-4), warm-up
  (0..0.2), batch size (16 or 32) and epochs (1..3).

It prints (and writes to OUT/tune-benchmark.json) the baseline's dev accuracy and seconds, the
best trial's dev accuracy and values, how many trials were pruned, the time spent in trials
and the time pruning saved (estimated per pruned trial: its time × (planned examples ÷
examples seen − 1)), with the CPU's name. Dev accuracy both selects the best evaluation and
the best trial and is reported, so both figures lean optimistic (SST-2 has no labelled test).

    python benchmarks/tune_quickstart.py --trials 20 --examples 600 --out /tmp/tune-bench
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import yaml

from graftwork.machine import cpu_name
from graftwork.runs import finetune
from graftwork.runs.tune import tune

SPACE = {
    "train.lr": {"low": 2e-5, "high": 3e-4, "log": True},
    "train.warmup": {"low": 0.0, "high": 0.2},
    "train.batch_size": {"choices": [16, 32]},
    "train.epochs": {"low": 1, "high": 3},
}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--recipe", default="recipes/quickstart.yaml")
    parser.add_argument("--trials", type=int, default=20)
    parser.add_argument("--examples", type=int, default=600)
    parser.add_argument("--eval-every", type=int, default=16)
    parser.add_argument("--out", default="/tmp/tune-bench")
    parser.add_argument(
        "--storage", default=None, help="Optuna storage (default: OUT/tune.db; resumable)."
    )
    args = parser.parse_args()
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    shared = [
        f"data.max_train_examples={args.examples}",
        f"train.eval_every={args.eval_every}",
        f"train.log_every={args.eval_every}",
        f"output_dir={out}",
    ]
    done = out / "baseline" / "metrics.json"
    started = time.perf_counter()
    if done.is_file():  # a resumed benchmark: the baseline ran already
        metrics = json.loads(done.read_text(encoding="utf-8"))
        baseline_seconds = json.loads((out / "baseline-seconds.json").read_text())["seconds"]
    else:
        metrics = finetune.run(args.recipe, [*shared, "name=baseline"], overwrite=True).metrics
        baseline_seconds = time.perf_counter() - started
        (out / "baseline-seconds.json").write_text(json.dumps({"seconds": baseline_seconds}))
    space = out / "space.yaml"
    space.write_text(yaml.safe_dump(SPACE), encoding="utf-8")
    started = time.perf_counter()
    storage = args.storage or f"sqlite:///{out.resolve()}/tune.db"
    summary = tune(args.recipe, space, args.trials, [*shared, "name=quickstart"], storage)
    study_seconds = time.perf_counter() - started
    result = {
        "cpu": cpu_name(),
        "examples": args.examples,
        "eval_every": args.eval_every,
        "baseline": {
            "accuracy": metrics["eval"]["accuracy"],
            "seconds": baseline_seconds,
            "best_step": metrics["train"].get("best_step"),
            "train_seconds": metrics["train"]["seconds"],
        },
        "study": {
            "trials": args.trials,
            "best": summary["best"],
            "counts": summary["counts"],
            "seconds_in_trials": summary["seconds"],
            "wall_seconds": study_seconds,
            "pruning_saved_seconds": summary["pruning_saved_seconds"],
            "pruned_trials": [
                {k: t[k] for k in ("number", "params", "seconds", "examples_seen")}
                for t in summary["trials"]
                if t["state"] == "pruned"
            ],
        },
    }
    (out / "tune-benchmark.json").write_text(json.dumps(result, indent=2), encoding="utf-8")
    print(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
