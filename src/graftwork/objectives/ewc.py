"""Continual learning with elastic weight consolidation (EWC, Kirkpatrick et al. 2017).

Task B starts from task A's encoder and is trained with the task loss plus
`λ/2 · Σ_i F_i (θ_i − θ*_i)²` over the encoder parameters the two models share: θ* are task
A's weights (the anchor) and F the diagonal empirical Fisher of task A, the mean over
`fisher_examples` of A's own training examples of the squared gradient of −log p(y|x) with the
gold label (A's model in eval mode, one example at a time; for token tasks the example's
labelled tokens are summed). Parameters that mattered to A move little, the rest learn B.

`previous` names task A's bundle. Its encoder initialises task B: the recipe's backbone
gives the architecture and tokenizer (it must be the backbone task A was trained from, or the
bundle itself) and a fresh head for B's labels, then the shared encoder weights are copied in
from the bundle. Task A's training data, labels and length limit are read from the bundle's
recipe. Loss scale: the loop divides the returned sum by the batch's labelled items, so the
penalty is added times that count and the objective is mean task loss + penalty, as in the
paper. `lambda: 0` is plain sequential fine-tuning from A's encoder (bit for bit; the Fisher is
then not computed), the baseline of a comparison.

`forgetting(previous, bundle)` measures the forgetting: task A's metrics on A's eval/test
files with A's own model (before) and with B's encoder under A's head (after).
`pipeline.train` writes them into metrics.json as `task_a`.

Choosing λ: the empirical Fisher of a trained model is small (MiniLM after SST-2: 1.8e-5 per
weight on average, about 400 summed), so useful λ are large. A start: λ/2 · Σ F (θ_B − θ_A)²
of a plain (λ 0) run should be about the task loss; the manifest records `fisher_mean` and
`penalty_last`. Measured, SST-2 → CoNLL-2003 on MiniLM (4,000 sentences, one seed), task A
from recipes/quickstart.yaml: λ 0 loses 32 points of SST-2 dev accuracy (0.859 → 0.536) at
CoNLL test F1 0.551; λ 1e4 loses 5.7 points at F1 0.492; λ 1e5 loses none at F1 0.352.
`benchmarks/ewc.py` (λ 0 and 1e4, its own task A): 33.9 points lost → 14.3, F1 0.584 → 0.521.

Leaves out: online EWC and multi-task Fisher accumulation over a chain of tasks (a chain
works, but only the newest previous task is anchored), the true (model-sampled) Fisher,
penalties on adapters or LoRA weights (EWC here needs method full), and task heads shared
between tasks (A keeps its own head; B gets a new one).
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field

from graftwork.bundle import read_manifest
from graftwork.data.encode import IGNORE
from graftwork.data.readers import read_examples
from graftwork.errors import BundleError, GraftError, RecipeError
from graftwork.methods.base import refuse
from graftwork.objectives.base import Hooks
from graftwork.tasks.base import headline

log = logging.getLogger("graftwork")


class EwcConfig(BaseModel):
    model_config = ConfigDict(
        extra="forbid", validate_by_name=True, validate_by_alias=True, serialize_by_alias=True
    )
    type: Literal["ewc"] = "ewc"
    previous: str = Field(
        description="Task A's bundle (runs/NAME/bundle of a full or LoRA run); its encoder "
        "starts task B and is the anchor θ*. Relative paths: recipe folder, then current one."
    )
    strength: float = Field(
        alias="lambda",
        ge=0,
        le=1e12,
        description="λ in λ/2 Σ F_i (θ_i − θ*_i)²; 0 = plain sequential fine-tuning (baseline).",
    )
    fisher_examples: int = Field(
        500, ge=1, le=1_000_000, description="Task A training examples (seeded) for the Fisher."
    )


Config = EwcConfig  # the registry reads each method's and objective's config here


# ---------------------------------------------------------------- the penalty


def penalty(terms: list[tuple], strength: float):
    """λ/2 · Σ F (θ − θ*)² over (parameter θ, anchor θ*, Fisher F) triples."""
    total = sum((fisher * (param - anchor).pow(2)).sum() for param, anchor, fisher in terms)
    return 0.5 * strength * total


def fisher_diagonal(model, features, labels, pad_id: int, names: list[str], loss) -> dict:
    """Mean over examples of the squared gradient of −log p(gold | x), per named parameter
    (`loss`: the task's, `tasks.base.Task.loss`)."""
    import torch

    from graftwork.data.batching import collate  # torch

    params = dict(model.named_parameters())
    chosen = [params[n] for n in names]
    fisher = {n: torch.zeros_like(p, dtype=torch.float32) for n, p in params.items() if n in names}
    model.eval()
    for feature, label in zip(features, labels, strict=True):
        batch = collate([feature], pad_id, [label])
        batch = {k: v.to(chosen[0].device) for k, v in batch.items()}
        grads = torch.autograd.grad(loss(model, batch), chosen, allow_unused=True)
        for name, grad in zip(names, grads, strict=True):
            if grad is not None:
                fisher[name] += grad.float().pow(2)
    for value in fisher.values():
        value /= max(1, len(features))
    return fisher


# ---------------------------------------------------------------- task A


def previous_bundle(recipe, config: EwcConfig) -> tuple[Path, dict]:
    """Task A's bundle folder and manifest, checked to be one task B can continue from."""
    path = recipe.resolve_path(config.previous)
    if not path.is_dir():
        raise GraftError(
            f"objective.previous: {path} does not exist; train task A first (graft train "
            "A.yaml) and give the bundle it wrote (runs/NAME/bundle)"
        )
    manifest = read_manifest(path)
    refuse(manifest.get("method"), "ewc_previous", path, RecipeError)
    same = manifest.get("backbone") == recipe.backbone.name
    if not same and Path(recipe.backbone.name).resolve() != path.resolve():
        raise RecipeError(
            f"objective.previous: {path} was trained from backbone '{manifest.get('backbone')}' "
            f"but this recipe names '{recipe.backbone.name}'; task B continues from task A's "
            f"encoder, so set backbone: {manifest.get('backbone')}"
        )
    return path, manifest


def shared_parameters(model, previous_model, where: Path) -> list[tuple]:
    """(name, parameter of `model`) for every encoder parameter both models hold, same shape."""
    prefix = f"{model.base_model_prefix}."
    theirs = dict(previous_model.named_parameters())
    shared = []
    for name, param in model.named_parameters():
        if not name.startswith(prefix) or name not in theirs:
            continue
        if theirs[name].shape != param.shape:
            raise BundleError(
                f"objective.previous: {where} has {name} of shape {tuple(theirs[name].shape)}, "
                f"this model {tuple(param.shape)}; task A's encoder must be the backbone's "
                "architecture (a pruned or distilled bundle is not)"
            )
        shared.append((name, param))
    if not shared:
        raise BundleError(
            f"objective.previous: {where} shares no encoder parameters with "
            f"{type(model).__name__} ({prefix}*); was task A trained from this backbone?"
        )
    return shared


def training_sample(predictor, n: int, seed: int):
    """Up to `n` of task A's own training examples (seeded), encoded with A's label map."""
    from graftwork.config.recipe import load_recipe  # registry: the schema imports this module
    from graftwork.data.sampling import subsample, train_part  # torch

    recipe_a = load_recipe(predictor.manifest["recipe"])
    path = recipe_a.data_path("train")
    shown = recipe_a.show_path(recipe_a.data.train) if path is not None else None
    if path is None or not path.is_file():
        raise GraftError(
            f"objective ewc: task A's training data ({shown}, from the recipe in "
            f"{predictor.path}) is not there; the Fisher is computed on it"
        )
    examples = read_examples(path, recipe_a.task, recipe_a.data, shown=shown).examples
    examples = train_part(examples, recipe_a.data)
    examples = subsample(examples, recipe_a.data.max_train_examples, recipe_a.train.seed)
    examples = subsample(examples, n, seed)
    label2id = {label: i for i, label in predictor.id2label.items()}
    features, labels = predictor.task.encode(
        predictor.tokenizer, examples, label2id, predictor.max_length, shown
    )
    return features, labels


def forgetting(previous: Path, bundle: Path, batch_size: int = 64) -> dict:
    """Task A's metrics with its own model (before) and with task B's encoder (after)."""
    import torch
    from safetensors.torch import load_file

    from graftwork.config.recipe import load_recipe  # registry: the schema imports this module
    from graftwork.inference.forward import evaluate_sets, torch_forward  # torch
    from graftwork.inference.predictor import Predictor  # torch

    a = Predictor(previous, backend="torch")
    recipe_a = load_recipe(a.manifest["recipe"])
    paths = {s: p for s in ("eval", "test") if (p := recipe_a.data_path(s)) is not None}
    if not paths:
        raise GraftError(f"task A's recipe (in {previous}) names no eval or test file to score")
    shown = {s: recipe_a.show_path(getattr(recipe_a.data, s)) for s in paths}
    sets = {
        s: read_examples(p, a.task_config, a.data_config, shown=shown[s]) for s, p in paths.items()
    }

    def scores(model) -> dict:
        forward = torch_forward(model)
        return evaluate_sets(
            forward, a.tokenizer, a.task, sets, a.id2label, a.max_length, batch_size
        )

    model = a.model
    before = scores(model)
    weights: dict = {}
    for file in sorted(Path(bundle).glob("model*.safetensors")):
        weights.update(load_file(str(file)))
    prefix = f"{model.base_model_prefix}."
    copied = 0
    with torch.no_grad():
        for name, param in model.named_parameters():
            if name.startswith(prefix) and name in weights and weights[name].shape == param.shape:
                param.copy_(weights[name])
                copied += 1
    if not copied:
        raise BundleError(f"{bundle} holds no encoder weights that fit task A's model")
    after = scores(model)
    key = headline(a.task_config.type)
    for split in sets:
        log.info(
            "task A (%s) %s %s: %.4f with its own encoder, %.4f with this one",
            a.manifest.get("name"),
            split,
            key,
            before[split][key],
            after[split][key],
        )
    return {
        "bundle": str(previous),
        "metric": key,
        "before": before,
        "after": after,
        "forgetting": {s: before[s][key] - after[s][key] for s in sets},
    }


# ---------------------------------------------------------------- the objective


def prepare(recipe, model, splits):
    """Start `model`'s encoder from task A's, compute A's Fisher; the loop's hooks."""
    import torch

    from graftwork.inference.predictor import Predictor  # torch

    config: EwcConfig = recipe.objective
    refuse(recipe.method.type, "ewc", recipe.name, RecipeError)
    path, manifest = previous_bundle(recipe, config)
    task_a = Predictor(path, backend="torch")
    previous_model = task_a.model
    shared = shared_parameters(model, previous_model, path)
    theirs = dict(previous_model.named_parameters())
    with torch.no_grad():
        for name, param in shared:
            param.copy_(theirs[name])
    info = {
        "type": "ewc",
        "previous": str(path),
        "previous_name": manifest.get("name"),
        "previous_task": manifest.get("task"),
        "lambda": config.strength,
        "penalised_parameters": sum(p.numel() for _, p in shared),
    }
    terms: list[tuple] = []  # (parameter θ, anchor θ*, Fisher F) tensors
    if config.strength > 0:
        features, labels = training_sample(task_a, config.fisher_examples, recipe.train.seed)
        names = [name for name, _ in shared]
        pad_id = task_a.tokenizer.pad_token_id
        fisher = fisher_diagonal(previous_model, features, labels, pad_id, names, task_a.task.loss)
        terms = [(p, theirs[n].detach(), fisher[n]) for n, p in shared]
        values = torch.cat([f.reshape(-1) for f in fisher.values()])
        info.update(
            fisher_examples=len(features),
            fisher_mean=float(values.mean()),
            fisher_max=float(values.max()),
        )
        log.info(
            "ewc: Fisher of %s from %d of its training examples (mean %.3g); λ %g",
            path,
            len(features),
            info["fisher_mean"],
            config.strength,
        )
    del task_a, previous_model

    def loss_fn(train_model, batch: dict):
        labels = batch["labels"]
        count = int((labels != IGNORE).sum()) if labels.dim() > 1 else labels.shape[0]
        loss = splits.task.loss(train_model, batch)
        if not terms:
            return loss
        if terms[0][1].device != terms[0][0].device:  # the accelerator moved the model
            terms[:] = [(p, a.to(p.device), f.to(p.device)) for p, a, f in terms]
        extra = penalty(terms, config.strength)
        info["penalty_last"] = float(extra.detach())
        return loss + extra * count

    def after(bundle: Path) -> dict:
        return {"task_a": forgetting(path, bundle, recipe.train.eval_batch_size)}

    return Hooks(loss_fn=loss_fn, manifest={"objective": info}, after=after)
