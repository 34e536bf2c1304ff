"""Cross-lingual zero-shot NER with e5-small-multilingual, and what vocabulary trimming changes.

In one process (one turn of the heavy-job lock):
1. trains `recipes/wikiann-en-e5.yaml` on English WikiANN only (overrides go to this run);
2. evaluates the bundle on English and German WikiANN test (entity F1, seqeval), timing it;
3. trims the backbone and the trained bundle to the pieces of the en+de training text (German
   text only for the vocabulary, never its labels) and reports pieces, parameters and bytes;
4. evaluates the trimmed bundle on the same test files (the F1 change, inference speed);
5. trains the recipe briefly on the full and on the trimmed backbone (same examples) to compare
   training examples/s.
Prints one JSON document (also written to OUT/crosslingual_e5.json).

    python benchmarks/crosslingual_e5.py
    python benchmarks/crosslingual_e5.py data.max_train_examples=4000 --test-limit 2000
"""

from __future__ import annotations

import argparse
import json
import os
import time
from pathlib import Path

import graftwork
from graftwork.machine import describe
from graftwork.runs.finetune import train
from graftwork.runs.trim import trim

ROOT = Path(__file__).resolve().parents[1]
RECIPE = ROOT / "recipes" / "wikiann-en-e5.yaml"


def sentences(path: Path, limit: int | None, out: Path) -> Path:
    """`path`, or its first `limit` sentences written to `out`."""
    if not limit:
        return path
    blocks = path.read_text(encoding="utf-8").strip("\n").split("\n\n")[:limit]
    out.write_text("\n\n".join(blocks) + "\n", encoding="utf-8")
    return out


def evaluate(bundle: Path, tests: dict[str, Path], threads: int | None) -> dict:
    predictor = graftwork.load(bundle, threads=threads)
    rows = {}
    for language, path in tests.items():
        count = path.read_text(encoding="utf-8").strip("\n").count("\n\n") + 1
        started = time.perf_counter()
        metrics = predictor.evaluate(path, batch_size=64)
        seconds = time.perf_counter() - started
        rows[language] = {
            "f1": metrics["f1"],
            "sentences": count,
            "seconds": round(seconds, 1),
            "sentences_per_second": round(count / seconds, 1),
        }
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("overrides", nargs="*", help="recipe overrides for the main run")
    parser.add_argument("--out", type=Path, default=Path("runs/bench-e5"))
    parser.add_argument("--test-limit", type=int, default=None, help="first N test sentences")
    parser.add_argument("--speed-examples", type=int, default=800)
    parser.add_argument("--threads", type=int, default=None)
    args = parser.parse_args()
    data = Path(os.environ.get("GRAFT_DATA", ROOT.parent / "shared" / "data")) / "wikiann"
    args.out.mkdir(parents=True, exist_ok=True)
    tests = {
        lang: sentences(data / lang / "test", args.test_limit, args.out / f"test-{lang}")
        for lang in ("en", "de")
    }
    corpora = [data / "en" / "train", data / "de" / "train"]
    report: dict = {"machine": describe(), "overrides": args.overrides}
    written = args.out / "crosslingual_e5.json"

    def save() -> None:  # after every stage: a run stopped midway keeps what it measured
        written.write_text(json.dumps(report, indent=2, default=str))

    base = [f"output_dir={args.out}", "train.log_every=50"]
    result = train(RECIPE, [*args.overrides, *base, "name=e5-en"], overwrite=True)
    metrics = json.loads((result.bundle.parent / "metrics.json").read_text())
    report["train"] = {k: metrics["train"][k] for k in ("examples", "seconds")}
    report["train"]["examples_per_second"] = metrics["train"]["examples_per_second"]
    report["eval_en_dev"] = metrics.get("eval", {}).get("f1")
    report["full"] = evaluate(result.bundle, tests, args.threads)
    save()

    trimmed_backbone = trim("e5-small-multilingual", corpora, args.out / "e5-en-de", fmt="conll")
    report["trim_backbone"] = trimmed_backbone.record()
    trimmed = trim(str(result.bundle), corpora, args.out / "e5-en-bundle-trimmed", fmt="conll")
    report["trim_bundle"] = trimmed.record()
    report["trimmed"] = evaluate(args.out / "e5-en-bundle-trimmed", tests, args.threads)
    save()

    # training speed with every parameter training (the embeddings too), where the vocabulary
    # size shows: gradients and optimizer state for each embedding row
    speed = [*base, f"data.max_train_examples={args.speed_examples}", "data.eval=null"]
    speed.append("method.freeze_embeddings=false")
    for side, backbone in (("full", "e5-small-multilingual"), ("trimmed", args.out / "e5-en-de")):
        short = train(
            RECIPE, [*speed, f"backbone={backbone}", f"name=speed-{side}"], overwrite=True
        )
        done = json.loads((short.bundle.parent / "metrics.json").read_text())["train"]
        report[f"train_speed_{side}"] = {
            "examples": done["examples"],
            "seconds": round(done["seconds"], 1),
            "examples_per_second": round(done["examples_per_second"], 2),
        }
        save()
    print(written.read_text())


if __name__ == "__main__":
    main()
