"""Multi-task learning: one shared encoder, one head per task, trained on interleaved batches.

A recipe's `multitask:` section names the tasks, each with its own `task` and `data` sections
(the recipe's top-level `task`/`data` are then unused and must stay empty). Every task gets the
transformers model class of its type; all of them share one encoder module (the same tensors),
so the optimizer, checkpoints and the trainable count see each shared weight once. Each batch
holds one task's examples; which task comes next is drawn with probability ∝ n_t^(1/T) for
n_t training examples (`sampling`: `proportional` T=1, `temperature` T=`temperature`, `equal`
T=∞), from a generator seeded by (seed, epoch), so resume rebuilds the same sequence. An epoch
is as many batches as all tasks' batches together; a task drawn more often than it has batches
starts another pass over its examples.

The bundle stores the shared encoder once: its root is the first task's model (a standard
Hugging Face folder, as for a single task: the encoder and the first head), `tasks/NAME/` holds
every other task's config, head weights alone (`head.safetensors`), tokenizer and manifest, and
the root manifest lists all tasks with their metrics (the layout: `graftwork.bundle.tasks`).
`graftwork.load(bundle, task=NAME)` (CLI `--task`) picks one; `graft serve BUNDLE` serves every
task, named `BUNDLE-NAME-TASK`, all on one encoder in memory (`inference.multitask`).

Leaves out: methods other than `full` (LoRA/adapters per task would need per-task adapter
switching inside one step), multi-process training (the loss routes through task models
directly, outside DDP).
"""

from __future__ import annotations

import logging
import math
from functools import partial
from pathlib import Path

import torch
from torch import nn

from graftwork.backbones import load as backbones
from graftwork.bundle import write_manifest
from graftwork.bundle.tasks import save_head
from graftwork.config.recipe import MultiTaskConfig
from graftwork.errors import GraftError, RecipeError
from graftwork.methods import count_parameters
from graftwork.methods.base import Finisher, refuse
from graftwork.runs.stages import (
    Splits,
    evaluate_splits,
    model_manifest,
    read_splits,
    train_and_save,
)
from graftwork.train.hooks import Hooks

log = logging.getLogger("graftwork")

TASKS_DIR = "tasks"


def task_recipes(recipe) -> dict:
    """Task name → a single-task recipe (the shared sections with this task's task/data)."""
    if recipe.data.train or recipe.data.eval or recipe.data.test:
        raise RecipeError(
            f"recipe {recipe.name}: with a multitask section, give each task's files under "
            "multitask.tasks.NAME.data and leave the top-level data section empty"
        )
    refuse(recipe.method.type, "multitask", recipe.name, RecipeError)
    for entry in recipe.multitask.tasks.values():
        refuse(recipe.method.type, "multitask", recipe.name, RecipeError, task=entry.task.type)
    return {
        name: recipe.model_copy(update={"task": entry.task, "data": entry.data, "multitask": None})
        for name, entry in recipe.multitask.tasks.items()
    }


def sampling_weights(sizes: list[int], config: MultiTaskConfig) -> list[float]:
    """p_t ∝ n_t^(1/T), normalised."""
    if config.sampling == "equal":
        raw = [1.0 for _ in sizes]
    else:
        power = 1.0 if config.sampling == "proportional" else 1.0 / config.temperature
        raw = [n**power for n in sizes]
    total = sum(raw)
    return [r / total for r in raw]


def batch_plan(task_lengths: list[list[int]], cfg, config: MultiTaskConfig):
    """`plan(epoch)`: the epoch's single-task batches of global example indices."""
    from graftwork.data.batching import training_batches  # torch

    offsets = [0]
    for lengths in task_lengths:
        offsets.append(offsets[-1] + len(lengths))
    weights = torch.tensor(sampling_weights([len(x) for x in task_lengths], config))
    counts = [math.ceil(len(x) / cfg.batch_size) for x in task_lengths]

    def plan(epoch: int) -> list[list[int]]:
        generator = torch.Generator().manual_seed(cfg.seed * 7_919 + epoch)
        order = torch.multinomial(weights, sum(counts), replacement=True, generator=generator)
        queues: list[list[list[int]]] = [[] for _ in task_lengths]
        passes = [0 for _ in task_lengths]
        batches = []
        for t in order.tolist():
            if not queues[t]:  # another pass over task t's examples, seeded by the pass
                seed = cfg.seed + 104_729 * (t + 1)
                queues[t] = training_batches(
                    task_lengths[t], cfg.batch_size, seed, epoch * 1_000 + passes[t]
                )
                passes[t] += 1
            batches.append([offsets[t] + i for i in queues[t].pop(0)])
        return batches

    return plan


