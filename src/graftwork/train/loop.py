"""The training loop, readable top to bottom.

AdamW with linear warm-up and decay, gradient accumulation and clipping, mixed precision and
data parallelism through `accelerate`. Batches are length-grouped; in data-parallel runs each
process takes an interleaved share of the same global batch, so N processes see exactly the
examples one process would, and the averaged gradient is the one-process gradient.
The epoch's batch order is a pure function of (seed, epoch), which is what makes resume exact.
The default loss is cross-entropy of the logits; a run passes its task's (`tasks.base.Task.loss`).
What it leaves out: evaluation and saving the result (see `runs/stages.py`).
"""

from __future__ import annotations

import logging
import math
import time
from contextlib import nullcontext

import torch

from graftwork.config.recipe import TrainConfig
from graftwork.data.batching import collate, training_batches
from graftwork.data.encode import IGNORE
from graftwork.tasks.losses import logits_loss as summed_loss
from graftwork.tasks.losses import summed_cross_entropy  # noqa: F401  (re-exported)
from graftwork.train import checkpoint, sharding
from graftwork.train.checkpoint import TrainState
from graftwork.train.hooks import Hooks, Training
from graftwork.train.progress import Progress

log = logging.getLogger("graftwork")


def make_accelerator(cfg: TrainConfig):
    from accelerate import Accelerator

    precision = {"fp32": "no", "bf16": "bf16", "fp16": "fp16"}[cfg.precision]
    if precision == "fp16" and not torch.cuda.is_available():
        log.warning("precision fp16 needs a GPU; training in fp32 on the CPU (bf16 works on CPUs)")
        precision = "no"
    from accelerate.state import AcceleratorState

    if AcceleratorState._shared_state.get("_mixed_precision", precision) != precision:
        # accelerate keeps one state a process and refuses a second precision in it; a later
        # run in this process (the Python API, a stage of a chain) starts that state anew (its
        # PartialState, the data-parallel process group, is kept)
        AcceleratorState._reset_state()
    return Accelerator(mixed_precision=precision, cpu=not torch.cuda.is_available())


def param_groups(model, weight_decay: float, lr: float, lr_scales: dict | None = None):
    """No weight decay on biases and LayerNorm weights (the usual BERT recipe); one group per
    learning-rate multiplier when the method sets them (layer-wise LR decay)."""
    groups: dict[tuple[float, bool], list] = {}
    for name, param in model.named_parameters():
        if not param.requires_grad:
            continue
        skip = name.endswith("bias") or "LayerNorm" in name or "layer_norm" in name
        scale = (lr_scales or {}).get(name, 1.0)
        groups.setdefault((scale, skip), []).append(param)
    return [
        {"params": params, "weight_decay": 0.0 if skip else weight_decay, "lr": lr * scale}
        for (scale, skip), params in sorted(groups.items(), key=lambda item: item[0])
    ]


def fused_adamw(groups: list[dict]) -> bool:
    """Whether PyTorch's fused AdamW kernel can update these parameters: floating point, on
    the CPU or a GPU. It updates each tensor in one pass instead of the foreach path's dozen
    (on the CPU that path loops over the tensors op by op); the update is the same up to
    rounding."""
    params = [p for g in groups for p in g["params"]]
    return bool(params) and all(
        p.is_floating_point() and p.device.type in ("cpu", "cuda") for p in params
    )


def labelled(labels: list) -> int:
    """Items that count in the loss: examples, or labelled first pieces for token tasks."""
    if labels and isinstance(labels[0], list):
        return sum(1 for row in labels for label in row if label != IGNORE)
    return len(labels)


def out_of_time(deadline: float, state: TrainState, steps: int, accelerator) -> bool:
    """`train.max_minutes` is up (every process decides the same, from the main one's clock)."""
    if deadline == math.inf or state.step >= steps:
        return False
    late = torch.tensor(float(time.monotonic() > deadline), device=accelerator.device)
    if accelerator.num_processes > 1:
        late = accelerator.reduce(late, reduction="max")
    if late.item():
        log.info("train.max_minutes reached: stopped at step %d of %d", state.step, steps)
        return True
    return False


def total_steps(n_examples: int, cfg: TrainConfig) -> int:
    batches = math.ceil(n_examples / cfg.batch_size)
    return max(1, math.ceil(cfg.epochs * math.ceil(batches / cfg.grad_accum)))


