"""Few-shot classification: the SetFit recipe, and zero-shot from label descriptions.

`graft fewshot RECIPE` trains a text classifier from a few examples per label (8–64):
1. the sentence encoder (the backbone as a sentence-transformers model: its own pooling when
   the folder has one, e.g. MiniLM's mean pooling and normalisation, else mean pooling) is
   fine-tuned contrastively on pairs: for each training example, `fewshot.iterations` times,
   one pair with an example of the same label (target cosine 1) and one with an example of
   another label (target 0), sentence-transformers' `CosineSimilarityLoss` (SetFit, Tunstall
   et al. 2022);
2. a logistic-regression head (scikit-learn) is fitted on the tuned encoder's embeddings of the
   same examples.
With `fewshot.zero_shot` the run also scores the untrained encoder without any example: each
text goes to the label whose description ("This sentence is {label}.", or
`fewshot.descriptions`) is nearest in cosine.

Why a run of its own: the shared loop trains a transformers task model with the task's loss;
SetFit trains on pairs with another loss, then fits a head outside torch on pooled embeddings
(which no `AutoModelForSequenceClassification` head reads: theirs read [CLS] through the
pooler), and it has no answer for token tasks (NER). Its bundles are method `setfit`
(methods/setfit.py), which loads them and refuses the shared loop (runs/fewshot_bundle.py
writes them). `graft compare RECIPE --methods full,lora,fewshot` runs it as `graft fewshot` on
a recipe it derives from the training recipe (same examples; runs/compare.py), and
`benchmarks/fewshot.py` puts it beside full fine-tuning and LoRA over sizes and seeds.

Training examples are `data.train`, first sampled like `graft train` does
(`data.max_train_examples`, with `train.seed`), then `fewshot.per_class` of each label.
`train.max_minutes` stops the pair loop (the LR schedule is planned for the whole run, as in
the shared loop); the head is fitted after it.

The pair loop is written here (about 20 lines) rather than with `SentenceTransformerTrainer`:
that needs a `datasets.Dataset`, an output folder and tracker settings, and draws its own
sampling order; this loop draws pairs and order from `train.seed` alone. It updates with the
shared loop's fused AdamW where the parameters allow (`train.loop.fused_adamw`), as the HF
Trainer under setfit does.

Output (`runs/NAME/bundle`, written atomically): a standard classification bundle of method
`setfit` (methods/setfit.py: `graftwork.json`; the tuned encoder's weights, config.json naming
the labels, and tokenizer, which are also the sentence-transformers folder; the head in
`setfit-head.safetensors`), so `graft predict / eval / serve / export` and `graft info` take it.
Eval and test are scored through that bundle's model as `graft eval` scores it (a text longer
than `data.max_length` in windows, their logits averaged), so `graft eval` repeats the
figures; zero-shot reads the encoder as sentence-transformers does (truncated), and so does
`FewshotModel` (the encoder and head as numpy, kept for Python callers). `metrics.json` (and
the manifest's `metrics`) holds eval/test accuracy and macro-F1 of the trained model and of
zero-shot; `parameters` (trainable: the encoder's when it is tuned,
plus the head's; total: encoder and head); and under `train` the training time (pairs and
head), `examples_seen` (texts through the encoder in training: two per pair trained on, one
per example embedded for the head) and `examples_per_second` (that over the training time),
and the memory `machine.PeakMemory` saw during training (as `graft train` records it).

The pair loop checkpoints into `runs/NAME/checkpoints/` (`train.checkpoint`'s format, every
`train.checkpoint_every` steps, else each epoch); `graft fewshot RECIPE --resume` after a kill
continues from the last one to the same result (the pair order is a function of the seed and
the epoch; the torch RNG, optimizer and schedule are restored), zero-shot scores and the head
are computed again. The checkpoint is removed once the bundle is written.

Leaves out: sentence pairs as input, a
differentiable head trained end to end (SetFit's second option), and encoders with modules
beyond the transformer, pooling (mean, cls or max) and normalisation (a Dense layer).
"""

from __future__ import annotations

import logging
import os
import random
import time

import numpy as np
import torch
from pydantic import BaseModel, ConfigDict, Field

from graftwork import registry
from graftwork.backbones import load as backbones
from graftwork.backbones.quiet import quiet
from graftwork.bundle import atomic
from graftwork.config.recipe import RecipeBase, load_recipe
from graftwork.config.sections import DataConfig, TaskConfig
from graftwork.config.train import TrainConfig
from graftwork.data.readers import read_examples
from graftwork.data.sampling import split_part, subsample
from graftwork.data.windows import settings as window_settings
from graftwork.errors import DataError, RecipeError
from graftwork.inference.forward import evaluate_examples, torch_forward
from graftwork.machine import PeakMemory, describe
from graftwork.methods import count_parameters
from graftwork.runs import lock
from graftwork.runs.fewshot_bundle import FewshotModel, bundle_model, embed, save_bundle
from graftwork.runs.fewshot_train import contrastive, pairs
from graftwork.runs.lifecycle import prepare_run_dir, remove_leftovers, setup_logging, whole_run
from graftwork.train import checkpoint

