"""Data selection for domain pretraining, measured: selected vs random text, same budget.

The FinBERT scenario (recipes/pretrain-finance.yaml, recipes/finance-phrasebank.yaml): from the
10-K pool, the K paragraphs most like Financial PhraseBank's training sentences
(`graft select`, TF-IDF centroid cosine) or K paragraphs drawn at random (seeded); on each,
continued masked-LM pretraining of MiniLM (mask ratio 0.20, mined vocabulary, the same
settings and step count: K paragraphs, one epoch); then the same fine-tune on PhraseBank.
Per seed (the random draw, the pretraining and the fine-tune all use it): PhraseBank dev
accuracy / macro-F1 of each arm and of MiniLM fine-tuned without pretraining, and each
pretrained backbone's perplexity on PhraseBank dev. Prints a table and writes JSON.

    python benchmarks/select_finbert.py        # K=1000; fine-tune: 1000 rows, 3 epochs; 3 seeds
    python benchmarks/select_finbert.py --top 300 --seeds 1 --fine-tune 300   # a smoke run
"""

from __future__ import annotations

import argparse
import json
import random
import statistics
import time
from pathlib import Path

from graftwork.data.text import text_lines
from graftwork.machine import cpu_name
from graftwork.runs.finetune import train
from graftwork.runs.pretrain import pretrain
from graftwork.runs.select import select

ROOT = Path(__file__).resolve().parents[1]
PRETRAIN = ROOT / "recipes" / "pretrain-finance.yaml"
FINETUNE = ROOT / "recipes" / "finance-phrasebank.yaml"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--top", type=int, default=1000, help="K paragraphs per arm")
    parser.add_argument("--seeds", type=int, default=3)
    parser.add_argument("--fine-tune", type=int, default=1000, help="PhraseBank training rows")
    parser.add_argument("--epochs", type=float, default=3, help="fine-tuning epochs")
    parser.add_argument(
        "--no-baseline", action="store_true", help="skip MiniLM fine-tuned without pretraining"
    )
    parser.add_argument("--out", type=Path, default=ROOT / "runs" / "bench-select-finbert")
    parser.add_argument("--backbone", default="minilm-l6", help="a smoke run: a tiny folder")
    args = parser.parse_args()
    from graftwork.config.recipe import data_root

    data = Path(data_root()) / "finance"
    out = args.out
    out.mkdir(parents=True, exist_ok=True)
    started = time.perf_counter()
    chosen = out / "selected.txt"
    corpus, like = data / "sec10k_corpus.txt", data / "phrasebank_train.tsv"
    done = select(corpus, like, args.top, chosen, by="tfidf")  # as its recorded figures
    pool = [line.strip() for line in text_lines(data / "sec10k_corpus.txt") if line.strip()]
    picked = set(text_lines(chosen))
    results: dict = {"machine": cpu_name(), "top": args.top, "fine_tune": args.fine_tune}
    results["selection_seconds"] = done.seconds
    rows = []
    for seed in range(1, args.seeds + 1):
        sample = random.Random(seed).sample(sorted(set(pool)), args.top)
        texts = {"selected": chosen, "random": out / f"random-{seed}.txt"}
        texts["random"].write_text("\n".join(sample) + "\n", encoding="utf-8")
        row = {"seed": seed, "random_overlap": len(picked & set(sample))}
        tune = [f"train.seed={seed}", f"data.max_train_examples={args.fine_tune}"]
        tune.append(f"train.epochs={args.epochs}")
        tune += [f"output_dir={out}", f"backbone={args.backbone}"]
        if not args.no_baseline:
            base = train(FINETUNE, [*tune, f"name=base-{seed}"], overwrite=True)
            row["none"] = base.metrics["eval"]
        for arm, text in texts.items():
            name = f"{arm}-{seed}"
            overrides = [f"data.train={text}", f"train.seed={seed}", f"output_dir={out}"]
            overrides.append(f"backbone={args.backbone}")
            pre = pretrain(PRETRAIN, [*overrides, f"name=pre-{name}"], overwrite=True)
            row[f"{arm}_perplexity"] = pre.metrics["perplexity"]
            row[f"{arm}_vocab_added"] = pre.metrics["vocab"]["added"]
            row[f"{arm}_pretrain_steps"] = pre.metrics["train"]["steps"]
            tuned = train(
                FINETUNE, [*tune, f"name=tune-{name}", f"backbone={pre.bundle}"], overwrite=True
            )
            row[arm] = tuned.metrics["eval"]
        rows.append(row)
        results["rows"] = rows  # written after every seed: a cut-short run keeps what it did
        (out / "results.json").write_text(json.dumps(results, indent=2), encoding="utf-8")
        print(json.dumps({k: v for k, v in row.items()}, default=str)[:600], flush=True)
    results["rows"] = rows
    results["seconds"] = time.perf_counter() - started
    (out / "results.json").write_text(json.dumps(results, indent=2), encoding="utf-8")
    print(f"\n{cpu_name()}; K={args.top}; fine-tune: {args.fine_tune} rows, {args.epochs} epochs")
    print("arm        accuracy (per seed)               mean   macro-F1 mean  dev perplexity")
    for arm in ("none", "random", "selected"):
        if arm not in rows[0]:
            continue
        acc = [r[arm]["accuracy"] for r in rows]
        f1 = [r[arm]["macro_f1"] for r in rows]
        ppl = [r[f"{arm}_perplexity"]["after"] for r in rows] if arm != "none" else []
        shown = " ".join(f"{a:.4f}" for a in acc)
        spread = f"±{statistics.stdev(acc):.4f}" if len(acc) > 1 else ""
        mean_ppl = f"{statistics.mean(ppl):.2f}" if ppl else "-"
        print(
            f"{arm:10s} {shown:32s} {statistics.mean(acc):.4f}{spread} "
            f"{statistics.mean(f1):.4f}  {mean_ppl}"
        )
    print(f"total {results['seconds']:.0f} s; results in {out / 'results.json'}")


if __name__ == "__main__":
    main()
