"""The pair loop of `graft fewshot` (SetFit's first stage), with checkpoints and exact resume.

`pairs` draws SetFit's training pairs; `contrastive` tunes the sentence encoder on them with
sentence-transformers' `CosineSimilarityLoss`, checkpointing in `train.checkpoint`'s format
(one process: `ONE_PROCESS` stands in for the accelerator), and continues from the last
checkpoint when resumed. runs/fewshot.py describes the run around it.

Leaves out: data-parallel training (one process), and resuming a stop by `train.max_minutes`
(a run stopped so is finished).
"""

from __future__ import annotations

import logging
import math
import random
import time

import torch

from graftwork.errors import DataError
from graftwork.train import checkpoint
from graftwork.train.loop import fused_adamw

log = logging.getLogger("graftwork")


def pairs(labels: list[str], rounds: int, seed: int) -> list[tuple[int, int, float]]:
    """SetFit's pairs: per round and example, (i, same-label j ≠ i, 1.0) and (i, other, 0.0)."""
    rng = random.Random(seed)
    by_label: dict[str, list[int]] = {}
    for i, label in enumerate(labels):
        by_label.setdefault(label, []).append(i)
    out = []
    for _ in range(rounds):
        for i, label in enumerate(labels):
            same = [j for j in by_label[label] if j != i]
            if same:
                out.append((i, rng.choice(same), 1.0))
            other = [j for j in range(len(labels)) if labels[j] != label]
            if other:
                out.append((i, rng.choice(other), 0.0))
    return out


def contrastive(encoder, texts: list[str], labels: list[str], recipe, resume: bool = False) -> dict:
    """Fine-tune `encoder` on SetFit pairs (until `train.max_minutes`, if set), checkpointing
    every `train.checkpoint_every` steps (0: each epoch) into the run folder; with `resume`,
    continue from its last checkpoint exactly. Returns {"loss_history": [[step, loss], …],
    "steps", "planned_steps", "pairs" (drawn for one pass), "pairs_seen"}."""
    from sentence_transformers import losses
    from transformers import get_linear_schedule_with_warmup

    cfg, run_dir = recipe.train, recipe.run_dir
    todo = pairs(labels, recipe.fewshot.iterations, cfg.seed)
    if not todo:
        raise DataError("no training pairs: few-shot training needs two labels or more")
    loss_fn = losses.CosineSimilarityLoss(encoder)
    groups = [{"params": [p for p in encoder.parameters() if p.requires_grad]}]
    optimizer = torch.optim.AdamW(
        groups, lr=cfg.lr, weight_decay=cfg.weight_decay, fused=fused_adamw(groups)
    )
    batches = math.ceil(len(todo) / cfg.batch_size)
    steps = max(1, math.ceil(cfg.epochs * batches))
    scheduler = get_linear_schedule_with_warmup(optimizer, int(cfg.warmup * steps), steps)
    state = checkpoint.TrainState(fingerprint=checkpoint.fingerprint(recipe, FINGERPRINT))
    found = checkpoint.latest(run_dir) if resume else None
    if resume and found is None:
        log.warning("--resume: no checkpoint in %s; starting from the beginning", run_dir)
    if found is not None:
        state = checkpoint.load(
            found, ONE_PROCESS, encoder, optimizer, scheduler, state.fingerprint
        )
        log.info("resumed from %s (step %d)", found.name, state.step)
    rng, device = random.Random(cfg.seed), encoder.device
    for _ in range(state.epoch):  # the pair order of the epochs done: a function of the seed
        rng.shuffle(todo[:])
    deadline = time.monotonic() + 60 * cfg.max_minutes if cfg.max_minutes else math.inf
    encoder.train()
    history = state.loss_history
    while state.step < steps and time.monotonic() <= deadline:
        order = todo[:]
        rng.shuffle(order)
        for index, start in enumerate(range(0, len(order), cfg.batch_size)):
            if index < state.batch_in_epoch:  # done before the checkpoint resumed from
                continue
            if state.step >= steps:
                break
            if time.monotonic() > deadline:
                log.info("train.max_minutes reached: stopped at step %d of %d", state.step, steps)
                break
            batch = order[start : start + cfg.batch_size]
            sides = [encoder.preprocess([texts[pair[k]] for pair in batch]) for k in (0, 1)]
            sides = [{k: _to(v, device) for k, v in side.items()} for side in sides]
            target = torch.tensor([pair[2] for pair in batch], device=device)
            loss = loss_fn(sides, target)  # MSE(cosine(u, v), target)
            loss.backward()
            if cfg.max_grad_norm:
                torch.nn.utils.clip_grad_norm_(encoder.parameters(), cfg.max_grad_norm)
            optimizer.step()
            scheduler.step()
            optimizer.zero_grad(set_to_none=True)
            state.step += 1
            state.examples += len(batch)
            state.running_loss += loss.item()
            state.running_batches += 1
            state.batch_in_epoch = index + 1
            if state.step % cfg.log_every == 0 or state.step == steps:
                history.append([state.step, state.running_loss / state.running_batches])
                log.info("step %d/%d  pair loss %.4f", state.step, steps, history[-1][1])
                state.running_loss, state.running_batches = 0.0, 0
            every = cfg.checkpoint_every
            if every and state.step % every == 0 and state.step < steps:
                checkpoint.save(run_dir, ONE_PROCESS, encoder, optimizer, scheduler, state)
        else:  # the epoch ran to its end
            state.epoch, state.batch_in_epoch = state.epoch + 1, 0
            if not cfg.checkpoint_every and state.step < steps:
                checkpoint.save(run_dir, ONE_PROCESS, encoder, optimizer, scheduler, state)
            continue
        break
    if state.running_batches:  # stopped by train.max_minutes between two log lines
        history.append([state.step, state.running_loss / state.running_batches])
    encoder.eval()
    return {
        "loss_history": history,
        "steps": state.step,
        "planned_steps": steps,
        "pairs": len(todo),
        "pairs_seen": state.examples,
    }


class _OneProcess:
    """What `train.checkpoint` asks of an accelerator, for this one-process loop."""

    is_main_process, process_index = True, 0

    def wait_for_everyone(self) -> None:
        return None

    def unwrap_model(self, model):
        return model


ONE_PROCESS = _OneProcess()
# the recipe sections a checkpoint must agree with to resume (and train's FINGERPRINT_TRAIN)
FINGERPRINT = ("backbone", "task", "data", "fewshot")


def _to(value, device):
    """A tensor on `device`; other tokenizer outputs (sentence-transformers adds some) as is."""
    return value.to(device) if isinstance(value, torch.Tensor) else value
