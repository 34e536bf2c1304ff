"""Batched generation (`graft generate --input`) against transformers' text-generation pipeline.

The same model (default `smollm2-135m`), the same prompts (the first `--prompts` English
captions of Multi30k's test_2016_flickr under a translation instruction, formatted with the
model's chat template by both), the same greedy settings and `--max-new-tokens`, side by side in
one process after a warm-up of each:

- graftwork: `inference.generate.Generator.generate`, what `graft generate --input` runs:
  prompts sorted by length into `--batch-size` batches, left-padded, one `model.generate` each.
- pipeline: `transformers.pipeline("text-generation")` given the prompts as chat messages,
  one at a time (its default: no batch_size), `do_sample=False`, `return_full_text=False`.
- pipeline, batched (`--pipeline-batched`): the same pipeline with `batch_size=--batch-size`
  and a left-padding tokenizer, what a user who knows the pipeline's option would run (batches
  in the prompts' order; padded answers may differ from unpadded ones, which the count of equal
  answers shows).

It prints generated tokens/s of each (the answers re-tokenized by one function for both), the
ratio, how many answers are equal, and the CPU and threads. Model loading is not timed.

    python benchmarks/generate.py --prompts 200 --max-new-tokens 32
"""

from __future__ import annotations

import argparse
import json
import time

import torch

from graftwork.backbones.quiet import quiet_libraries
from graftwork.config.recipe import data_root
from graftwork.inference.generate import load_generator
from graftwork.machine import cpu_name

INSTRUCTION = "Translate the following English sentence into German.\n"


def prompts(count: int) -> list[str]:
    path = f"{data_root()}/multi30k/test_2016_flickr.en"
    with open(path, encoding="utf-8") as fh:
        lines = [line.strip() for line in fh if line.strip()]
    return [INSTRUCTION + line for line in lines[:count]]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    parser.add_argument("--model", default="smollm2-135m")
    parser.add_argument("--prompts", type=int, default=200)
    parser.add_argument("--max-new-tokens", type=int, default=32)
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--pipeline-batched", action="store_true", help="a third side")
    args = parser.parse_args()
    quiet_libraries()
    torch.set_num_threads(args.threads)
    from transformers import pipeline

    texts = prompts(args.prompts)
    generator = load_generator(args.model)
    settings = generator.settings_with(max_new_tokens=args.max_new_tokens, greedy=True)
    tokenizer = generator.tokenizer
    pipe = pipeline("text-generation", model=generator.model, tokenizer=tokenizer)
    options = dict(
        max_new_tokens=args.max_new_tokens,
        do_sample=False,
        return_full_text=False,
        pad_token_id=tokenizer.pad_token_id,
    )

    def ours() -> list[str]:
        answers = generator.generate(texts, settings, batch_size=args.batch_size)
        return [a["generated_text"] for a in answers]

    def theirs(**extra) -> list[str]:
        chats = [[{"role": "user", "content": t}] for t in texts]
        return [out[0]["generated_text"].strip() for out in pipe(chats, **options, **extra)]

    def theirs_batched() -> list[str]:
        side, tokenizer.padding_side = tokenizer.padding_side, "left"
        try:
            return theirs(batch_size=args.batch_size)
        finally:
            tokenizer.padding_side = side

    generator.generate(texts[:2], settings)  # warm-up of each path
    pipe([[{"role": "user", "content": texts[0]}]], **options)
    results = {}
    sides = [("graftwork", ours), ("pipeline", theirs)]
    if args.pipeline_batched:
        sides.append(("pipeline_batched", theirs_batched))
    for name, run in sides:
        start = time.perf_counter()
        answers = run()
        seconds = time.perf_counter() - start
        tokens = sum(len(tokenizer(a, add_special_tokens=False)["input_ids"]) for a in answers)
        results[name] = {"answers": answers, "seconds": seconds, "tokens": tokens}
    a, b = results["graftwork"], results["pipeline"]
    equal = sum(x == y for x, y in zip(a["answers"], b["answers"], strict=True))
    summary = {
        "cpu": cpu_name(),
        "threads": args.threads,
        "model": args.model,
        "prompts": len(texts),
        "max_new_tokens": args.max_new_tokens,
        "batch_size": args.batch_size,
        "equal_answers": equal,
        "different": [
            {"prompt": p, "graftwork": x, "pipeline": y}
            for p, x, y in zip(texts, a["answers"], b["answers"], strict=True)
            if x != y
        ][:5],
    }
    for name, r in results.items():
        summary[name] = {
            "seconds": round(r["seconds"], 2),
            "tokens": r["tokens"],
            "tokens_per_second": round(r["tokens"] / r["seconds"], 2),
        }
    summary["speedup"] = round(
        summary["graftwork"]["tokens_per_second"] / summary["pipeline"]["tokens_per_second"], 2
    )
    if "pipeline_batched" in results:
        c = results["pipeline_batched"]
        summary["pipeline_batched_equal_answers"] = sum(
            x == y for x, y in zip(a["answers"], c["answers"], strict=True)
        )
        summary["speedup_over_batched_pipeline"] = round(
            summary["graftwork"]["tokens_per_second"]
            / summary["pipeline_batched"]["tokens_per_second"],
            2,
        )
    print(json.dumps(summary, indent=1, ensure_ascii=False))


if __name__ == "__main__":
    main()
