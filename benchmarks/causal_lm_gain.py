"""What fine-tuning a decoder buys: a causal_lm recipe's eval metrics before and after its run.

Before is the backbone zero-shot, with the same prompt and generation settings.

Reads the recipe, optionally cuts its eval split to the first `--eval-lines` lines (written to a
temporary folder, not the repo; for parallel files both sides), scores the untrained backbone
with the task's own evaluation (`inference.forward.evaluate_examples` through the task's
generating forward: BLEU, chrF, perplexity of the references), then runs the recipe
(`graftwork.run`, which evaluates the same split at its end) and prints both, with the
training time, the examples seen, the CPU and the threads.

    python benchmarks/causal_lm_gain.py recipes/multi30k-smollm2-lora.yaml --eval-lines 200
"""

from __future__ import annotations

import argparse
import json
import tempfile
import time
from pathlib import Path

import torch

import graftwork
from graftwork import registry
from graftwork.backbones import load as backbones
from graftwork.backbones.quiet import quiet_libraries
from graftwork.config.recipe import load_recipe
from graftwork.data.readers import read_examples
from graftwork.inference.forward import evaluate_examples, task_forward
from graftwork.machine import cpu_name

KEYS = ("bleu", "chrf", "perplexity", "examples")


def cut(recipe, lines: int, folder: Path) -> str:
    """The eval split's first `lines` lines as a new split in `folder` (both parallel files)."""
    path = recipe.data_path("eval")
    if recipe.data.format == "parallel":
        for side in (recipe.task.source, recipe.task.target):
            source = path.with_name(f"{path.name}.{side}")
            head = source.read_text(encoding="utf-8").splitlines()[:lines]
            (folder / f"eval.{side}").write_text("\n".join(head) + "\n", encoding="utf-8")
        return str(folder / "eval")
    head = path.read_text(encoding="utf-8").splitlines()[:lines]
    (folder / path.name).write_text("\n".join(head) + "\n", encoding="utf-8")
    return str(folder / path.name)


def zero_shot(recipe) -> dict:
    from transformers import AutoModelForCausalLM

    task = registry.task(recipe.task.type)
    folder = backbones.resolve(recipe.backbone)
    tokenizer = backbones.load_tokenizer(folder, recipe.backbone)
    model = AutoModelForCausalLM.from_pretrained(str(folder), use_safetensors=True)
    data = read_examples(recipe.data_path("eval"), recipe.task, recipe.data)
    forward = task_forward(task, model, tokenizer, recipe.generation)
    return evaluate_examples(
        forward,
        tokenizer,
        task,
        data.examples,
        {},
        recipe.data.max_length,
        recipe.train.eval_batch_size,
        data.shown,
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    parser.add_argument("recipe")
    parser.add_argument("overrides", nargs="*", help="Recipe overrides, KEY=VALUE.")
    parser.add_argument("--eval-lines", type=int, default=None)
    parser.add_argument("--threads", type=int, default=2)
    args = parser.parse_args()
    quiet_libraries()
    torch.set_num_threads(args.threads)
    overrides = list(args.overrides) + [f"train.threads={args.threads}"]
    with tempfile.TemporaryDirectory() as tmp:
        recipe = load_recipe(args.recipe, overrides)
        if args.eval_lines:
            overrides.append(f"data.eval={cut(recipe, args.eval_lines, Path(tmp))}")
            recipe = load_recipe(args.recipe, overrides)
        started = time.perf_counter()
        before = zero_shot(recipe)
        before_seconds = time.perf_counter() - started
        result = graftwork.run(args.recipe, overrides, overwrite=True)
    after = result.metrics["eval"]
    trained = result.metrics["train"]
    summary = {
        "cpu": cpu_name(),
        "threads": args.threads,
        "recipe": args.recipe,
        "overrides": args.overrides,
        "eval_lines": args.eval_lines,
        "before": {k: before[k] for k in KEYS},
        "after": {k: after[k] for k in KEYS},
        "zero_shot_eval_seconds": round(before_seconds, 1),
        "train_seconds": round(trained["seconds"], 1),
        "examples_seen": trained["examples_seen"],
        "steps": f"{trained['steps']} of {trained['planned_steps']}",
        "loss_first_last": [trained["loss_history"][0], trained["loss_history"][-1]],
        "samples_after": after.get("samples", [])[:3],
        "samples_before": before.get("samples", [])[:3],
        "run_dir": str(result.run_dir),
    }
    print(json.dumps(summary, indent=1, ensure_ascii=False))


if __name__ == "__main__":
    main()
