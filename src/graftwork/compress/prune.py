"""Structured pruning: remove a bundle's least important attention heads and FFN neurons.

Importance is measured on the bundle's training data with the training loss (cross-entropy
summed over labelled items). transformers 5 has no `head_mask`, so both scores come from "gates":
forward pre-hooks that multiply a module's input by a tensor of ones that requires grad.
- heads (Michel et al. 2019, "Are Sixteen Heads Really Better than One?"): |∂L/∂gate| of a gate
  on each head's slice of the context entering `attention.output.dense`, per example, summed
  over examples, then normalised per layer (L2) and ranked across all layers; every layer keeps
  at least one head.
- FFN neurons (first-order Taylor, Molchanov et al. 2017): |Σ_tokens activation × gradient| at
  the input of `output.dense` per example, summed over examples; this is the same gate gradient.
  Every layer loses the same number of neurons, so `config.intermediate_size` shrinks and the
  saved model is a genuinely smaller standard model.
A short recovery fine-tune with the ordinary training loop (`train.loop.fit`) follows.

How a pruned bundle stores its heads: a transformers config cannot express per-layer head
counts, so the saved weights keep every head's shape, with the pruned heads' query/key/value
rows (and biases) and `attention.output.dense` columns set to zero; such a head adds exactly
nothing, so plain `from_pretrained` gives the same predictions. `graftwork.json` lists them under
`pruning.pruned_heads`, and `apply_pruning` slices them out of a loaded model for the speed-up
(BERT's attention reshapes with `view(..., -1, head_size)`, so fewer rows mean fewer heads).
Written by hand: torch.nn.utils.prune masks weights but never shrinks them, and transformers 5
removed `prune_heads`.

Leaves out: architectures other than the BERT family (BERT, RoBERTa, ELECTRA, MiniLM, ...),
iterative pruning schedules, removing whole layers or embedding dimensions, distillation during
recovery, and shrinking the stored file for pruned heads (only FFN pruning makes it smaller).
"""

from __future__ import annotations

import logging
import math
import tempfile
import time
from pathlib import Path

import torch

from graftwork.backbones.surgery import find_layers, prune_ffn, prune_heads, standard_copy
from graftwork.bundle import write_bundle
from graftwork.config.recipe import load_recipe
from graftwork.data.batching import collate, inference_batches
from graftwork.data.readers import ReadResult, read_examples
from graftwork.data.sampling import subsample
from graftwork.errors import GraftError
from graftwork.inference.forward import evaluate_sets, torch_forward
from graftwork.methods import count_parameters
from graftwork.train.loop import fit, make_accelerator, summed_loss

log = logging.getLogger("graftwork")

FULL_FINETUNE_LR = 5e-5  # recovery rate when the bundle was trained with another method


# ---------------------------------------------------------------- importance and choice


def importance(model, batches) -> tuple[torch.Tensor, torch.Tensor]:
    """Head scores [layers, heads] and FFN neuron scores [layers, neurons] over `batches`
    (collated, with labels): per example |∂L/∂gate|, summed over examples."""
    blocks = find_layers(model)
    size = blocks[0].attention.self.attention_head_size
    n_heads = blocks[0].attention.self.query.out_features // size
    n_neurons = blocks[0].intermediate.dense.out_features
    shapes = {
        (b.attention.self.query.out_features, b.intermediate.dense.out_features) for b in blocks
    }
    if len(shapes) > 1:
        raise GraftError("importance needs an unpruned model (the same heads in every layer)")
    heads = torch.zeros(len(blocks), n_heads)
    neurons = torch.zeros(len(blocks), n_neurons)
    gates: dict[tuple[str, int], torch.Tensor] = {}

    def gate(key: tuple[str, int], units: int, unit_size: int):
        def hook(module, args):
            x = args[0]  # [batch, tokens, units * unit_size]
            g = torch.ones(x.shape[0], 1, units, 1, dtype=x.dtype, device=x.device)
            gates[key] = g.requires_grad_()
            return (x.reshape(*x.shape[:-1], units, unit_size).mul(g).reshape(x.shape), *args[1:])

        return hook

    handles = []
    for i, block in enumerate(blocks):
        hook = gate(("head", i), n_heads, size)
        handles.append(block.attention.output.dense.register_forward_pre_hook(hook))
        handles.append(block.output.dense.register_forward_pre_hook(gate(("ffn", i), n_neurons, 1)))
    was_training = model.training
    model.eval()  # no dropout: the scores are a property of the model, not of a random mask
    device = next(model.parameters()).device
    try:
        for batch in batches:
            gates.clear()
            with torch.enable_grad():
                loss = summed_loss(model, {k: v.to(device) for k, v in batch.items()})
                keys = list(gates)
                grads = torch.autograd.grad(loss, [gates[k] for k in keys])
            for (kind, i), grad in zip(keys, grads, strict=True):
                score = grad.abs().sum(dim=0).flatten().float().cpu()  # [units]
                (heads if kind == "head" else neurons)[i] += score
    finally:
        for handle in handles:
            handle.remove()
        model.train(was_training)
    return heads, neurons


def normalise_by_layer(scores: torch.Tensor) -> torch.Tensor:
    """Each layer's head scores divided by their L2 norm (Michel et al.'s global ranking)."""
    return scores / scores.norm(dim=1, keepdim=True).clamp_min(1e-20)


