"""The ONNX Runtime backends (`onnx-fp32`, `onnx-int8`): run an exported graph of a bundle.

The graphs are written by `graftwork.export`; a backend is available when the bundle's manifest
lists the artifact (which it does only after the export passed its parity check).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np


def available(manifest: dict, name: str) -> bool:
    return name in (manifest.get("artifacts") or {})


def load(predictor, name: str, threads: int | None):
    """`forward(batch) -> logits` over the bundle's `name` artifact."""
    artifact = predictor.manifest["artifacts"][name]["path"]
    return onnx_forward(session(predictor.path / artifact, threads))


def describe(manifest: dict, name: str) -> dict:
    return {"backend": name, **(manifest.get("artifacts") or {}).get(name, {})}


def session(path: Path, threads: int | None = None):
    import onnxruntime as ort

    options = ort.SessionOptions()
    options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    if threads:
        options.intra_op_num_threads = threads
    options.inter_op_num_threads = 1
    return ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])


def onnx_forward(sess):
    """A forward function over collated batches (dict of tensors) → logits as numpy."""
    wanted = {i.name for i in sess.get_inputs()}

    def forward(batch: dict) -> np.ndarray:
        feed = {k: v.numpy() for k, v in batch.items() if k in wanted}
        return sess.run(["logits"], feed)[0]

    return forward
