"""Domain-adversarial training on a real shift: CoNLL-2003 (news) → WikiANN English (Wikipedia).

Trains `recipes/conll-to-wikiann-dann.yaml` twice in one process with the same data, seed and
budget (same source examples, epochs, batch size, learning rate): once as written (DANN:
gradient reversal and a domain classifier fed unlabelled WikiANN text) and once with
`objective=null` (plain fine-tuning on CoNLL). Both read MISC as O, so the label sets are
WikiANN's PER/ORG/LOC. Prints entity F1 (seqeval) on the source dev set (CoNLL dev) and on
the target test set (WikiANN test, 10,000 sentences), per entity type on the target, the
differences, training time, and the domain classifier's accuracy over the last 100 batches
(0.5 = the encoder hides the domain). Overrides go to both runs.

    python benchmarks/dann.py
    python benchmarks/dann.py data.max_train_examples=2000 objective.weight=0.3
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

from graftwork.machine import describe
from graftwork.runs.finetune import train

RECIPE = Path(__file__).resolve().parents[1] / "recipes" / "conll-to-wikiann-dann.yaml"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("overrides", nargs="*", help="recipe overrides for both runs")
    parser.add_argument("--out", type=Path, default=Path("runs/bench"))
    args = parser.parse_args()

    sides = {"plain": ["objective=null"], "dann": []}
    rows = {}
    for side, extra in sides.items():
        overrides = [*args.overrides, *extra, f"output_dir={args.out}", f"name=dann-{side}"]
        started = time.perf_counter()
        result = train(RECIPE, overrides, overwrite=True)
        manifest = json.loads((result.bundle / "graftwork.json").read_text())
        rows[side] = {
            "source_f1": result.metrics["eval"]["f1"],
            "target_f1": result.metrics["test"]["f1"],
            "target_per_type": {k: v["f1"] for k, v in result.metrics["test"]["per_type"].items()},
            "train_seconds": result.metrics["train"]["seconds"],
            "examples": result.metrics["train"]["examples"],
            "steps": result.metrics["train"]["steps"],
            "wall_seconds": time.perf_counter() - started,
            "objective": manifest.get("objective"),
        }

    plain, dann = rows["plain"], rows["dann"]
    machine = describe()
    print(f"CPU: {machine['cpu']}, {machine['cores']} cores, {machine['torch_threads']} threads")
    print(f"recipe {RECIPE.name}, overrides {args.overrides or 'none'}")
    print(
        f"budget (both): {plain['examples']} CoNLL sentences, {plain['steps']} steps; "
        f"DANN target text: {dann['objective']['target_examples']} WikiANN sentences"
    )
    types = sorted(plain["target_per_type"])
    header = "".join(f"{t:>8}" for t in types)
    print(f"{'run':8}{'CoNLL dev F1':>14}{'WikiANN test F1':>17}{header}{'train s':>9}")
    for side, row in rows.items():
        per_type = "".join(f"{row['target_per_type'].get(t, 0.0):8.4f}" for t in types)
        print(
            f"{side:8}{row['source_f1']:14.4f}{row['target_f1']:17.4f}{per_type}"
            f"{row['train_seconds']:9.0f}"
        )
    delta = {
        "source_points": 100 * (dann["source_f1"] - plain["source_f1"]),
        "target_points": 100 * (dann["target_f1"] - plain["target_f1"]),
    }
    print(
        f"DANN − plain: WikiANN test F1 {delta['target_points']:+.2f} points, "
        f"CoNLL dev F1 {delta['source_points']:+.2f} points"
    )
    info = dann["objective"]
    print(
        f"DANN domain classifier, last 100 batches: accuracy "
        f"{info.get('domain_accuracy_recent', float('nan')):.3f}, loss "
        f"{info.get('domain_loss_recent', float('nan')):.3f} (ln 2 = 0.693); "
        f"final λ {info.get('lambda_last', float('nan')):.3f}"
    )
    args.out.mkdir(parents=True, exist_ok=True)
    path = args.out / "dann.json"
    path.write_text(
        json.dumps(
            {"machine": machine, "overrides": args.overrides, "rows": rows, "delta": delta},
            indent=2,
        )
    )
    print(f"details: {path}")


if __name__ == "__main__":
    main()
