"""Back-translation on low-resource SST-2: accuracy with and without the round trips, 3 seeds.

1. Draws `--examples` labelled SST-2 training sentences (seed `--sample-seed`) into a TSV.
2. `graft augment`'s function (`runs.augment.augment_recipe`) sends each through two local
   translators, to the pivot and back (`--to-pivot`, `--from-pivot`: causal_lm bundles or
   decoder backbones, greedy), and writes the sample plus the kept round trips (labels of
   their sources) with the counts of what was dropped and why.
3. Fine-tunes the packaged MiniLM (full, the quickstart's settings) for each `--seeds` seed on
   - `base`: the sample alone, `--epochs` passes;
   - `augmented, same steps`: sample + round trips, as many optimizer steps as `base`
     (fewer passes over more distinct sentences: the same training compute);
   - `augmented, same epochs`: sample + round trips, `--epochs` passes (more steps),
   and scores each on the whole SST-2 dev set (872 sentences). Prints accuracy mean ± standard
   deviation per variant, and a few round trips with their sources; writes JSON.

    python benchmarks/back_translation.py --to-pivot runs/multi30k-smollm2-lora/bundle \
        --from-pivot runs/multi30k-smollm2-lora-de-en/bundle
"""

from __future__ import annotations

import argparse
import json
import random
import statistics
import time
from pathlib import Path

from graftwork.backbones.quiet import quiet_libraries
from graftwork.config.recipe import data_root
from graftwork.machine import cpu_name
from graftwork.runs.augment import augment_recipe, generator_translator
from graftwork.runs.finetune import train

ROOT = Path(__file__).resolve().parents[1]


def sample(source: Path, n: int, seed: int, out: Path) -> Path:
    lines = source.read_text(encoding="utf-8").splitlines()
    header, rows = lines[0], lines[1:]
    kept = sorted(random.Random(seed).sample(range(len(rows)), n))
    out.write_text("\n".join([header] + [rows[i] for i in kept]) + "\n", encoding="utf-8")
    return out


def recipe(name: str, train_file: Path, out: Path, seed: int, epochs: float, args) -> dict:
    return {
        "name": name,
        "backbone": "minilm-l6",
        "task": {"type": "classification", "text": "sentence", "label": "label"},
        "data": {
            "train": str(train_file),
            "eval": str(Path(data_root()) / "sst2" / "dev.tsv"),
            "max_length": 128,
        },
        "method": {"type": "full"},
        "train": {
            "epochs": epochs,
            "batch_size": args.batch_size,
            "lr": args.lr,
            "warmup": 0.06,
            "seed": seed,
            "log_every": 50,
        },
        "output_dir": str(out),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--to-pivot", required=True)
    parser.add_argument("--from-pivot", required=True)
    parser.add_argument("--via", default="de")
    parser.add_argument("--examples", type=int, default=500)
    parser.add_argument("--sample-seed", type=int, default=1)
    parser.add_argument("--seeds", default="1,2,3")
    parser.add_argument("--epochs", type=float, default=5)
    parser.add_argument("--batch-size", type=int, default=16)
    parser.add_argument("--lr", type=float, default=5e-5)
    parser.add_argument("--max-new-tokens", type=int, default=64)
    parser.add_argument("--min-similarity", type=float, default=0.3)
    parser.add_argument("--max-similarity", type=float, default=0.95)
    parser.add_argument("--out", type=Path, default=ROOT / "runs" / "bench-back-translation")
    args = parser.parse_args()
    quiet_libraries()
    out = args.out
    out.mkdir(parents=True, exist_ok=True)
    started = time.perf_counter()
    small = sample(
        Path(data_root()) / "sst2" / "train.tsv",
        args.examples,
        args.sample_seed,
        out / f"sst2-{args.examples}.tsv",
    )
    augmented = out / (
        f"sst2-{args.examples}-bt-{args.via}-{args.min_similarity}-{args.max_similarity}.tsv"
    )
    if not augmented.is_file():  # the translations are the slow part: reuse them
        augment_recipe(  # writes the file and its counts beside it, read below
            recipe("bt-source", small, out, 1, 1, args),
            augmented,
            generator_translator(args.to_pivot, 16, args.max_new_tokens),
            generator_translator(args.from_pivot, 16, args.max_new_tokens),
            args.via,
            args.min_similarity,
            args.max_similarity,
        )
    counts = json.loads(augmented.with_name(augmented.name + ".counts.json").read_text())
    translated = time.perf_counter() - started
    total = counts["training_examples"] + counts["added"]
    variants = {
        "base": (small, args.epochs),
        "augmented_same_steps": (augmented, args.epochs * args.examples / total),
        "augmented_same_epochs": (augmented, args.epochs),
    }
    results: dict = {
        "machine": cpu_name(),
        "args": {k: str(v) for k, v in vars(args).items()},
        "counts": counts,
        "translation_seconds": translated,
        "runs": [],
    }
    for seed in map(int, args.seeds.split(",")):
        for variant, (train_file, epochs) in variants.items():
            done = train(
                recipe(f"bt-{variant}-{seed}", train_file, out, seed, epochs, args),
                overwrite=True,
            )
            row = {
                "variant": variant,
                "seed": seed,
                "epochs": epochs,
                "steps": done.metrics["train"]["steps"],
                "accuracy": done.metrics["eval"]["accuracy"],
            }
            results["runs"].append(row)
            print(json.dumps(row), flush=True)
            (out / "results.json").write_text(json.dumps(results, indent=2), encoding="utf-8")
    results["seconds"] = time.perf_counter() - started
    (out / "results.json").write_text(json.dumps(results, indent=2), encoding="utf-8")
    lines = augmented.read_text(encoding="utf-8").splitlines()[counts["training_examples"] + 1 :]
    print(f"\n{cpu_name()}; {results['seconds']:.0f} s ({translated:.0f} s translating)")
    print(f"counts: {json.dumps(counts)}")
    for variant in variants:
        values = [r["accuracy"] for r in results["runs"] if r["variant"] == variant]
        steps = [r["steps"] for r in results["runs"] if r["variant"] == variant]
        spread = f" ± {statistics.stdev(values):.4f}" if len(values) > 1 else ""
        print(
            f"{variant:24} {statistics.mean(values):.4f}{spread}  "
            f"{[round(v, 4) for v in values]}  steps {steps[0]}"
        )
    print("round trips (first 5 kept):")
    for line in lines[:5]:
        print("  " + line)


if __name__ == "__main__":
    main()
