"""Continued (domain-adaptive) masked-LM pretraining: raw domain text in, a backbone folder out.

`graft pretrain RECIPE` reads raw text and masks it (`corpus.py`), optionally extends the
vocabulary with domain terms (`vocab.py`), trains the backbone as a masked LM with
`train.loop.fit`, the loop fine-tuning uses (checkpoints, exact resume, progress), and writes a
standard Hugging Face folder (`runs/NAME/bundle`: `AutoModelForMaskedLM` and `AutoModel` load
it, the tokenizer is saved beside it) that a recipe fine-tunes from (`backbone: runs/NAME/bundle`).

The MLM head. Backbones packaged for embeddings (MiniLM) ship without one: the model is loaded
with `AutoModelForMaskedLM`, which initialises the missing head (`cls.predictions.transform.*`
and the output bias) and ties its decoder to the input word embeddings (the decoder weight IS
the embedding tensor). The backbone's pooler, which an MLM does not use, is copied into the
output so a classifier fine-tuned from it starts from the same pooler as one fine-tuned from the
original. Masks come from the train seed: `mlm.masking: static` (BERT's, the default) draws them
once, up front, and leaves out sequences without a masked token; `dynamic` (RoBERTa's) draws a
new mask each epoch (`corpus.DynamicMasks`, refilled by the loop's batch plan at the start of
every epoch, from (seed, epoch) alone, so resume and a second run with the seed are exact).

Perplexity is exp(mean cross-entropy over the masked tokens) of the held-out text, with one
fixed mask (seed `EVAL_MASK_SEED`, the same 80/10/10 corruption as training, as Hugging Face's
`run_mlm` does) so "before" and "after" score the same positions. Three numbers are reported:
`before` (the freshly initialised head: huge, and it says nothing about the encoder),
`before_head_warmup` (after `mlm.head_warmup_steps` steps of `fit` that train only the head at
a constant `mlm.head_warmup_lr`, encoder and embeddings frozen: what the original encoder can do
with a fitted head, the fairer baseline; the MLM training then continues from this head) and
`after`. The warm-up baseline is only as good as the head's fit: `benchmarks/pretrain.py` also
trains the head alone for as many steps as the adapted model's head got, so a gain cannot be the
head's alone. With a vocab section, all three use the extended tokenizer (perplexities under
different tokenizers are not comparable); the vocabulary's effect is measured as tokens per word
on the held-out text.

Leaves out: data-parallel runs (`--nproc`), and MLM heads other
than the BERT (`cls`) and RoBERTa (`lm_head`) families' (other encoders train through their
full logits and get no head warm-up).
"""

from __future__ import annotations

import logging
import math
import tempfile
import time
from contextlib import nullcontext
from pathlib import Path
from typing import Any, Literal

import torch
from pydantic import BaseModel, ConfigDict, Field

from graftwork.backbones import load as backbones
from graftwork.bundle import write_bundle
from graftwork.config.recipe import BackboneConfig, RecipeBase, TrainConfig, load_recipe
from graftwork.data.batching import collate, inference_batches, training_batches
from graftwork.data.encode import IGNORE
from graftwork.data.sampling import subsample
from graftwork.errors import BackboneError, DataError, GraftError
from graftwork.machine import describe
from graftwork.runs.corpus import DynamicMasks, PretrainData, masked_sequences, read_corpus
from graftwork.runs.lifecycle import start, whole_run, write_json
from graftwork.runs.stages import RunResult
from graftwork.runs.vocab import VocabConfig, extend, mine_terms, read_terms, tokens_per_word
from graftwork.track.tracker import recipe_record
from graftwork.train import checkpoint
from graftwork.train.hooks import Hooks, Training
from graftwork.train.loop import fit, labelled, make_accelerator, summed_cross_entropy, summed_loss

log = logging.getLogger("graftwork")

EVAL_MASK_SEED = 0  # the held-out mask; fixed, so runs with different train seeds compare
HEADS = ("cls", "lm_head")  # the MLM head's attribute: BERT family, RoBERTa / XLM-R family


class _Section(BaseModel):
    model_config = ConfigDict(extra="forbid", protected_namespaces=())


class MlmConfig(_Section):
    mask_ratio: float = Field(0.15, gt=0, lt=1, description="Fraction of words (tokens) masked.")
    whole_word: bool = Field(True, description="Mask all pieces of a word together.")
    masking: Literal["static", "dynamic"] = Field(
        "static", description="static: one mask for the run (BERT); dynamic: a new one each epoch."
    )
    head_warmup_steps: int = Field(
        100, ge=0, description="Head-only steps before the baseline perplexity (0: none)."
    )
    head_warmup_lr: float = Field(1e-3, gt=0)


