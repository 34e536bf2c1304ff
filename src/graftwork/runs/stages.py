"""The stages a training run is made of, shared by every run that trains a task model.

`read_splits` reads and encodes train/eval/test (`Splits`); `train_and_save` fits a model with
`train.loop.fit`, evaluates it on every labelled split (`evaluate_splits`), and writes the
bundle (its manifest from `model_manifest`) and metrics.json; a `RunResult` says where. The
single-task fine-tuning run (`runs.finetune`), multi-task learning (`runs.multitask`) and
distillation (`runs.distill`) are these stages with their own model, loss and bundle writer.

Leaves out: starting a run (its folder, log, lock and record: `runs.lifecycle`) and building
the model (each run above does that its own way).
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass, field, replace
from pathlib import Path

import torch

from graftwork import registry, track
from graftwork.bundle import write_bundle
from graftwork.config.recipe import Recipe
from graftwork.data.encode import label_ids
from graftwork.data.labels import check_training_labels
from graftwork.data.readers import ReadResult, read_examples
from graftwork.data.sampling import split_part, subsample
from graftwork.errors import GraftError
from graftwork.inference.forward import evaluate_sets, task_forward
from graftwork.machine import PeakMemory, describe
from graftwork.methods import count_parameters
from graftwork.methods.base import Finisher
from graftwork.runs.lifecycle import write_json
from graftwork.tasks.base import summary
from graftwork.track.tracker import recipe_record
from graftwork.train import checkpoint, evaluation
from graftwork.train.hooks import Hooks, Training
from graftwork.train.loop import fit, total_steps

log = logging.getLogger("graftwork")

# recipe parts a checkpoint must agree with before resuming from it
FINGERPRINT = ("backbone", "task", "data", "method", "objective")


@dataclass
class RunResult:
    recipe: Recipe
    run_dir: Path
    bundle: Path
    metrics: dict = field(default_factory=dict)


def _read(recipe: Recipe, split: str, require: bool = False) -> ReadResult | None:
    """The split's examples; with `data.holdout`, the training file's kept part as train and
    its held-out part as eval."""
    held = split == "eval" and recipe.data.holdout is not None  # no data.eval then
    path = recipe.data_path("train" if held else split)
    if path is None:
        if require:
            raise GraftError(f"recipe {recipe.name}: data.{split} is required; give a file path")
        return None
    shown = recipe.show_path(getattr(recipe.data, "train" if held else split))
    result = read_examples(path, recipe.task, recipe.data, shown=shown)
    result.examples = split_part(result.examples, recipe.data, split)
    if held:
        result.shown = f"{shown} (held out: data.holdout {recipe.data.holdout})"
    if result.skipped:
        log.warning(
            "%s: skipped %d bad row(s); first: %s", shown, len(result.skipped), result.skipped[0]
        )
    if result.repaired:
        log.info("%s: repaired %d tag(s) to IOB2 (data.iob: repair)", shown, result.repaired)
    return result


@dataclass
class Splits:
    """Everything read and encoded for a run."""

    task: object
    tokenizer: object
    labels: list[str]
    train: ReadResult
    features: list[dict]
    targets: list
    evals: dict[str, ReadResult]


def read_splits(
    recipe: Recipe, tokenizer, labels: list[str] | None = None, extra: list[dict] | None = None
) -> Splits:
    """Read and encode train/eval/test; labels come from training data unless given."""
    task = registry.task(recipe.task.type)
    train_data = _read(recipe, "train", require=True)
    evals = {s: r for s in ("eval", "test") if (r := _read(recipe, s)) is not None}
    examples = subsample(train_data.examples, recipe.data.max_train_examples, recipe.train.seed)
    examples = examples + (extra or [])
    if not labels:
        labels = task.label_set(examples, recipe.task.label_names)
        if task.LABEL_KEY:  # an empty key: targets are texts, no label vocabulary (seq2seq)
            check_training_labels(labels, recipe.task.label_names, train_data.shown)
    label2id = {label: i for i, label in enumerate(labels)}
    features, targets = task.encode(
        tokenizer, examples, label2id, recipe.data.max_length, train_data.shown
    )
    for result in evals.values():  # fail on unseen labels now, not after training
        label_ids(result.examples, task.LABEL_KEY, label2id, result.shown)
    log.info(
        "%s: %d training examples (%d labels) from %s",
        recipe.name,
        len(features),
        len(labels),
        train_data.shown,
    )
    return Splits(task, tokenizer, labels, train_data, features, targets, evals)


def train_and_save(
    recipe: Recipe,
    accelerator,
    splits: Splits,
    model,
    finisher: Finisher,
    hooks: Hooks | None = None,
    resume: bool = False,
    on_eval=None,
) -> RunResult:
    """Fit `model`, evaluate on every labelled split, write the bundle and metrics.json.

    `hooks` (`train.hooks.Hooks`) go to the loop; their `evaluate(model) -> metrics` replaces
    the evaluation of `splits` (multi-task) and their `manifest` is added to the bundle's. With
    `train.eval_every`, the eval split is evaluated during training (`train.evaluation`) and
    `on_eval(step, metrics)` is called after each of those evaluations (main process)."""
    hooks = hooks or Hooks()
    evaluate = hooks.evaluate
    cfg, run_dir, main = recipe.train, recipe.run_dir, accelerator.is_main_process
    tracker = track.current(run_dir)  # records nothing unless the recipe asks for tracking
    params = count_parameters(model)
    log.info(
        "trainable parameters: %s of %s (%.2f%%)",
        f"{params['trainable']:,}",
        f"{params['total']:,}",
        params["trainable_pct"],
    )
    started = time.perf_counter()
    torch.manual_seed(cfg.seed)
    with PeakMemory() as memory:
        training = Training(cfg, run_dir, checkpoint.fingerprint(recipe, FINGERPRINT), resume)
        loop_hooks = replace(
            hooks,
            loss_fn=hooks.loss_fn or splits.task.loss,
            evaluator=evaluator(recipe, accelerator, splits, evaluate, tracker.chain(on_eval)),
            on_log=tracker.on_log if tracker.active else None,
        )
        pad_id = splits.tokenizer.pad_token_id
        prepared, state, rate = fit(
            model, splits.features, splits.targets, pad_id, accelerator, training, loop_hooks
        )
    train_seconds = time.perf_counter() - started
    # without the mixed-precision forward `prepare` put on it: the metrics recorded below are
    # then those of the FP32 weights the bundle holds and graft eval/predict/serve run
    model = accelerator.unwrap_model(prepared, keep_fp32_wrapper=False)
    accelerator.wait_for_everyone()
    bundle_dir = run_dir / "bundle"
    metrics: dict = {}
    if main:
        metrics = evaluate(model) if evaluate else evaluate_splits(model, splits, recipe)
        metrics["train"] = {
            "examples": len(splits.features),
            "examples_seen": state.examples,
            "steps": state.step,
            "planned_steps": total_steps(len(splits.features), cfg),
            "epochs": cfg.epochs,
            "examples_per_second": rate,
            "seconds": train_seconds,
            "loss_history": state.loss_history,
            **evaluation.record(cfg, state),
            "skipped_rows": {
                s: len(r.skipped) for s, r in {"train": splits.train, **splits.evals}.items()
            },
            "repaired_tags": {
                s: r.repaired for s, r in {"train": splits.train, **splits.evals}.items()
            },
            "processes": accelerator.num_processes,
            "memory": memory.as_dict(),
            "machine": describe(),
        }
        metrics["parameters"] = params
        manifest = {
            **model_manifest(recipe, splits.labels),
            "metrics": {k: v for k, v in metrics.items() if k != "train"},
            **(hooks.manifest or {}),
        }

        def write(tmp: Path) -> None:
            final = finisher.finish(model, tmp)
            final.save_pretrained(str(tmp), safe_serialization=True)
            splits.tokenizer.save_pretrained(str(tmp))

        write_bundle(bundle_dir, write, manifest, needed=lambda: checkpoint.tensor_bytes(model))
        write_json(run_dir / "metrics.json", metrics)
        checkpoint.remove_all(run_dir)
        tracker.model(bundle_dir)
        log.info("bundle: %s", bundle_dir)
    accelerator.wait_for_everyone()
    return RunResult(recipe, run_dir, bundle_dir, metrics)


def evaluator(recipe: Recipe, accelerator, splits: Splits, evaluate=None, on_eval=None):
    """The `train.evaluation.Evaluator` of a run with `train.eval_every` (None without); a
    multi-task run's `evaluate` gives the first task's eval split."""
    only_eval = replace(splits, evals={k: v for k, v in splits.evals.items() if k == "eval"})

    def eval_split(model) -> dict:
        return (evaluate(model) if evaluate else evaluate_splits(model, only_eval, recipe))["eval"]

    head = splits.task.HEADLINE
    return evaluation.build(recipe, accelerator, head, only_eval.evals, eval_split, on_eval)


def model_manifest(recipe: Recipe, labels: list[str], name: str | None = None) -> dict:
    """What a bundle's graftwork.json says about the model it holds (and how it was made)."""
    return {
        "name": name or recipe.name,
        "task": recipe.task.type,
        "labels": labels,
        "method": recipe.method.type,
        "backbone": recipe.backbone.name,
        "recipe": recipe_record(recipe),  # as written, URI credentials hidden
    }


def evaluate_splits(model, splits: Splits, recipe: Recipe) -> dict:
    metrics = evaluate_sets(
        task_forward(splits.task, model, splits.tokenizer, getattr(recipe, "generation", None)),
        splits.tokenizer,
        splits.task,
        splits.evals,
        dict(enumerate(splits.labels)),
        recipe.data.max_length,
        recipe.train.eval_batch_size,
    )
    for split, values in metrics.items():
        log.info("%s: %s", split, summary(recipe.task.type, values))
    return metrics