def choose_heads(scores: torch.Tensor, fraction: float) -> dict[int, list[int]]:
    """The `fraction` of heads with the lowest scores across all layers, keeping >= 1 per layer."""
    n_layers, n_heads = scores.shape
    wanted = round(fraction * n_layers * n_heads)
    possible = n_layers * (n_heads - 1)
    if wanted > possible:
        log.warning(
            "pruning %d of %d heads would empty a layer; pruning %d (one head kept per layer)",
            wanted,
            n_layers * n_heads,
            possible,
        )
        wanted = possible
    pruned: dict[int, list[int]] = {i: [] for i in range(n_layers)}
    count = 0
    for flat in torch.argsort(scores.flatten(), stable=True).tolist():
        if count == wanted:
            break
        layer, head = divmod(flat, n_heads)
        if len(pruned[layer]) < n_heads - 1:
            pruned[layer].append(head)
            count += 1
    return {i: sorted(h) for i, h in pruned.items()}


def choose_neurons(scores: torch.Tensor, fraction: float) -> list[torch.Tensor]:
    """Per layer, the indices (ascending) of the neurons kept: the same count in every layer."""
    n = scores.shape[1]
    keep = n - min(round(fraction * n), n - 1)
    return [torch.argsort(row, descending=True, stable=True)[:keep].sort().values for row in scores]


# ---------------------------------------------------------------- a bundle, end to end


def _check_fraction(name: str, value: float) -> None:
    if not (isinstance(value, (int, float)) and math.isfinite(value) and 0 <= value < 1):
        raise GraftError(
            f"{name} must be a fraction in [0, 1) (the share of {name} to remove); got {value!r}"
        )


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
            model, features, targets, cfg, accelerator, Path(work), pad_id, {}
        )
    model = accelerator.unwrap_model(prepared)
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
    heads: float,
    ffn: float,
    data: Path | None = None,
    recovery_epochs: float = 1.0,
    recovery_lr: float | None = None,
    max_examples: int | None = None,
    seed: int = 13,
) -> dict:
    """Prune `heads` and `ffn` (fractions) of a bundle's model, recover, write a bundle at `out`.

    Importance and recovery use the recipe's data.train (or `data`; `max_examples` takes a
    seeded sample). `recovery_epochs=0` skips recovery; `recovery_lr` defaults to the recipe's
    lr for full fine-tuning runs and to 5e-5 otherwise. Returns the report stored in the new
    manifest under "pruning", plus "bundle" and "metrics".
    """
    from graftwork.inference.predictor import Predictor

    _check_fraction("heads", heads)
    _check_fraction("ffn", ffn)
    if not (math.isfinite(recovery_epochs) and recovery_epochs >= 0):
        raise GraftError(f"recovery_epochs must be >= 0 (0 skips recovery); got {recovery_epochs}")
    if recovery_lr is not None and not recovery_lr > 0:
        raise GraftError(f"recovery_lr must be a positive learning rate; got {recovery_lr}")
    if max_examples is not None and max_examples < 1:
        raise GraftError(f"max_examples must be at least 1; got {max_examples}")
    bundle, out = Path(bundle), Path(out)
    if out.resolve() == bundle.resolve():
        raise GraftError(f"write the pruned bundle to a new folder, not over {bundle} itself")

    predictor = Predictor(bundle, backend="torch")
    manifest = predictor.manifest
    if manifest.get("pruning"):
        raise GraftError(
            f"{bundle} is already pruned; prune the original bundle again with larger fractions"
        )
    if manifest.get("method") == "adapter":
        raise GraftError(
            f"{bundle} was trained with bottleneck adapters on a frozen backbone; pruning would "
            "change the backbone the adapters were trained for. Prune a full or LoRA bundle."
        )
    model = predictor.model
    find_layers(model)  # refuse other architectures before reading any data
    recipe = load_recipe(manifest["recipe"])
    train_path = Path(data) if data is not None else recipe.data_path("train")
    if train_path is None or not train_path.is_file():
        raise GraftError(
            f"no training data to score importance and recover on "
            f"({train_path or 'the recipe names no data.train'}); pass data=FILE "
            "with labelled examples in the recipe's format"
        )
    examples = read_examples(train_path, recipe.task, recipe.data).examples
    if max_examples is not None:
        examples = subsample(examples, max_examples, seed)
    elif data is None:  # the same sample the bundle was trained on
        examples = subsample(examples, recipe.data.max_train_examples, recipe.train.seed)
    label2id = {label: i for i, label in predictor.id2label.items()}
    tokenizer, pad_id = predictor.tokenizer, predictor.tokenizer.pad_token_id
    features, targets = predictor.task.encode(
        tokenizer, examples, label2id, recipe.data.max_length, train_path
    )
    eval_sets = {}
    for split in ("eval", "test"):
        path = recipe.data_path(split)
        if path is not None and path.is_file():
            eval_sets[split] = read_examples(path, recipe.task, recipe.data)
        elif path is not None:
            log.warning("%s file %s not found; no %s metrics", split, path, split)
    cfg = recipe.train.model_copy(
        update={
            "epochs": recovery_epochs,
            "lr": recovery_lr
            or (recipe.train.lr if recipe.method.type == "full" else FULL_FINETUNE_LR),
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
    pruned_heads = choose_heads(normalise_by_layer(head_scores), heads)
    keep = choose_neurons(neuron_scores, ffn)
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
    if recovery_epochs > 0:
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
            "data": str(train_path),
            "seconds": importance_seconds,
        },
        "recovery": recovery,
        "source_bundle": str(bundle),
    }
    dropped = ("format", "files", "versions", "created", "artifacts", "metrics", "pruning")
    new_manifest = {k: v for k, v in manifest.items() if k not in dropped}
    new_manifest["pruning"] = pruning
    new_manifest["metrics"] = {**metrics, "parameters": params}

    def write(tmp: Path) -> None:
        standard_copy(model, pruned_heads).save_pretrained(str(tmp), safe_serialization=True)
        tokenizer.save_pretrained(str(tmp))

    write_bundle(out, write, new_manifest)
    log.info("pruned bundle: %s", out)
    return {"bundle": str(out), **pruning, "metrics": metrics}