log = logging.getLogger("graftwork")
# FewshotModel: runs/fewshot_bundle; pairs: runs/fewshot_train
__all__ = ["FewshotModel", "fewshot", "load_fewshot_recipe", "pairs"]


class FewshotConfig(BaseModel):
    model_config = ConfigDict(extra="forbid")

    per_class: int | None = Field(
        None, ge=1, description="Train on this many examples of each label (drawn with train.seed)."
    )
    iterations: int = Field(
        20, ge=1, description="Pairs per example and round: one same-label, one other-label."
    )
    contrastive: bool = Field(True, description="false: the head alone on the encoder as is.")
    C: float = Field(1.0, gt=0, description="Inverse L2 strength of the logistic head.")
    zero_shot: bool = Field(True, description="Also score the untrained encoder zero-shot.")
    template: str = Field("This sentence is {label}.", description="Label description.")
    descriptions: dict[str, str] = Field(
        default_factory=dict, description="label → its own description (beats the template)."
    )


class FewshotTrain(TrainConfig):
    batch_size: int = Field(16, ge=1)
    lr: float = Field(2e-5, gt=0)


class FewshotRecipe(RecipeBase):
    name: str = "fewshot"
    task: TaskConfig = TaskConfig()
    data: DataConfig = DataConfig()
    fewshot: FewshotConfig = FewshotConfig()
    train: FewshotTrain = FewshotTrain()


def load_fewshot_recipe(source, overrides: list[str] | None = None) -> FewshotRecipe:
    recipe = load_recipe(source, overrides, model=FewshotRecipe)
    if recipe.task.type != "classification" or recipe.task.text_pair is not None:
        raise RecipeError(
            f"recipe {recipe.name}: few-shot learning classifies single texts (task.type "
            f"classification, no text_pair); got {recipe.task.type}. For NER, fine-tune with "
            "graft train (a method such as full or lora)"
        )
    if recipe.data.train is None:
        raise RecipeError(f"recipe {recipe.name}: data.train is required; give a file path")
    return recipe


# ---------------------------------------------------------------- data


def per_class(examples: list[dict], n: int | None, seed: int) -> list[dict]:
    """`n` examples of each label, drawn with `seed`, in file order (None: all of them)."""
    if n is None:
        return examples
    by_label: dict[str, list[int]] = {}
    for i, example in enumerate(examples):
        by_label.setdefault(example["label"], []).append(i)
    short = {label: len(rows) for label, rows in by_label.items() if len(rows) < n}
    if short:
        raise DataError(
            f"fewshot.per_class is {n}, but label(s) {short} have fewer training examples; "
            "lower fewshot.per_class or add examples"
        )
    rng = random.Random(seed)
    keep = sorted(i for label in sorted(by_label) for i in rng.sample(by_label[label], n))
    return [examples[i] for i in keep]


# ---------------------------------------------------------------- model


def load_encoder(recipe: FewshotRecipe):
    """The backbone as a sentence-transformers model on the CPU (or the GPU when there is one)."""
    from sentence_transformers import SentenceTransformer

    folder = backbones.resolve(recipe.backbone)
    device = "cuda" if torch.cuda.is_available() else "cpu"
    with quiet():
        encoder = SentenceTransformer(str(folder), device=device)
    encoder.max_seq_length = recipe.data.max_length
    return encoder


def fit_head(embeddings: np.ndarray, labels: list[str], names: list[str], C: float, seed: int):
    """(coef, intercept) of a logistic regression on the embeddings (scikit-learn)."""
    from sklearn.linear_model import LogisticRegression

    head = LogisticRegression(C=C, max_iter=2000, random_state=seed)
    head.fit(embeddings, [names.index(label) for label in labels])
    return head.coef_, head.intercept_


def zero_shot_scores(encoder, texts: list[str], names: list[str], recipe: FewshotRecipe):
    """Cosine of each text to each label's description, (texts, labels)."""
    config = recipe.fewshot
    described = [config.descriptions.get(n, config.template.format(label=n)) for n in names]
    batch = recipe.train.eval_batch_size
    return embed(encoder, texts, batch) @ embed(encoder, described, batch).T


def scored(examples: list[dict], scores: np.ndarray, names: list[str]) -> dict:
    """The classification task's metrics (accuracy, macro-F1, confusion) of `scores`."""
    task = registry.task("classification")
    gold = [names.index(e["label"]) for e in examples]
    return task.evaluate(examples, None, list(scores), gold, dict(enumerate(names)))


