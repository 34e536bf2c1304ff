"""Continued (domain-adaptive) masked-LM pretraining: raw domain text in, a backbone folder out.

`graft pretrain RECIPE` reads raw text (a .txt file with one document a line, a folder of .txt
files, or the text column of a TSV/CSV/JSONL file), optionally extends the vocabulary with domain
terms (`vocab.py`), trains the backbone as a masked LM with `train.loop.fit`, and writes a
standard Hugging Face folder (`runs/NAME/bundle`: `AutoModelForMaskedLM` and `AutoModel` load it,
the tokenizer is saved beside it) that an ordinary recipe fine-tunes from with
`backbone: runs/NAME/bundle`.

The MLM head. Backbones packaged for embeddings (MiniLM) ship without one: the model is loaded
with `AutoModelForMaskedLM`, which initialises the missing head (`cls.predictions.transform.*`
and the output bias) and ties its decoder to the input word embeddings (the decoder weight IS the
embedding tensor). The backbone's pooler, which an MLM does not use, is copied into the output so
a classifier fine-tuned from it starts from the same pooler as one fine-tuned from the original.

Masking is BERT's: `mlm.mask_ratio` of the words (whole-word masking: every piece of a chosen
word is masked together; otherwise of the tokens) are chosen, and each chosen token becomes
[MASK] (80 %), a random token (10 %) or stays (10 %). A sequence of n words gets
floor(ratio·n + u) of them (u uniform in [0, 1)), so the expected fraction is exactly the ratio
even for short sequences. Masks are drawn once, at encode time, with a seeded RNG: they are
static for the run (every epoch sees the same masks), which makes the loss normalisation exact
and resume exact. Documents longer than `data.max_length` are cut into consecutive chunks (none
of the text is dropped); sequences that got no masked token are left out of training.

Perplexity is exp(mean cross-entropy over the masked tokens) of the held-out text, with one fixed
mask (seed `EVAL_MASK_SEED`, the same 80/10/10 corruption as training, as Hugging Face's
`run_mlm` does) so "before" and "after" score the same positions. Three numbers are reported:
`before` (the freshly initialised head: huge, and it says nothing about the encoder),
`before_head_warmup` (after `mlm.head_warmup_steps` steps that train only the head, the
encoder and embeddings frozen: what the original encoder can do with a fitted head, the fairer
baseline; the MLM training then continues from this head) and `after`. The warm-up baseline
is only as good as the head's fit: `benchmarks/pretrain.py` also trains the head alone for as
many steps as the adapted model's head got, so a gain cannot be the head's alone. With a vocab
section, all three use the extended tokenizer (perplexities under different tokenizers are not
comparable); the vocabulary's effect is measured as tokens per word on the held-out text.

Leaves out: dynamic (per-epoch) masking, data-parallel runs (`--nproc`), packing several
documents into one sequence, and MLM heads other than the BERT (`cls`) and RoBERTa (`lm_head`)
families' (other encoders train through their full logits and get no head warm-up).
"""

from __future__ import annotations

import logging
import math
import random
import time
from pathlib import Path
from typing import Any

import torch
from pydantic import BaseModel, ConfigDict, Field

from graftwork.backbones import load as backbones
from graftwork.bundle import write_bundle
from graftwork.data.batching import collate, inference_batches, training_batches
from graftwork.data.encode import IGNORE, model_inputs
from graftwork.data.readers import read_examples
from graftwork.data.sampling import subsample
from graftwork.errors import BackboneError, DataError, GraftError
from graftwork.machine import describe
from graftwork.runs.finetune import FINGERPRINT_TRAIN, RunResult, _write_json, start
from graftwork.config.recipe import (
    BackboneConfig,
    DataConfig,
    RecipeBase,
    TaskConfig,
    TrainConfig,
    load_recipe,
)
from graftwork.train import checkpoint
from graftwork.train.loop import fit, labelled, summed_loss
from graftwork.runs.vocab import VocabConfig, extend, mine_terms, read_terms, tokens_per_word

log = logging.getLogger("graftwork")

EVAL_MASK_SEED = 0  # the held-out mask; fixed, so runs with different train seeds compare
HEADS = ("cls", "lm_head")  # the MLM head's attribute: BERT family, RoBERTa / XLM-R family
TABLES = (".tsv", ".csv", ".jsonl", ".json")


class _Section(BaseModel):
    model_config = ConfigDict(extra="forbid", protected_namespaces=())


class PretrainData(_Section):
    train: str = Field(
        description="Domain text: a .txt file (one document a line), a folder of .txt files, "
        "or a TSV/CSV/JSONL file (its `text` column)."
    )
    eval: str | None = Field(None, description="Held-out text (same formats).")
    eval_fraction: float = Field(
        0.05, ge=0, lt=1, description="Without `eval`: hold out this fraction of train."
    )
    text: str = Field("sentence", description="TSV/CSV/JSONL: the column with the text.")
    header: bool = Field(True, description="TSV/CSV: the first row names the columns.")
    max_documents: int | None = Field(
        None, ge=1, description="MLM-train on a seeded sample of this many documents."
    )
    max_length: int = Field(128, ge=8, le=8192)


