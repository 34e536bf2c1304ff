"""Where a training step's time goes: graftwork's loop against the grouped Hugging Face `Trainer`.

Both sides train the packaged MiniLM on the same seeded SST-2 (or CoNLL-2003) subset under
`torch.profiler`, and the step is split into forward, backward, gradient clipping, optimizer
step, zero_grad and the rest (collation, the data path, Python, other threads' interference),
with the top operators by self time. The profiler's overhead lands on both sides alike.

    python benchmarks/train_profile.py --examples 1280 [--task conll] [--precision bf16]
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import torch
from torch.autograd.profiler import record_function

import graftwork.runs.finetune as finetune
import graftwork.runs.stages as stages
from graftwork.backbones.quiet import quiet_libraries
from train_vs_trainer import TASKS, graftwork_recipe, prepare_data, trainer_side

TOP_MODELS = ("ForSequenceClassification", "ForTokenClassification")


def label_phases() -> None:
    """Label the model's forward and gradient clipping in the profile (both sides)."""
    open_labels: dict[int, record_function] = {}

    def pre(module, _args):
        if type(module).__name__.endswith(TOP_MODELS):
            open_labels[id(module)] = record_function("phase::forward").__enter__()

    def post(module, _args, _out):
        label = open_labels.pop(id(module), None)
        if label is not None:
            label.__exit__(None, None, None)

    torch.nn.modules.module.register_module_forward_pre_hook(pre)
    torch.nn.modules.module.register_module_forward_hook(post)
    clip = torch.nn.utils.clip_grad_norm_

    def labelled_clip(*args, **kwargs):
        with record_function("phase::clip_grad_norm"):
            return clip(*args, **kwargs)

    torch.nn.utils.clip_grad_norm_ = labelled_clip


def phases(prof, wall: float) -> dict:
    """Seconds per phase from the profile's inclusive times."""
    inclusive: dict[str, float] = {}
    for event in prof.key_averages():
        inclusive[event.key] = inclusive.get(event.key, 0.0) + event.cpu_time_total / 1e6
    backward = sum(v for k, v in inclusive.items() if k.startswith("autograd::engine::evaluate"))
    out = {
        "wall": wall,
        "forward": inclusive.get("phase::forward", 0.0),
        "backward": backward,
        "clip_grad_norm": inclusive.get("phase::clip_grad_norm", 0.0),
        "optimizer_step": sum(v for k, v in inclusive.items() if k.startswith("Optimizer.step")),
        "zero_grad": sum(v for k, v in inclusive.items() if k.startswith("Optimizer.zero_grad")),
    }
    out["rest"] = wall - sum(v for k, v in out.items() if k != "wall")
    return out


def profiled(run):
    activities = [torch.profiler.ProfilerActivity.CPU]
    with torch.profiler.profile(activities=activities) as prof:
        started = time.perf_counter()
        result = run()
        wall = time.perf_counter() - started
    return prof, wall, result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--task", choices=sorted(TASKS), default="sst2")
    parser.add_argument("--examples", type=int, default=1280)
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--lr", type=float, default=1e-4)
    parser.add_argument("--seed", type=int, default=13)
    parser.add_argument("--precision", choices=["fp32", "bf16"], default="fp32")
    parser.add_argument("--top", type=int, default=15)
    parser.add_argument(
        "--trainer-first", action="store_true", help="profile the Trainer before graftwork"
    )
    parser.add_argument("--out", type=Path, default=Path("runs/bench/train_profile.json"))
    args = parser.parse_args()
    args.epochs, args.train_option, args.max_eval = 1.0, None, 0
    quiet_libraries()
    work = args.out.parent
    work.mkdir(parents=True, exist_ok=True)
    label_phases()
    data = prepare_data(args)
    report: dict = {"settings": vars(args) | {"out": str(args.out)}}

    fit = stages.fit  # train_and_save calls the loop through stages
    holder: dict = {}

    def profiled_fit(*a, **k):
        holder["prof"], holder["wall"], out = profiled(lambda: fit(*a, **k))
        return out

    def ours():
        stages.fit = profiled_fit
        finetune.train(graftwork_recipe(args, work / "profile-graftwork"), overwrite=True)
        stages.fit = fit
        sides["graftwork"] = (holder["prof"], holder["wall"])

    def around(run):
        holder["prof"], holder["wall"], _ = profiled(run)

    def theirs():
        trainer_side(args, data, work / "profile-trainer", grouped=True, around=around)
        sides["trainer_grouped"] = (holder["prof"], holder["wall"])

    sides: dict = {}
    for side in (theirs, ours) if args.trainer_first else (ours, theirs):
        side()
    report["order"] = list(sides)
    for name, (prof, wall) in sides.items():
        report[name] = phases(prof, wall)
        print(f"\n== {name}: {wall:.1f} s for {args.examples} examples")
        for phase, seconds in report[name].items():
            print(f"  {phase:16}{seconds:8.2f} s")
        print(prof.key_averages().table(sort_by="self_cpu_time_total", row_limit=args.top))
    args.out.write_text(json.dumps(report, indent=2))


if __name__ == "__main__":
    main()