# ---------------------------------------------------------------- the run


def _read(recipe: FewshotRecipe, split: str):
    """The split's ReadResult (examples and the path as shown), or None."""
    held = split == "eval" and recipe.data.holdout is not None  # no data.eval then
    raw = getattr(recipe.data, "train" if held else split)
    if raw is None:
        return None
    path = recipe.resolve_path(raw)
    result = read_examples(path, recipe.task, recipe.data, shown=recipe.show_path(raw))
    result.examples = split_part(result.examples, recipe.data, split)
    return result


@whole_run
def fewshot(
    recipe, overrides: list[str] | None = None, resume: bool = False, overwrite: bool = False
) -> dict:
    """Train (contrastive encoder, then the head), evaluate, write the bundle and metrics;
    `resume`: continue from the folder's last checkpoint (`overwrite`: discard it)."""
    recipe = load_fewshot_recipe(recipe, overrides)
    cfg, run_dir = recipe.train, recipe.run_dir
    lock.acquire(run_dir)
    setup_logging(run_dir)
    remove_leftovers(run_dir)
    prepare_run_dir(run_dir, resume, overwrite, main=True)
    torch.set_num_threads(cfg.threads or os.cpu_count() or 1)
    torch.manual_seed(cfg.seed)
    examples = subsample(_read(recipe, "train").examples, recipe.data.max_train_examples, cfg.seed)
    examples = per_class(examples, recipe.fewshot.per_class, cfg.seed)
    read = {s: found for s in ("eval", "test") if (found := _read(recipe, s)) is not None}
    evals = {s: found.examples for s, found in read.items()}
    names = registry.task("classification").label_set(examples, recipe.task.label_names)
    for split, rows in evals.items():
        unseen = sorted({e["label"] for e in rows} - set(names))
        if unseen:
            raise DataError(f"data.{split}: label(s) {unseen} are not in the training examples")
    texts, labels = [e["text"] for e in examples], [e["label"] for e in examples]
    log.info("%s: %d training examples, labels %s", recipe.name, len(examples), names)
    encoder = load_encoder(recipe)
    metrics: dict = {"labels": names, "train_examples": len(examples)}
    if recipe.fewshot.zero_shot:
        metrics["zero_shot"] = {}
        for split, rows in evals.items():
            scores = zero_shot_scores(encoder, [e["text"] for e in rows], names, recipe)
            metrics["zero_shot"][split] = scored(rows, scores, names)
    encoder_params = count_parameters(encoder)
    tuned: dict = {
        "loss_history": [],
        "steps": 0,
        "planned_steps": 0,
        "pairs": 0,
        "pairs_seen": 0,
    }
    started = time.perf_counter()
    with PeakMemory() as memory:
        if recipe.fewshot.contrastive:
            tuned = contrastive(encoder, texts, labels, recipe, resume)
        coef, intercept = fit_head(
            embed(encoder, texts, cfg.eval_batch_size), labels, names, recipe.fewshot.C, cfg.seed
        )
    seconds = time.perf_counter() - started
    model = bundle_model(encoder, coef, intercept)
    seen = 2 * tuned["pairs_seen"] + len(texts)
    metrics["train"] = {
        "examples": len(texts),
        "seconds": seconds,
        **tuned,
        "examples_seen": seen,
        "examples_per_second": seen / seconds if seconds > 0 else None,
        "memory": memory.as_dict(),
        "machine": describe(),
    }
    head_params = coef.size + intercept.size
    trainable = head_params + (encoder_params["trainable"] if recipe.fewshot.contrastive else 0)
    total = encoder_params["total"] + head_params
    metrics["parameters"] = {
        "trainable": trainable,
        "total": total,
        "trainable_pct": 100.0 * trainable / total,
        "head": head_params,
    }
    tokenizer, task = encoder.tokenizer, registry.task("classification")
    window, stride = window_settings(tokenizer, recipe.data.max_length)
    for split, found in read.items():  # as graft eval scores the bundle
        metrics[split] = evaluate_examples(
            torch_forward(model), tokenizer, task, found.examples, dict(enumerate(names)),
            window, cfg.eval_batch_size, found.shown, stride,
        )  # fmt: skip
        log.info("%s: accuracy %.4f", split, metrics[split]["accuracy"])
    with atomic.building(run_dir / "bundle") as tmp:
        save_bundle(tmp, encoder, model, names, recipe, metrics)
    atomic.write_json(run_dir / "metrics.json", metrics)
    checkpoint.remove_all(run_dir)  # the bundle is whole: nothing left to resume
    return metrics
