"""The PyTorch backend (`torch`): the bundle's transformers model, in eval mode.

Always available; the model is loaded through the bundle's method (adapters are inserted,
pruned heads sliced out) by the predictor, handed over as `Source.model`.
"""

from __future__ import annotations

from graftwork.bundle import Manifest
from graftwork.inference.backends import Source
from graftwork.inference.forward import task_forward


def available(manifest: Manifest, name: str) -> bool:
    return True


def load(source: Source, name: str, threads: int | None):
    generation = source.manifest.recipe.get("generation")
    return task_forward(source.task, source.model(), source.tokenizer, generation)


def describe(manifest: Manifest, name: str) -> dict:
    return {"backend": name}


def tolerance(name: str) -> float:
    """Whole batches in float32: PyTorch picks its kernels' blocking by shape, so a row's
    logits may move by float32 rounding with its batch (`inference.backends`)."""
    return 1e-5
