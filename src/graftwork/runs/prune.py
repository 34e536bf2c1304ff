"""The pruning run: read a bundle's training data, remove its least important attention heads
and FFN neurons, recover with a short fine-tune, write a new bundle.

What to remove is chosen in `compress/importance.py` (gradient importance of gates on each
head and neuron), and cut in `backbones/surgery.py`; the recovery fine-tune is the ordinary
training loop (`train.loop.fit`). The settings are a `PruneConfig` (the recipe's
`compress.prune` section, or the same keys from `graft prune`'s flags), validated there and
nowhere else.

How a pruned bundle stores its heads: a transformers config cannot express per-layer head
counts, so the saved weights keep every head's shape, with the pruned heads' query/key/value
rows (and biases) and attention output columns set to zero; such a head adds exactly nothing,
so plain `from_pretrained` gives the same predictions. `graftwork.json` lists them under
`pruning.pruned_heads`, and `apply_pruning` slices them out of a loaded model for the speed-up
(BERT's attention reshapes with `view(..., -1, head_size)`, so fewer rows mean fewer heads).
Written by hand: torch.nn.utils.prune masks weights but never shrinks them, and transformers 5
removed `prune_heads`.

Leaves out: architectures other than the BERT family (BERT, RoBERTa, ELECTRA, MiniLM, ...),
distillation during recovery, and shrinking the stored file for pruned heads (only FFN pruning
makes it smaller).
"""

from __future__ import annotations

import logging
import tempfile
import time
from pathlib import Path

import torch

from graftwork.backbones.surgery import prunable_layers, prune_ffn, prune_heads, standard_copy
from graftwork.bundle import write_bundle
from graftwork.compress.importance import (
    choose_heads,
    choose_neurons,
    importance,
    normalise_by_layer,
)
from graftwork.config.compress import PRUNE, PruneConfig
from graftwork.config.recipe import load_recipe
from graftwork.data.batching import collate, inference_batches
from graftwork.data.readers import ReadResult, read_examples
from graftwork.data.sampling import held_part, subsample, train_part
from graftwork.errors import GraftError
from graftwork.inference.forward import evaluate_sets, torch_forward
from graftwork.inference.predictor import Predictor
from graftwork.methods import count_parameters
from graftwork.methods.base import refuse
from graftwork.train.hooks import Training
from graftwork.train.loop import fit, make_accelerator

log = logging.getLogger("graftwork")

FULL_FINETUNE_LR = 5e-5  # recovery rate when the bundle was trained with another method


def _evaluate(model, predictor, eval_sets: dict[str, ReadResult], batch_size: int) -> dict:
    return evaluate_sets(
        torch_forward(model),
        predictor.tokenizer,
        predictor.task,
        eval_sets,
        predictor.id2label,
        predictor.max_length,
        batch_size,
    )


def _recover(model, features, targets, cfg, pad_id: int):
    """Fine-tune the pruned model with the ordinary loop; returns (model, summary)."""
    accelerator = make_accelerator(cfg)
    torch.manual_seed(cfg.seed)
    started = time.perf_counter()
    with tempfile.TemporaryDirectory(prefix="graftwork-prune-") as work:
        prepared, state, rate = fit(
            model, features, targets, pad_id, accelerator, Training(cfg, Path(work))
        )
    model = accelerator.unwrap_model(prepared, keep_fp32_wrapper=False)
    summary = {
        "epochs": cfg.epochs,
        "lr": cfg.lr,
        "steps": state.step,
        "examples_per_second": rate,
        "seconds": time.perf_counter() - started,
        "loss_history": state.loss_history,
    }
    return model, summary