class MultiTaskModel(nn.Module):
    """Task name → transformers model; all share one encoder module.

    The shared encoder is the fullest of theirs (most parameters): transformers builds a
    token-classification BERT without the pooler a sentence head reads, so with NER listed
    first its encoder would leave the sentence head nothing to pool. All were loaded from the
    same weights, so the fullest one holds everything any head needs."""

    def __init__(self, models: dict[str, nn.Module]):
        super().__init__()
        self.heads = nn.ModuleDict(models)
        prefix = next(iter(models.values())).base_model_prefix
        encoders = [getattr(model, prefix) for model in models.values()]
        shared = max(encoders, key=lambda e: count_parameters(e)["total"])
        for model in models.values():
            setattr(model, prefix, shared)


def train(recipe, accelerator, resume: bool = False, on_eval=None):
    """Train every task of `recipe.multitask` on one encoder; write the bundle (see module).
    With `train.eval_every`, the first task's eval split ranks the evaluations (`on_eval`)."""
    if accelerator.num_processes > 1:
        raise GraftError(f"recipe {recipe.name}: multitask training runs in one process")
    subs = task_recipes(recipe)
    folder = backbones.resolve(recipe.backbone)
    tokenizer = backbones.load_tokenizer(folder, recipe.backbone)
    splits = {name: read_splits(sub, tokenizer) for name, sub in subs.items()}
    names = list(subs)
    models = {}
    for name in names:
        torch.manual_seed(recipe.train.seed)
        models[name] = backbones.load_model(
            folder, recipe.backbone, splits[name].task.model_class(), splits[name].labels, tokenizer
        )
    model = MultiTaskModel(models)
    model.requires_grad_(True)
    features, targets = [], []
    for t, name in enumerate(names):
        features += [{**f, "task": t} for f in splits[name].features]
        targets += splits[name].targets
    weights = sampling_weights([len(splits[n].features) for n in names], recipe.multitask)
    shares = zip(names, weights, strict=True)
    log.info(
        "multitask: %s",
        ", ".join(f"{n} {len(splits[n].features)} examples (p={w:.3f})" for n, w in shares),
    )
    plan = batch_plan(
        [[len(f["input_ids"]) for f in splits[n].features] for n in names],
        recipe.train,
        recipe.multitask,
    )

    def loss_fn(container, batch):
        task = names[int(batch.pop("task"))]
        return splits[task].task.loss(container.heads[task], batch)

    def evaluate(container) -> dict:
        per_task = {n: evaluate_splits(container.heads[n], splits[n], subs[n]) for n in names}
        return {**per_task[names[0]], "tasks": per_task}

    first = splits[names[0]]
    combined = Splits(
        first.task, tokenizer, first.labels, first.train, features, targets, first.evals
    )
    manifest = {
        **model_manifest(subs[names[0]], first.labels),  # the root is the first task
        "encoder": ".",  # and holds the encoder every task shares (bundle.tasks)
        "multitask": {
            "tasks": {
                n: {"type": subs[n].task.type, "path": "." if i == 0 else f"{TASKS_DIR}/{n}"}
                for i, n in enumerate(names)
            },
            "sampling": recipe.multitask.sampling,
            "weights": dict(zip(names, weights, strict=True)),
            "recipe": recipe.model_dump(mode="json"),
        },
    }
    hooks = Hooks(loss_fn=loss_fn, batch_plan=plan, evaluate=evaluate, manifest=manifest)
    finisher = Finisher(partial(write_tasks, names, splits, subs))
    return train_and_save(recipe, accelerator, combined, model, finisher, hooks, resume, on_eval)


def write_tasks(names, splits, subs, container, out_dir: Path):
    """The bundle writer for `train_and_save`: other tasks under tasks/ (each its head alone),
    the first at the root (the whole model: the shared encoder and its head)."""
    for name in names[1:]:
        folder = Path(out_dir) / TASKS_DIR / name
        save_head(container.heads[name], folder)
        splits[name].tokenizer.save_pretrained(str(folder))
        sub = subs[name]
        manifest = model_manifest(sub, splits[name].labels, name=f"{sub.name}-{name}")
        write_manifest(folder, {**manifest, "multitask_of": "../..", "encoder": "../.."})
    return container.heads[names[0]]
