"""Domain-adaptive pretraining: held-out perplexity and tokens per word before/after, measured.

Runs a pretraining recipe (default `recipes/pretrain-sst2.yaml`: MiniLM, SST-2 movie-review
text, mined vocabulary), then a step-matched baseline: the original encoder (with the same added
vocabulary), frozen, with only its MLM head trained for as many steps as the adapted model's
head got (warm-up + MLM steps) on the same masked sequences, scored on the same held-out mask.
So a perplexity gain over that baseline is the encoder's, not the head's. With `--fine-tune N`
it then fine-tunes SST-2 sentiment on N examples from both backbones (recipes/quickstart.yaml,
same budget and seed) and prints dev accuracy.

    python benchmarks/pretrain.py
    python benchmarks/pretrain.py --fine-tune 4000
    python benchmarks/pretrain.py data.max_documents=1000 mlm.head_warmup_steps=20   # a smoke run
"""

from __future__ import annotations

import argparse
from pathlib import Path

import torch

from graftwork.backbones import load as backbones
from graftwork.data.sampling import subsample
from graftwork.machine import cpu_name
from graftwork.runs.corpus import read_corpus
from graftwork.runs.finetune import train
from graftwork.runs.pretrain import (
    EVAL_MASK_SEED,
    load_mlm_model,
    masked_set,
    perplexity,
    pretrain,
    warm_head,
)
from graftwork.runs.vocab import extend

ROOT = Path(__file__).resolve().parents[1]


def head_only_perplexity(recipe, terms: list[str], steps: int) -> float:
    """The original encoder, frozen, with its head trained for `steps` steps."""
    folder = backbones.resolve(recipe.backbone)
    tokenizer = backbones.load_tokenizer(folder, recipe.backbone)
    model = load_mlm_model(folder, recipe.backbone)
    extend(model, tokenizer, terms)
    train_docs, eval_docs = read_corpus(recipe.data, recipe.resolve_path, recipe.train.seed)
    docs = subsample(train_docs, recipe.data.max_documents, recipe.train.seed)
    features, labels = masked_set(tokenizer, docs, recipe, recipe.train.seed)
    held_out = masked_set(tokenizer, eval_docs, recipe, EVAL_MASK_SEED)
    mlm = recipe.mlm.model_copy(update={"head_warmup_steps": steps})
    torch.manual_seed(recipe.train.seed)
    warm_head(model, features, labels, mlm, recipe.train, tokenizer.pad_token_id)
    pad, device = tokenizer.pad_token_id, next(model.parameters()).device  # where fit put it
    return perplexity(model, *held_out, pad, recipe.train.eval_batch_size, device)["perplexity"]


def fine_tune(backbone: str, examples: int, out: Path, name: str) -> float:
    overrides = [
        f"backbone={backbone}",
        f"data.max_train_examples={examples}",
        f"output_dir={out}",
        f"name={name}",
    ]
    result = train(ROOT / "recipes" / "quickstart.yaml", overrides, overwrite=True)
    return result.metrics["eval"]["accuracy"]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("overrides", nargs="*", help="Recipe overrides, KEY=VALUE.")
    parser.add_argument("--recipe", type=Path, default=ROOT / "recipes" / "pretrain-sst2.yaml")
    parser.add_argument("--out", type=Path, default=Path("runs/bench-pretrain"))
    parser.add_argument("--fine-tune", type=int, default=0, metavar="N")
    args = parser.parse_args()

    result = pretrain(args.recipe, [*args.overrides, f"output_dir={args.out}"], overwrite=True)
    m = result.metrics
    ppl, words = m["perplexity"], m["tokens_per_word"]
    head_steps = result.recipe.mlm.head_warmup_steps + m["train"]["steps"]
    matched = head_only_perplexity(result.recipe, m["vocab"]["terms"], head_steps)

    print(f"\n{result.recipe.name} on {cpu_name()}, {torch.get_num_threads()} threads")
    print(
        f"  MLM: {m['train']['sequences']} sequences, {m['train']['steps']} steps, "
        f"{m['train']['seconds']:.0f} s; held out: {ppl['masked_tokens']} masked tokens "
        f"of {m['documents']['eval']} documents"
    )
    warm = result.recipe.mlm.head_warmup_steps
    rows = [
        ("perplexity, new head (encoder as shipped)", ppl["before"]),
        (f"perplexity, head-only {warm} steps (encoder as shipped)", ppl["before_head_warmup"]),
        (f"perplexity, head-only {head_steps} steps (encoder as shipped)", matched),
        (
            f"perplexity, after MLM training ({warm} head + {m['train']['steps']} steps)",
            ppl["after"],
        ),
    ]
    for label, value in rows:
        print(f"  {label:<62} {value:>12,.2f}")
    print(
        f"  {'tokens per held-out word, before → after':<62} "
        f"{words['before']:.4f} → {words['after']:.4f} ({m['vocab']['added']} terms added)"
    )
    if args.fine_tune:
        base = fine_tune("minilm-l6", args.fine_tune, args.out, "ft-minilm")
        adapted = fine_tune(str(result.bundle), args.fine_tune, args.out, "ft-adapted")
        print(f"  SST-2 dev accuracy after fine-tuning on {args.fine_tune} examples:")
        print(f"    from minilm-l6 {base:.4f}; from the adapted backbone {adapted:.4f}")


if __name__ == "__main__":
    main()
