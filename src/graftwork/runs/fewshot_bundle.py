"""Few-shot bundles: writing what `graft fewshot` trained as a method-`setfit` bundle, and
`FewshotModel`, the encoder and head read as sentence-transformers and numpy.

`save_bundle` writes the standard layout methods/setfit.py describes (the sentence-transformers
folder at the root, its config.json naming the labels, the head in `setfit-head.safetensors`,
`graftwork.json`); `bundle_model` is the torch classifier that bundle loads as, built over the
encoder in memory, so the run scores eval and test as `graft eval` will. `FewshotModel` reads
texts as sentence-transformers does (truncated at the encoder's `max_seq_length`).

Leaves out: encoders with modules beyond the transformer, pooling (mean, cls or max) and
normalisation (a Dense layer: refused), and a bundle's ONNX artifacts (graft export adds them).
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np

from graftwork.backbones.quiet import quiet
from graftwork.bundle import write_manifest
from graftwork.errors import RecipeError
from graftwork.methods import setfit
from graftwork.methods.sentence import POOLINGS, head_weights
from graftwork.track.tracker import recipe_record


def embed(encoder, texts: list[str], batch_size: int) -> np.ndarray:
    """Normalised sentence embeddings, (texts, dim), in eval mode."""
    return encoder.encode(
        texts, batch_size=batch_size, normalize_embeddings=True, show_progress_bar=False
    )


class FewshotModel:
    """A trained few-shot classifier: the encoder and the logistic head over its embeddings."""

    def __init__(self, encoder, labels: list[str], coef: np.ndarray, intercept: np.ndarray):
        self.encoder, self.labels = encoder, labels
        self.coef, self.intercept = coef, intercept

    @classmethod
    def load(cls, bundle: Path) -> FewshotModel:
        """A bundle of `graft fewshot` (method setfit; also the older `encoder/` + head.json)."""
        from safetensors.numpy import load_file
        from sentence_transformers import SentenceTransformer

        bundle = Path(bundle)
        if (bundle / "head.json").is_file():  # the layout before few-shot bundles were standard
            head = json.loads((bundle / "head.json").read_text(encoding="utf-8"))
            labels, coef, intercept = head["labels"], head["coef"], head["intercept"]
            folder = bundle / "encoder"
        else:
            labels = json.loads((bundle / "graftwork.json").read_text(encoding="utf-8"))["labels"]
            tensors = load_file(str(bundle / setfit.HEAD_FILE))
            coef, intercept, folder = tensors["weight"], tensors["bias"], bundle
        with quiet():
            encoder = SentenceTransformer(str(folder), device="cpu")
        return cls(encoder, labels, np.array(coef), np.array(intercept))

    def scores(self, texts: list[str], batch_size: int = 64) -> np.ndarray:
        """Log-probabilities per label, (texts, labels)."""
        logits = embed(self.encoder, texts, batch_size) @ self.coef.T + self.intercept
        if logits.shape[1] == 1:  # scikit-learn's binary head: one column for labels[1]
            logits = np.hstack([np.zeros_like(logits), logits])
        logits = logits - logits.max(axis=1, keepdims=True)
        return logits - np.log(np.exp(logits).sum(axis=1, keepdims=True))

    def predict(self, texts: list[str], batch_size: int = 64) -> list[str]:
        return [self.labels[i] for i in self.scores(texts, batch_size).argmax(axis=1)]


def pooling_of(encoder) -> str:
    """The encoder's pooling as the bundle's model runs it (`methods.sentence.POOLINGS`)."""
    kinds = [type(module).__name__ for module in encoder]
    extra = [k for k in kinds if k not in ("Transformer", "Pooling", "Normalize")]
    mode = getattr(encoder[1], "pooling_mode", None) if kinds[1:2] == ["Pooling"] else None
    if isinstance(mode, list | tuple):  # several modes concatenated: one is all the head reads
        mode = mode[0] if len(mode) == 1 else "+".join(mode)
    if extra or mode not in POOLINGS:
        raise RecipeError(
            f"backbone: the sentence encoder has modules {kinds} (pooling {mode}); a few-shot "
            f"bundle holds a transformer with {', '.join(POOLINGS)} pooling and normalisation "
            "only; choose a backbone without a Dense layer or another pooling"
        )
    return mode


def bundle_model(encoder, coef: np.ndarray, intercept: np.ndarray):
    """The torch classifier the bundle will hold (method setfit), over `encoder`'s own
    Hugging Face model (shared, not copied)."""
    weight, bias = head_weights(coef, intercept)
    hf = encoder[0].auto_model
    return setfit.classifier(hf, weight.to(hf.device), bias.to(hf.device), pooling_of(encoder))


def save_bundle(folder: Path, encoder, model, names: list[str], recipe, metrics: dict) -> None:
    """Write the bundle into `folder` (a folder `atomic.building` made)."""
    config = encoder[0].auto_model.config
    config.id2label = dict(enumerate(names))
    config.label2id = {name: i for i, name in enumerate(names)}
    encoder.save(str(folder))
    head = model.classifier
    setfit.write_head(folder, head.weight.detach().cpu(), head.bias.detach().cpu(), model.pooling)
    kept = {k: metrics[k] for k in ("eval", "test", "zero_shot", "parameters") if k in metrics}
    # the recipe as a training recipe of method setfit (what export and prune read back); the
    # few-shot settings beside it
    record = recipe_record(recipe)
    fewshot = record.pop("fewshot", None)
    manifest = {
        "name": recipe.name,
        "task": "classification",
        "labels": names,
        "method": "setfit",
        "backbone": recipe.backbone.name,
        "recipe": {**record, "method": {"type": "setfit"}},
        "fewshot": fewshot,
        "metrics": kept,
    }
    write_manifest(folder, manifest)