def fit(
    model,
    features: list[dict],
    labels: list,
    pad_id: int,
    accelerator,
    training: Training,
    hooks: Hooks | None = None,
):
    """Train `model` in place on `features` and `labels` (padding with `pad_id`) as `training`
    says; returns (the prepared model, the final TrainState, examples/s).

    `hooks` (`train.hooks.Hooks`) change the loss (default: cross-entropy of the logits,
    `summed_loss`; a run passes its task's `loss`), the batches, the learning rates and their
    schedule, and hang schedules, an evaluator (`train.evaluation.Evaluator`: evaluates every
    `eval_every` steps and at the end, may stop early, and puts the best weights back in the
    model at the end) and a logger on the loop."""
    from transformers import get_linear_schedule_with_warmup

    hooks = hooks or Hooks()
    cfg, run_dir, fingerprint = training.cfg, training.run_dir, training.fingerprint
    loss_fn, on_step, batch_plan = hooks.loss_fn, hooks.on_step, hooks.batch_plan
    evaluator, on_log = hooks.evaluator, hooks.on_log
    rank, world = accelerator.process_index, accelerator.num_processes
    loss_fn = loss_fn or summed_loss
    lengths = [len(f["input_ids"]) for f in features]
    steps = total_steps(len(features), cfg)
    skeleton = None  # FSDP: the model's structure, to hand back a plain model at the end
    if sharding.wanted(cfg, accelerator):
        model, skeleton = sharding.shard(model, accelerator)  # before the optimizer sees it
    groups = param_groups(model, cfg.weight_decay, cfg.lr, hooks.lr_scales)
    optimizer = torch.optim.AdamW(groups, lr=cfg.lr, fused=fused_adamw(groups))
    if hooks.lr_schedule is not None:
        scheduler = hooks.lr_schedule(optimizer, steps)
    else:
        scheduler = get_linear_schedule_with_warmup(optimizer, int(cfg.warmup * steps), steps)
    if skeleton is None:
        model, optimizer = accelerator.prepare(model, optimizer)
    else:
        optimizer = accelerator.prepare(optimizer)
    pause_sync = accelerator.no_sync if skeleton is None else sharding.no_sync
    state = TrainState(fingerprint=fingerprint)
    if training.resume:
        found = checkpoint.latest(run_dir)
        if found is None:
            log.warning("--resume: no checkpoint in %s; starting from the beginning", run_dir)
        else:
            state = checkpoint.load(found, accelerator, model, optimizer, scheduler, fingerprint)
            log.info("resumed from %s (step %d, epoch %d)", found.name, state.step, state.epoch + 1)
    if evaluator is not None:
        evaluator.resumed(state)
    elif cfg.eval_every:
        log.warning("train.eval_every: this run does not evaluate during training; ignored")

    progress = Progress(
        steps, state.step, state.examples, cfg.log_every, accelerator.is_main_process
    )
    model.train()
    deadline = time.monotonic() + 60 * cfg.max_minutes if cfg.max_minutes else math.inf
    stopped = False
    while state.step < steps and not stopped:
        if batch_plan is not None:
            batches = batch_plan(state.epoch)
        else:
            batches = training_batches(
                lengths, cfg.batch_size, cfg.seed, state.epoch, cfg.group_by_length
            )
        while state.batch_in_epoch < len(batches) and state.step < steps:
            index = state.batch_in_epoch
            global_batch = batches[index]
            # a global batch smaller than the processes (an epoch's last) leaves some without an
            # example: they run the batch's first one with weight 0, so that every process joins
            # the gradient's all-reduce and the batches and steps stay the one-process ones
            mine = global_batch[rank::world]
            weight = 1.0 if mine else 0.0
            mine = mine or global_batch[:1]
            batch = collate([features[i] for i in mine], pad_id, [labels[i] for i in mine])
            batch = {k: v.to(accelerator.device) for k, v in batch.items()}
            boundary = (index + 1) % cfg.grad_accum == 0 or index + 1 == len(batches)
            if on_step is not None:
                on_step(state.step, steps)
            # normalise by the global batch's labelled items, so every process's share of the
            # gradient adds up (DDP averages over processes) to the one-process gradient
            share = max(1, labelled([labels[i] for i in global_batch])) / world
            with pause_sync(model) if not boundary else nullcontext():
                with accelerator.autocast():
                    loss = loss_fn(model, batch) * weight / share
                accelerator.backward(loss / cfg.grad_accum)
            if world > 1:  # log the global batch's loss, not this process's share of it
                loss = accelerator.reduce(loss.detach(), reduction="mean")
            state.running_loss += loss.item()
            state.running_batches += 1
            state.batch_in_epoch += 1
            state.examples += len(global_batch)
            if not boundary:
                continue
            if cfg.max_grad_norm:
                accelerator.clip_grad_norm_(model.parameters(), cfg.max_grad_norm)
            optimizer.step()
            scheduler.step()
            optimizer.zero_grad(set_to_none=True)
            state.step += 1
            mean_loss = None
            if state.step % cfg.log_every == 0 or state.step == steps:
                mean_loss = state.running_loss / state.running_batches
                state.loss_history.append([state.step, mean_loss])
                state.running_loss, state.running_batches = 0.0, 0
            progress.update(state.step, state.examples, mean_loss)
            if on_log is not None and mean_loss is not None:
                lr = scheduler.get_last_lr()[0]
                on_log(
                    state.step, {"loss": mean_loss, "lr": lr, "examples_per_second": progress.rate}
                )
            evaluate = evaluator is not None and evaluator.due(state.step, steps)
            if evaluate and evaluator(model, state):  # True: early stopping
                stopped = True
                break
            if out_of_time(deadline, state, steps, accelerator):
                stopped = True
                break
            if cfg.checkpoint_every and state.step % cfg.checkpoint_every == 0:
                checkpoint.save(run_dir, accelerator, model, optimizer, scheduler, state)
        if state.batch_in_epoch >= len(batches):
            state.epoch += 1
            state.batch_in_epoch = 0
            if state.step < steps:
                checkpoint.save(run_dir, accelerator, model, optimizer, scheduler, state)
    progress.close()
    if evaluator is not None:
        if not state.eval_history or state.eval_history[-1][0] != state.step:
            evaluator(model, state)  # stopped by max_minutes between evaluations
        evaluator.restore_best(model, state)
    if skeleton is not None:
        model = sharding.unsharded(model, skeleton, accelerator)
    return model, state, progress.rate