class PretrainTrainConfig(TrainConfig):
    epochs: float = Field(1.0, ge=0, description="0: no MLM training (vocabulary only).")


class PretrainRecipe(RecipeBase):
    name: str = "pretrain"
    data: PretrainData
    mlm: MlmConfig = MlmConfig()
    vocab: VocabConfig | None = None
    train: PretrainTrainConfig = PretrainTrainConfig()


def load_pretrain_recipe(source, overrides: list[str] | None = None) -> PretrainRecipe:
    return load_recipe(source, overrides, model=PretrainRecipe)


# ---------------------------------------------------------------- text


def masked_set(tokenizer, documents: list[str], recipe: PretrainRecipe, seed: int):
    """`documents` as masked sequences, with the recipe's length and masking."""
    mlm = recipe.mlm
    return masked_sequences(
        tokenizer, documents, recipe.data.max_length, mlm.mask_ratio, mlm.whole_word, seed
    )


def training_masks(tokenizer, documents: list[str], recipe: PretrainRecipe):
    """(features, labels, batch_plan) to train on: static masks and the loop's own batches, or
    dynamic masks that the batch plan redraws in place at the start of each epoch."""
    mlm, cfg = recipe.mlm, recipe.train
    if mlm.masking == "static":
        return (*masked_set(tokenizer, documents, recipe, cfg.seed), None)
    masks = DynamicMasks(
        tokenizer, documents, recipe.data.max_length, mlm.mask_ratio, mlm.whole_word, cfg.seed
    )
    lengths = [len(f["input_ids"]) for f in masks.features]  # masking keeps them

    def plan(epoch: int) -> list[list[int]]:
        masks.for_epoch(epoch)
        return training_batches(lengths, cfg.batch_size, cfg.seed, epoch, cfg.group_by_length)

    return masks.features, masks.labels, plan


# ---------------------------------------------------------------- model


def load_mlm_model(folder: Path, config: BackboneConfig):
    """The backbone as a masked LM; a missing head is initialised, its decoder tied."""
    from transformers import AutoModelForMaskedLM

    try:
        model, info = AutoModelForMaskedLM.from_pretrained(
            str(folder),
            use_safetensors=not config.allow_pickle,
            trust_remote_code=config.trust_remote_code,
            output_loading_info=True,
        )
    except Exception as exc:
        raise BackboneError(
            f"backbone {config.name}: cannot load it as a masked LM ({exc}); continued "
            "pretraining needs an encoder with a masked-LM architecture (BERT, RoBERTa, …)"
        ) from None
    if info.get("missing_keys"):
        log.info("MLM head newly initialised: %s", ", ".join(sorted(info["missing_keys"])))
    return model


def mlm_head(model) -> torch.nn.Module | None:
    head = next((getattr(model, name) for name in HEADS if hasattr(model, name)), None)
    return head if isinstance(head, torch.nn.Module) else None


def mlm_loss(model, batch: dict, frozen_encoder: bool = False) -> torch.Tensor:
    """Cross-entropy summed over the masked tokens; the vocabulary projection runs on those only
    (it costs as much per token as the whole MiniLM encoder). `frozen_encoder`: no autograd
    through the encoder (the head warm-up)."""
    head = mlm_head(model)
    if head is None:
        return summed_loss(model, batch)
    labels = batch.pop("labels")
    picked = labels != IGNORE  # (batch, seq)
    with torch.no_grad() if frozen_encoder else nullcontext():
        hidden = model.base_model(**batch).last_hidden_state  # (batch, seq, hidden)
    logits = head(hidden[picked])  # (masked, vocab)
    return summed_cross_entropy(logits, labels[picked])


def perplexity(model, features, labels, pad_id: int, batch_size: int, device) -> dict:
    """exp(mean cross-entropy over the masked tokens), in eval mode."""
    model.eval()
    total = 0.0
    with torch.no_grad():
        for rows in inference_batches([len(f["input_ids"]) for f in features], batch_size):
            batch = collate([features[i] for i in rows], pad_id, [labels[i] for i in rows])
            total += mlm_loss(model, {k: v.to(device) for k, v in batch.items()}).item()
    count = labelled(labels)
    return {"perplexity": math.exp(total / count), "loss": total / count, "masked_tokens": count}