def prune_bundle(
    bundle: Path,
    out: Path,
    heads: float = PRUNE.heads,
    ffn: float = PRUNE.ffn,
    data: Path | None = None,
    recovery_epochs: float = PRUNE.recovery_epochs,
    recovery_lr: float | None = PRUNE.recovery_lr,
    max_examples: int | None = PRUNE.max_examples,
    seed: int = 13,
) -> dict:
    """Prune `heads` and `ffn` (fractions) of a bundle's model, recover, write a bundle at `out`.

    Importance and recovery use the recipe's data.train (or `data`; `max_examples` takes a
    seeded sample). `recovery_epochs=0` skips recovery; `recovery_lr` defaults to the recipe's
    lr for full fine-tuning runs and to 5e-5 otherwise. The settings are checked as the
    recipe's `compress.prune` section, whose defaults they are (`config.compress.PRUNE`).
    Returns the report stored in the new manifest under "pruning", plus "bundle" and "metrics".
    """
    settings = load_recipe(
        {
            "heads": heads,
            "ffn": ffn,
            "recovery_epochs": recovery_epochs,
            "recovery_lr": recovery_lr,
            "max_examples": max_examples,
        },
        model=PruneConfig,
    )
    bundle, out = Path(bundle), Path(out)
    if out.resolve() == bundle.resolve():
        raise GraftError(f"write the pruned bundle to a new folder, not over {bundle} itself")

    predictor = Predictor(bundle, backend="torch")
    manifest = predictor.manifest
    if manifest.pruning:
        raise GraftError(
            f"{bundle} is already pruned; prune the original bundle again with larger fractions"
        )
    refuse(manifest.method, "prune", bundle, task=manifest.task)
    model = predictor.model
    prunable_layers(model)  # refuse other architectures before reading any data
    recipe = load_recipe(manifest.recipe)
    train_path = Path(data) if data is not None else recipe.data_path("train")
    if data is not None:
        train_shown = str(data)
    elif recipe.data.train is not None:
        train_shown = recipe.show_path(recipe.data.train)
    else:
        train_shown = "the recipe names no data.train"
    if train_path is None or not train_path.is_file():
        raise GraftError(
            f"no training data to score importance and recover on ({train_shown}); pass "
            "data=FILE with labelled examples in the recipe's format"
        )
    examples = read_examples(train_path, recipe.task, recipe.data, shown=train_shown).examples
    if data is None:  # the recipe's training file: not the part it holds out for evaluation
        examples = train_part(examples, recipe.data)
    if settings.max_examples is not None:
        examples = subsample(examples, settings.max_examples, seed)
    elif data is None:  # the same sample the bundle was trained on
        examples = subsample(examples, recipe.data.max_train_examples, recipe.train.seed)
    label2id = {label: i for i, label in predictor.id2label.items()}
    tokenizer, pad_id = predictor.tokenizer, predictor.tokenizer.pad_token_id
    features, targets = predictor.task.encode(
        tokenizer, examples, label2id, recipe.data.max_length, train_shown
    )
    eval_sets = {}
    for split in ("eval", "test"):
        path = recipe.data_path(split)
        if path is None:
            continue
        shown = recipe.show_path(getattr(recipe.data, split))
        if path.is_file():
            eval_sets[split] = read_examples(path, recipe.task, recipe.data, shown=shown)
        else:
            log.warning("%s file %s not found; no %s metrics", split, shown, split)
    if data is None and recipe.data.holdout is not None:  # then the recipe has no data.eval
        full = read_examples(train_path, recipe.task, recipe.data, shown=train_shown)
        eval_sets["eval"] = ReadResult(
            full.path, held_part(full.examples, recipe.data), shown=f"{train_shown} (held out)"
        )
    default_lr = recipe.train.lr if recipe.method.type == "full" else FULL_FINETUNE_LR
    cfg = recipe.train.model_copy(
        update={
            "epochs": settings.recovery_epochs,
            "lr": settings.recovery_lr or default_lr,
            "seed": seed,
            "checkpoint_every": 0,
        }
    )

    metrics_before = _evaluate(model, predictor, eval_sets, cfg.eval_batch_size)
    params_before = count_parameters(model)["total"]
    started = time.perf_counter()
    lengths = [len(f["input_ids"]) for f in features]
    batches = (
        collate([features[i] for i in idx], pad_id, [targets[i] for i in idx])
        for idx in inference_batches(lengths, cfg.eval_batch_size)
    )
    head_scores, neuron_scores = importance(model, batches)
    pruned_heads = choose_heads(normalise_by_layer(head_scores), settings.heads)
    keep = choose_neurons(neuron_scores, settings.ffn)
    importance_seconds = time.perf_counter() - started
    intermediate_before = model.config.intermediate_size
    prune_heads(model, pruned_heads)
    prune_ffn(model, keep)
    n_pruned = sum(len(h) for h in pruned_heads.values())
    log.info(
        "pruned %d of %d heads and %d of %d FFN neurons per layer (importance: %d examples, %.0fs)",
        n_pruned,
        head_scores.numel(),
        intermediate_before - len(keep[0]),
        intermediate_before,
        len(features),
        importance_seconds,
    )
    recovery = {"epochs": 0, "steps": 0}
    if settings.recovery_epochs > 0:
        model, recovery = _recover(model, features, targets, cfg, pad_id)
    metrics = _evaluate(model, predictor, eval_sets, cfg.eval_batch_size)
    params = count_parameters(model)
    pruning = {
        "heads": heads,
        "ffn": ffn,
        "pruned_heads": {str(i): h for i, h in pruned_heads.items()},
        "heads_pruned": n_pruned,
        "heads_total": head_scores.numel(),
        "intermediate_size": model.config.intermediate_size,
        "intermediate_size_before": intermediate_before,
        "parameters_before": params_before,
        "parameters_after": params["total"],
        "metrics_before": metrics_before,
        "importance": {
            "examples": len(features),
            "data": train_shown,
            "seconds": importance_seconds,
        },
        "recovery": recovery,
        "source_bundle": str(bundle),
    }
    dropped = ("format", "files", "versions", "created", "artifacts", "metrics", "pruning")
    # a multi-task bundle's root or task folder prunes into a standalone bundle of its one task
    # (the whole model is written): its shared-encoder keys would send loads elsewhere
    dropped += ("multitask", "encoder", "multitask_of")
    if manifest.multitask is not None or manifest.encoder is not None:
        log.info("the pruned bundle holds the %s task alone, a standalone model", manifest.task)
    new_manifest = {k: v for k, v in manifest.dump().items() if k not in dropped}
    new_manifest["pruning"] = pruning
    new_manifest["metrics"] = {**metrics, "parameters": params}

    def write(tmp: Path) -> None:
        standard_copy(model, pruned_heads).save_pretrained(str(tmp), safe_serialization=True)
        tokenizer.save_pretrained(str(tmp))

    write_bundle(out, write, new_manifest)
    log.info("pruned bundle: %s", out)
    return {"bundle": str(out), **pruning, "metrics": metrics}
