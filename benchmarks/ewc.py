"""Continual learning: how much of task A (SST-2) survives task B (CoNLL-2003): EWC vs plain.

Trains task A with `recipes/quickstart.yaml` (or takes `--previous BUNDLE`), then task B with
`recipes/sst2-then-conll-ewc.yaml` twice from A's encoder, in one process, with the same data,
seed and budget: λ = 0 (plain sequential fine-tuning) and the recipe's λ (EWC). For each it
prints task A's SST-2 dev accuracy with A's own model (before) and with B's encoder under A's
head (after), the forgetting (before − after), and task B's entity F1 on CoNLL dev and test.
Overrides go to both task-B runs (`objective.lambda=...` sets the EWC side's λ).

    python benchmarks/ewc.py
    python benchmarks/ewc.py --previous runs/quickstart/bundle objective.lambda=1e5
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

from graftwork.machine import describe
from graftwork.runs.finetune import train

RECIPES = Path(__file__).resolve().parents[1] / "recipes"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("overrides", nargs="*", help="recipe overrides for both task-B runs")
    parser.add_argument("--previous", type=Path, default=None, help="task A's bundle")
    parser.add_argument("--out", type=Path, default=Path("runs/bench"))
    args = parser.parse_args()

    started = time.perf_counter()
    previous = args.previous
    if previous is None:
        overrides = [f"output_dir={args.out}", "name=ewc-task-a"]
        previous = train(RECIPES / "quickstart.yaml", overrides, overwrite=True).bundle
    a_seconds = time.perf_counter() - started

    base = [*args.overrides, f"output_dir={args.out}", f"objective.previous={previous}"]
    rows = {}
    for side, extra in {"plain": ["objective.lambda=0"], "ewc": []}.items():
        started = time.perf_counter()
        result = train(
            RECIPES / "sst2-then-conll-ewc.yaml",
            [*base, *extra, f"name=ewc-{side}"],
            overwrite=True,
        )
        task_a = result.metrics["task_a"]
        rows[side] = {
            "lambda": result.recipe.objective.strength,
            "a_before": task_a["before"]["eval"]["accuracy"],
            "a_after": task_a["after"]["eval"]["accuracy"],
            "forgetting": task_a["forgetting"]["eval"],
            "b_dev_f1": result.metrics["eval"]["f1"],
            "b_test_f1": result.metrics["test"]["f1"],
            "examples": result.metrics["train"]["examples"],
            "steps": result.metrics["train"]["steps"],
            "train_seconds": result.metrics["train"]["seconds"],
            "wall_seconds": time.perf_counter() - started,
        }

    machine = describe()
    print(f"CPU: {machine['cpu']}, {machine['cores']} cores, {machine['torch_threads']} threads")
    trained = f" (trained here in {a_seconds:.0f}s)" if args.previous is None else ""
    print(f"task A: {previous}{trained}")
    plain, ewc = rows["plain"], rows["ewc"]
    print(
        f"task B budget (both): {plain['examples']} CoNLL sentences, {plain['steps']} steps; "
        f"overrides {args.overrides or 'none'}"
    )
    print(
        f"{'run':7}{'λ':>10}{'SST-2 before':>14}{'after':>8}{'forgetting':>12}"
        f"{'CoNLL dev F1':>14}{'test F1':>9}{'train s':>9}"
    )
    for side, row in rows.items():
        print(
            f"{side:7}{row['lambda']:10.3g}{row['a_before']:14.4f}{row['a_after']:8.4f}"
            f"{row['forgetting']:12.4f}{row['b_dev_f1']:14.4f}{row['b_test_f1']:9.4f}"
            f"{row['train_seconds']:9.0f}"
        )
    delta = {
        "forgetting_points": 100 * (ewc["forgetting"] - plain["forgetting"]),
        "b_test_f1_points": 100 * (ewc["b_test_f1"] - plain["b_test_f1"]),
    }
    print(
        f"EWC − plain: forgetting on SST-2 dev {delta['forgetting_points']:+.2f} points "
        f"(accuracy points lost: plain {100 * plain['forgetting']:.2f}, "
        f"EWC {100 * ewc['forgetting']:.2f}); "
        f"CoNLL test F1 {delta['b_test_f1_points']:+.2f} points"
    )
    args.out.mkdir(parents=True, exist_ok=True)
    path = args.out / "ewc.json"
    record = {"machine": machine, "previous": str(previous), "rows": rows, "delta": delta}
    path.write_text(json.dumps(record | {"overrides": args.overrides}, indent=2))
    print(f"details: {path}")


if __name__ == "__main__":
    main()