class MlmConfig(_Section):
    mask_ratio: float = Field(0.15, gt=0, lt=1, description="Fraction of words (tokens) masked.")
    whole_word: bool = Field(True, description="Mask all pieces of a word together.")
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


def read_documents(path: Path, data: PretrainData) -> list[str]:
    """Documents (non-empty lines, or rows of a table's text column) of a file or folder."""
    if not path.exists():
        raise DataError(
            f"text file {path} does not exist; check data.train / data.eval in the recipe"
        )
    if path.is_dir():
        files = sorted(path.rglob("*.txt"))
        if not files:
            raise DataError(f"folder {path} holds no .txt files; put the domain text in *.txt")
        documents = [doc for file in files for doc in _lines(file)]
    elif path.suffix.lower() in TABLES:
        fmt = DataConfig(header=data.header, on_bad_rows="skip")
        columns = TaskConfig(text=data.text, label=data.text)  # no label column needed
        result = read_examples(path, columns, fmt, require_labels=False)
        if result.skipped:
            log.warning("%s: skipped %d row(s) without text", path, len(result.skipped))
        documents = [e["text"] for e in result.examples]
    else:
        documents = _lines(path)
    if not documents:
        raise DataError(f"{path}: no text found (empty?); give one document per line")
    return documents


def _lines(file: Path) -> list[str]:
    try:
        text = file.read_text(encoding="utf-8")
    except UnicodeDecodeError as exc:
        raise DataError(
            f"{file}: not valid UTF-8 (byte offset {exc.start}); re-save it as UTF-8"
        ) from None
    return [line.strip() for line in text.splitlines() if line.strip()]


def read_corpus(recipe: PretrainRecipe) -> tuple[list[str], list[str]]:
    """(train, held-out) documents; without data.eval, a seeded eval_fraction of train."""
    data = recipe.data
    train = read_documents(recipe.resolve_path(data.train), data)
    if data.eval is not None:
        return train, read_documents(recipe.resolve_path(data.eval), data)
    if data.eval_fraction == 0:
        return train, []
    n_eval = max(1, round(len(train) * data.eval_fraction))
    if n_eval >= len(train):
        raise DataError(
            f"{data.train}: {len(train)} document(s) are too few to hold out "
            f"{data.eval_fraction:.0%}; add text, or give data.eval"
        )
    generator = torch.Generator().manual_seed(recipe.train.seed)
    held = set(torch.randperm(len(train), generator=generator)[:n_eval].tolist())
    kept = [d for i, d in enumerate(train) if i not in held]
    return kept, [d for i, d in enumerate(train) if i in held]


def encode_documents(tokenizer, documents: list[str], max_length: int) -> list[dict]:
    """Token ids and word ids; a document longer than max_length becomes several chunks."""
    enc = tokenizer(
        documents, truncation=True, max_length=max_length, return_overflowing_tokens=True
    )
    keys = model_inputs(enc)
    return [
        {**{k: enc[k][i] for k in keys}, "word_ids": enc.word_ids(i)}
        for i in range(len(enc["input_ids"]))
    ]


def mask_features(
    features: list[dict], tokenizer, ratio: float, whole_word: bool, seed: int
) -> tuple[list[dict], list[list[int]]]:
    """BERT masking: (features with corrupted input_ids, labels: the original id or IGNORE)."""
    rng = random.Random(seed)
    special = set(tokenizer.all_special_ids)
    replacements = [i for i in range(len(tokenizer)) if i not in special]
    masked, labels = [], []
    for feature in features:
        ids = list(feature["input_ids"])
        units: dict[Any, list[int]] = {}  # word (or position) → its positions
        for pos, word in enumerate(feature["word_ids"]):
            if word is not None:
                units.setdefault(word if whole_word else pos, []).append(pos)
        groups = list(units.values())
        count = int(ratio * len(groups) + rng.random())
        label = [IGNORE] * len(ids)
        for group in rng.sample(groups, count):
            for pos in group:
                label[pos] = ids[pos]
                draw = rng.random()
                if draw < 0.8:
                    ids[pos] = tokenizer.mask_token_id
                elif draw < 0.9:
                    ids[pos] = rng.choice(replacements)
        masked.append({**{k: v for k, v in feature.items() if k != "word_ids"}, "input_ids": ids})
        labels.append(label)
    return masked, labels


def masked_set(tokenizer, documents: list[str], recipe: PretrainRecipe, seed: int):
    """Encode and mask `documents`; sequences without a masked token are left out."""
    features = encode_documents(tokenizer, documents, recipe.data.max_length)
    mlm = recipe.mlm
    features, labels = mask_features(features, tokenizer, mlm.mask_ratio, mlm.whole_word, seed)
    keep = [i for i, row in enumerate(labels) if any(x != IGNORE for x in row)]
    return [features[i] for i in keep], [labels[i] for i in keep]


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


