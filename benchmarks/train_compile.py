"""Does `torch.compile` (inductor, CPU) pay for graftwork's training step? Eager against compiled.

One process, the packaged MiniLM, the same length-grouped batches of SST-2 or CoNLL-2003 that
graftwork's loop would draw (`data.batching.training_batches`), the same step as the loop
(forward, summed cross-entropy, backward, gradient clipping, fused AdamW). Each side starts from
the same weights. The compiled side's first pass over the batches is its warm-up (compilation
for each new shape; `dynamic=True` so varying lengths reuse one graph where inductor can) and is
reported apart; both sides are then timed on a second pass over the same batches. Prints
steps/s of each, the ratio, the compile time, and the largest loss difference between the two
sides over the timed pass (the compiled graph may reorder floating-point sums).

    python benchmarks/train_compile.py --task sst2 --examples 1600
    python benchmarks/train_compile.py --task conll --examples 800
"""

from __future__ import annotations

import argparse
import copy
import time
from pathlib import Path

import torch

from graftwork.data.batching import collate, training_batches
from graftwork.machine import cpu_name
from graftwork.train.loop import labelled, summed_loss
from train_vs_trainer import TASKS, graftwork_recipe, prepare_data


def steps(model, optimizer, batches, features, labels, pad_id) -> tuple[float, list[float]]:
    losses = []
    started = time.perf_counter()
    for batch_ids in batches:
        batch = collate([features[i] for i in batch_ids], pad_id, [labels[i] for i in batch_ids])
        loss = summed_loss(model, batch) / max(1, labelled([labels[i] for i in batch_ids]))
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)
        losses.append(loss.item())
    return time.perf_counter() - started, losses


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--task", choices=sorted(TASKS), default="sst2")
    parser.add_argument("--examples", type=int, default=1600)
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--lr", type=float, default=1e-5)
    parser.add_argument("--seed", type=int, default=13)
    parser.add_argument("--mode", default="default", help="torch.compile mode")
    args = parser.parse_args()
    args.epochs, args.precision, args.max_eval, args.train_option = 1.0, "fp32", 0, None
    args.out = Path("runs/bench/train_compile.json")
    graftwork_recipe(args, args.out.parent)  # validates the task's files exist
    data = prepare_data(args)
    features = [{k: v for k, v in item.items() if k != "labels"} for item in data["train"]]
    labels = [item["labels"] for item in data["train"]]
    lengths = [len(f["input_ids"]) for f in features]
    batches = training_batches(lengths, args.batch_size, args.seed, 0)
    pad_id = data["tokenizer"].pad_token_id
    torch.manual_seed(args.seed)
    base = (
        data["task"]
        .model_class()
        .from_pretrained(str(data["folder"]), num_labels=len(data["labels"]))
    )
    base.train()
    results = {}
    for side in ("eager", "compiled"):
        model = copy.deepcopy(base)
        optimizer = torch.optim.AdamW(model.parameters(), lr=args.lr, fused=True)
        runner = model
        warmup = 0.0
        if side == "compiled":
            runner = torch.compile(model, dynamic=True, mode=args.mode)
            warmup, _ = steps(runner, optimizer, batches, features, labels, pad_id)
            # time from the same weights as the eager side (copied in place: same tensors)
            model.load_state_dict(base.state_dict())
            optimizer = torch.optim.AdamW(model.parameters(), lr=args.lr, fused=True)
        seconds, losses = steps(runner, optimizer, batches, features, labels, pad_id)
        results[side] = {"seconds": seconds, "losses": losses, "warmup": warmup}
        print(
            f"{side:9} {len(batches) / seconds:6.2f} steps/s  "
            f"{len(labels) / seconds:7.1f} ex/s  (first pass {warmup:.1f} s)",
            flush=True,
        )
    eager, compiled = results["eager"], results["compiled"]
    gap = max(abs(a - b) for a, b in zip(eager["losses"], compiled["losses"], strict=True))
    print(
        f"\nCPU: {cpu_name()} ({torch.get_num_threads()} threads), torch {torch.__version__}, "
        f"{args.task}, {len(labels)} examples, {len(batches)} steps of {args.batch_size}, "
        f"mode {args.mode}"
    )
    print(
        f"compiled / eager: {eager['seconds'] / compiled['seconds']:.2f}x; compile pass "
        f"{compiled['warmup']:.1f} s vs one eager pass {eager['seconds']:.1f} s; "
        f"largest loss difference {gap:.2e}"
    )


if __name__ == "__main__":
    main()