def warm_head(model, features, labels, mlm: MlmConfig, cfg: TrainConfig, pad_id: int) -> None:
    """Train only the MLM head (not the tied embeddings) for mlm.head_warmup_steps steps at a
    constant mlm.head_warmup_lr, with the training loop; the encoder frozen, without dropout."""
    head = mlm_head(model)
    if head is None:
        log.warning("no known MLM head on %s; skipping the head warm-up", type(model).__name__)
        return
    tied = model.get_input_embeddings().weight
    trains = {id(p) for p in head.parameters() if p is not tied}
    before = {name: p.requires_grad for name, p in model.named_parameters()}
    batches = math.ceil(len(features) / cfg.batch_size)
    warm = cfg.model_copy(
        update={
            "epochs": (mlm.head_warmup_steps - 0.5) / batches,  # fit rounds up: exactly the steps
            "lr": mlm.head_warmup_lr,
            "weight_decay": 0.0,
            "grad_accum": 1,
            "max_grad_norm": None,
            "checkpoint_every": 0,
            "max_minutes": None,
        }
    )

    def head_loss(model, batch: dict) -> torch.Tensor:
        model.eval()  # the encoder is frozen: no dropout (the loop sets train mode)
        return mlm_loss(model, batch, frozen_encoder=True)

    def constant(optimizer, steps: int):
        return torch.optim.lr_scheduler.LambdaLR(optimizer, lambda step: 1.0)

    for param in model.parameters():
        param.requires_grad_(id(param) in trains)
    accelerator = make_accelerator(warm)
    try:
        with tempfile.TemporaryDirectory(prefix="graftwork-head-") as work:
            hooks = Hooks(loss_fn=head_loss, lr_schedule=constant)
            training = Training(warm, Path(work))
            prepared, _, _ = fit(model, features, labels, pad_id, accelerator, training, hooks)
        accelerator.unwrap_model(prepared, keep_fp32_wrapper=False)  # the next fit wraps again
    finally:
        for name, param in model.named_parameters():
            param.requires_grad_(before[name])
        model.zero_grad(set_to_none=True)


def _carry_pooler(source: Path, out: Path, prefix: str) -> None:
    """Copy the backbone's pooler (an MLM has none) into the output's weights."""
    from safetensors import safe_open
    from safetensors.torch import load_file, save_file

    src, dst = source / "model.safetensors", out / "model.safetensors"
    if not (src.is_file() and dst.is_file()):
        return
    with safe_open(str(src), "pt") as fh:
        names = [k for k in fh.keys() if k.startswith(("pooler.", f"{prefix}.pooler."))]  # noqa: SIM118
        extra = {
            k if k.startswith(f"{prefix}.") else f"{prefix}.{k}": fh.get_tensor(k) for k in names
        }
    if extra:
        tensors = load_file(str(dst))
        save_file({**tensors, **extra}, str(dst), metadata={"format": "pt"})


# ---------------------------------------------------------------- the run


# recipe parts a checkpoint must agree with before resuming from it
FINGERPRINT = ("backbone", "data", "mlm", "vocab")


def _terms(recipe: PretrainRecipe, tokenizer, documents: list[str]) -> list[str]:
    vocab = recipe.vocab
    terms = read_terms(recipe.resolve_path(vocab.terms)) if vocab.terms else []
    if vocab.mine is not None:
        mined = mine_terms(tokenizer, documents, vocab.mine)
        log.info(
            "vocab: mined %d frequent word(s) split into ≥ %d pieces",
            len(mined),
            vocab.mine.min_pieces,
        )
        terms += mined
    return terms


