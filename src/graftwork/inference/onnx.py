"""The ONNX Runtime backends (`onnx-fp32`, `onnx-int8`): run an exported graph of a bundle.

The graphs are written by `graftwork.export`; a backend is available when the bundle's manifest
lists the artifact (which it does only after the export passed its parity check).

Batch invariance: an input's answer must not depend on what else is in its batch (the server
batches whatever arrives). The FP32 graph has no data-dependent constants, so it runs whole
batches. The INT8 graph is quantized dynamically (`export.onnx.quantize`): each activation
tensor gets one scale computed at run time over the whole tensor, so a batch's padding and its
other rows move every row's scale, and a label can flip. So the INT8 backend runs each row
alone, cut to its own tokens (`rowwise_forward`): what a row's logits are computed from is the
row itself, by construction, and they are the same bits whether it came alone or in a batch.
The rows of a batch run side by side on a pool of workers, one ONNX Runtime thread each, so
a batch still keeps every core busy (`benchmarks/batch_invariance.py` compares this with the
whole-batch run, `onnx_forward`, which serves INT8 nowhere else).

Left out: other execution providers (CPU only) and static, calibrated quantization.
"""

from __future__ import annotations

import os
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np

from graftwork.bundle import Manifest
from graftwork.inference.backends import Source

ROWWISE = {"onnx-int8"}  # backends whose graph must see one row at a time
# largest |Δlogit| between a row alone and in a batch (`inference.backends`): INT8 runs each
# row alone (the same bits); FP32's kernels round differently for another batch shape
TOLERANCE = {"onnx-int8": 0.0, "onnx-fp32": 1e-5}


def available(manifest: Manifest, name: str) -> bool:
    return name in manifest.artifacts


def load(source: Source, name: str, threads: int | None):
    """`forward(batch) -> logits` over the bundle's `name` artifact."""
    artifact = source.manifest.artifacts[name]["path"]
    return forward_for(name, source.path / artifact, threads)


def describe(manifest: Manifest, name: str) -> dict:
    rows = "each row alone" if name in ROWWISE else "whole batches"
    return {"backend": name, "runs": rows, **manifest.artifacts.get(name, {})}


def tolerance(name: str) -> float:
    return TOLERANCE[name]


def forward_for(name: str, path: Path, threads: int | None = None):
    """The forward function backend `name` runs over the graph at `path` (export checks it)."""
    if name in ROWWISE:
        return rowwise_forward(path, threads)
    return onnx_forward(session(path, threads))


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


def rowwise_forward(path: Path, threads: int | None = None):
    """Like `onnx_forward`, but each row runs alone on its unpadded tokens.

    `threads` workers (default: the usable cores) share one single-threaded session; the
    logits come back as one batch, zero at padded positions for token-level tasks.
    """
    sess = session(path, 1)
    wanted = {i.name for i in sess.get_inputs()}
    workers = threads or len(os.sched_getaffinity(0))
    pool = ThreadPoolExecutor(workers, thread_name_prefix="graft-onnx-row") if workers > 1 else None

    def one(feed: dict, keep: np.ndarray) -> np.ndarray:
        return sess.run(["logits"], {k: v[None, keep] for k, v in feed.items()})[0][0]

    def forward(batch: dict) -> np.ndarray:
        feed = {k: v.numpy() for k, v in batch.items() if k in wanted}
        keeps = feed["attention_mask"].astype(bool)
        keeps[~keeps.any(1)] = True  # a row of padding only (not made by collate): run it whole
        jobs = [({k: v[r] for k, v in feed.items()}, keep) for r, keep in enumerate(keeps)]
        if pool is None or len(jobs) == 1:
            rows = [one(*job) for job in jobs]
        else:
            rows = list(pool.map(lambda job: one(*job), jobs))
        if rows[0].ndim == 1:  # one answer per row
            return np.stack(rows)
        out = np.zeros((*keeps.shape, rows[0].shape[-1]), dtype=rows[0].dtype)
        for r, (row, keep) in enumerate(zip(rows, keeps, strict=True)):
            out[r, keep] = row
        return out

    return forward