def mlm_loss(model, batch: dict) -> torch.Tensor:
    """Cross-entropy summed over the masked tokens; the vocabulary projection runs on those only
    (it costs as much per token as the whole MiniLM encoder)."""
    head = mlm_head(model)
    if head is None:
        return summed_loss(model, batch)
    labels = batch.pop("labels")
    picked = labels != IGNORE  # (batch, seq)
    hidden = model.base_model(**batch).last_hidden_state  # (batch, seq, hidden)
    logits = head(hidden[picked])  # (masked, vocab)
    return torch.nn.functional.cross_entropy(logits.float(), labels[picked], reduction="sum")


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


def warm_head(model, features, labels, mlm: MlmConfig, cfg: TrainConfig, pad_id: int, device):
    """Train only the MLM head (not the tied embeddings) for mlm.head_warmup_steps steps."""
    head = mlm_head(model)
    if head is None:
        log.warning("no known MLM head on %s; skipping the head warm-up", type(model).__name__)
        return
    tied = model.get_input_embeddings().weight
    params = [p for p in head.parameters() if p is not tied]
    optimizer = torch.optim.AdamW(params, lr=mlm.head_warmup_lr, weight_decay=0.0)
    lengths = [len(f["input_ids"]) for f in features]
    model.eval()  # the encoder is frozen: no dropout, no gradients
    tied.requires_grad_(False)
    step, epoch = 0, 0
    try:
        while step < mlm.head_warmup_steps:
            for rows in training_batches(lengths, cfg.batch_size, cfg.seed, epoch):
                if step == mlm.head_warmup_steps:
                    break
                batch = collate([features[i] for i in rows], pad_id, [labels[i] for i in rows])
                batch = {k: v.to(device) for k, v in batch.items()}
                target = batch.pop("labels")
                picked = target != IGNORE
                with torch.no_grad():
                    hidden = model.base_model(**batch).last_hidden_state[picked]
                loss = torch.nn.functional.cross_entropy(head(hidden).float(), target[picked])
                loss.backward()
                optimizer.step()
                optimizer.zero_grad(set_to_none=True)
                step += 1
            epoch += 1
    finally:
        tied.requires_grad_(True)
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


def fingerprint(recipe: PretrainRecipe) -> dict:
    dumped = recipe.model_dump(mode="json")
    out = {k: dumped[k] for k in ("backbone", "data", "mlm", "vocab")}
    out["train"] = {k: dumped["train"][k] for k in FINGERPRINT_TRAIN}
    return out


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
    train_docs, eval_docs = read_corpus(recipe)
    log.info("%s: %d documents, %d held out", recipe.name, len(train_docs), len(eval_docs))
    model = load_mlm_model(folder, recipe.backbone)

    per_word = {"before": tokens_per_word(tokenizer, eval_docs) if eval_docs else None}
    added = extend(model, tokenizer, _terms(recipe, tokenizer, train_docs)) if recipe.vocab else []
    per_word["after"] = tokens_per_word(tokenizer, eval_docs) if eval_docs else None
    if eval_docs and recipe.vocab:
        log.info("tokens per held-out word: %.4f → %.4f", per_word["before"], per_word["after"])

    docs = subsample(train_docs, recipe.data.max_documents, cfg.seed)
    features, labels = masked_set(tokenizer, docs, recipe, cfg.seed)
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
        warm_head(model, features, labels, recipe.mlm, cfg, pad_id, device)
        ppl["before_head_warmup"] = measure("after the head warm-up")
    metrics: dict[str, Any] = {}
    if cfg.epochs > 0:
        log.info(
            "masked-LM training on %d sequences (%d masked tokens)", len(features), labelled(labels)
        )
        started = time.perf_counter()
        torch.manual_seed(cfg.seed)
        prepared, state, rate = fit(
            model,
            features,
            labels,
            cfg,
            accelerator,
            run_dir,
            pad_id,
            fingerprint(recipe),
            resume=resume,
            loss_fn=mlm_loss,
        )
        model = accelerator.unwrap_model(prepared)
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
        "documents": {"train": len(train_docs), "eval": len(eval_docs)},
        **metrics,
    }
    bundle_dir = run_dir / "bundle"
    manifest = {
        "name": recipe.name,
        "task": "mlm",
        "backbone": recipe.backbone.name,
        "recipe": recipe.model_dump(mode="json"),
        "mask_ratio": recipe.mlm.mask_ratio,
        "vocab_added": added,
        "metrics": {"perplexity": ppl, "tokens_per_word": per_word},
    }

    def write(tmp: Path) -> None:
        model.save_pretrained(str(tmp), safe_serialization=True)
        tokenizer.save_pretrained(str(tmp))
        _carry_pooler(folder, tmp, model.base_model_prefix)

    write_bundle(bundle_dir, write, manifest)
    _write_json(run_dir / "metrics.json", metrics)
    checkpoint.remove_all(run_dir)
    log.info("backbone folder: %s", bundle_dir)
    return RunResult(recipe, run_dir, bundle_dir, metrics)