@whole_run  # the run folder (its lock and its tracking record) until it returns
def pretrain(
    recipe: PretrainRecipe | str | Path | dict,
    overrides: list[str] | None = None,
    resume: bool = False,
    overwrite: bool = False,
) -> RunResult:
    """Extend the vocabulary (optional), MLM-train, measure, and write the backbone folder."""
    recipe = load_pretrain_recipe(recipe, overrides)
    recipe, accelerator = start(recipe, None, resume, overwrite)
    if accelerator.num_processes > 1:
        raise GraftError("graft pretrain runs in one process; launch it without torchrun/--nproc")
    cfg, run_dir, device = recipe.train, recipe.run_dir, accelerator.device
    folder = backbones.resolve(recipe.backbone)
    tokenizer = backbones.load_tokenizer(folder, recipe.backbone)
    if tokenizer.mask_token_id is None:
        raise BackboneError(
            f"backbone {recipe.backbone.name}: its tokenizer has no mask token; masked-LM "
            "pretraining needs an encoder tokenizer (BERT, RoBERTa, …)"
        )
    train_docs, eval_docs = read_corpus(recipe.data, recipe.resolve_path, cfg.seed)
    log.info("%s: %d documents, %d held out", recipe.name, len(train_docs), len(eval_docs))
    model = load_mlm_model(folder, recipe.backbone)

    per_word = {"before": tokens_per_word(tokenizer, eval_docs) if eval_docs else None}
    added = extend(model, tokenizer, _terms(recipe, tokenizer, train_docs)) if recipe.vocab else []
    per_word["after"] = tokens_per_word(tokenizer, eval_docs) if eval_docs else None
    if eval_docs and recipe.vocab:
        log.info("tokens per held-out word: %.4f → %.4f", per_word["before"], per_word["after"])

    docs = subsample(train_docs, recipe.data.max_documents, cfg.seed)
    features, labels, batch_plan = training_masks(tokenizer, docs, recipe)
    if not features and cfg.epochs > 0:
        raise DataError(
            f"{recipe.data.train}: no sequence got a masked token; give more text or raise "
            "mlm.mask_ratio"
        )
    held_out = masked_set(tokenizer, eval_docs, recipe, EVAL_MASK_SEED) if eval_docs else ([], [])
    pad_id = tokenizer.pad_token_id
    model.to(device)

    def measure(label: str) -> float | None:
        if not held_out[0]:
            return None
        result = perplexity(model, *held_out, pad_id, cfg.eval_batch_size, device)
        log.info("held-out perplexity %s: %.2f", label, result["perplexity"])
        return result["perplexity"]

    ppl = {"before": measure("before (new head)")}
    if recipe.mlm.head_warmup_steps and features:
        torch.manual_seed(cfg.seed)
        warm_head(model, features, labels, recipe.mlm, cfg, pad_id)
        ppl["before_head_warmup"] = measure("after the head warm-up")
    metrics: dict[str, Any] = {}
    if cfg.epochs > 0:
        log.info(
            "masked-LM training on %d sequences (%d masked tokens)", len(features), labelled(labels)
        )
        started = time.perf_counter()
        torch.manual_seed(cfg.seed)
        training = Training(cfg, run_dir, checkpoint.fingerprint(recipe, FINGERPRINT), resume)
        hooks = Hooks(loss_fn=mlm_loss, batch_plan=batch_plan)
        prepared, state, rate = fit(model, features, labels, pad_id, accelerator, training, hooks)
        model = accelerator.unwrap_model(prepared, keep_fp32_wrapper=False)
        ppl["after"] = measure("after")
        metrics["train"] = {
            "documents": len(docs),
            "sequences": len(features),
            "masked_tokens": labelled(labels),
            "steps": state.step,
            "epochs": cfg.epochs,
            "examples_per_second": rate,
            "seconds": time.perf_counter() - started,
            "loss_history": state.loss_history,
            "machine": describe(),
        }
    metrics = {
        "perplexity": ppl | {"masked_tokens": labelled(held_out[1])},
        "tokens_per_word": per_word,
        "vocab": {"added": len(added), "terms": added},
        "mask_ratio": recipe.mlm.mask_ratio,
        "whole_word": recipe.mlm.whole_word,
        "masking": recipe.mlm.masking,
        "documents": {"train": len(train_docs), "eval": len(eval_docs)},
        **metrics,
    }
    bundle_dir = run_dir / "bundle"
    manifest = {
        "name": recipe.name,
        "task": "mlm",
        "backbone": recipe.backbone.name,
        "recipe": recipe_record(recipe),  # as written, URI credentials hidden
        "mask_ratio": recipe.mlm.mask_ratio,
        "vocab_added": added,
        "metrics": {"perplexity": ppl, "tokens_per_word": per_word},
    }

    def write(tmp: Path) -> None:
        model.save_pretrained(str(tmp), safe_serialization=True)
        tokenizer.save_pretrained(str(tmp))
        _carry_pooler(folder, tmp, model.base_model_prefix)

    write_bundle(bundle_dir, write, manifest)
    write_json(run_dir / "metrics.json", metrics)
    checkpoint.remove_all(run_dir)
    log.info("backbone folder: %s", bundle_dir)
    return RunResult(recipe, run_dir, bundle_dir, metrics)
