"""The inference backend protocol: what a module registered in `graftwork.registry.BACKENDS`
provides, and the error it raises.

A backend module (`inference/NAME.py`, one module may serve several names, e.g. `onnx-fp32`
and `onnx-int8`) is narrow, like TEI's `Backend` trait: whether it can serve a bundle here
(`available`, the health check), a forward function over a collated batch (`load`, from a
`Source`: the bundle's folder, manifest, task, tokenizer and a way to get its PyTorch model,
never the predictor itself), what it is (`describe`, shown by `graft info` and the server),
and how far a row's logits may move with its batch (`tolerance`). The predictor, the server
and the batch-invariance test ask these functions rather than reaching into a backend's
internals, and a backend reaches no further than its `Source`.

`tolerance(name)` is the largest |Δlogit| between an input run alone and the same input in any
batch (other sizes, neighbours, padding). Labels never change with the batch, for every
backend; the tolerance bounds the scores only. A backend that runs each row alone on its own
tokens declares 0 (the same bits by construction); a float32 backend that runs whole batches
declares float32 rounding across kernel blockings; a statically quantized backend running
whole batches declares about one activation quantization step.

Left out: the artifact writers (`graftwork.export`), and the choice among backends
(`inference.predictor.auto_backend`).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from types import ModuleType
from typing import Any, Protocol, runtime_checkable

import numpy as np

from graftwork import registry
from graftwork.errors import BundleError

Forward = Callable[[dict], np.ndarray]  # collated batch (name → tensor) → logits


class BackendError(BundleError):
    """A backend cannot serve a bundle here: its artifact or its runtime is missing."""


@dataclass(frozen=True)
class Source:
    """What a backend loads from: the bundle folder and its (verified) manifest; the task
    module and tokenizer (the PyTorch backend's forward needs them); and `model()`, the PyTorch
    model loaded through the bundle's method on first call (only the PyTorch backend calls it,
    so an exported backend never loads PyTorch weights)."""

    path: Path
    manifest: Any  # graftwork.bundle.Manifest
    task: ModuleType
    tokenizer: Any
    model: Callable[[], Any]


@runtime_checkable
class Backend(Protocol):
    """What the predictor, the server and the tests call on an inference backend module."""

    def available(self, manifest: Any, name: str) -> bool:
        """Whether the bundle (its manifest) holds `name`'s artifact and it can run here."""
        ...

    def load(self, source: Source, name: str, threads: int | None) -> Forward:
        """`forward(batch) -> logits` (numpy) for the bundle of `source`; `BackendError` if
        it cannot run here."""
        ...

    def describe(self, manifest: Any, name: str) -> dict:
        """What serves the bundle: `{"backend": name, ...}` and the artifact's recorded facts."""
        ...

    def tolerance(self, name: str) -> float:
        """The largest |Δlogit| between a row alone and the same row in any batch."""
        ...


def backend(name: str) -> Backend:
    """The module registered as backend `name` (aliases allowed), typed as the protocol."""
    return registry.backend(name)


def tolerance(name: str) -> float:
    """Backend `name`'s batch-invariance tolerance (see the module docstring)."""
    return backend(name).tolerance(registry.backend_name(name))
