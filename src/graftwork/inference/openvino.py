"""The OpenVINO backends (`openvino-int8`, `openvino-fp32`): run a bundle's OpenVINO IR on the
CPU.

The IRs are written by `graftwork.export.openvino`; a backend is available when the bundle's
manifest lists the artifact (which it does only after its export passed the parity check).
Both run whole batches: the FP32 IR has no data-dependent constants, and the INT8 IR was
quantized statically (activation scales fixed at calibration), so padding and batch-mates do
not move a row's scale as they do in ONNX Runtime's dynamic INT8 (`inference/onnx.py`).

The model is compiled once with dynamic batch and sequence axes, `INFERENCE_NUM_THREADS`
threads and the FP32 inference precision (OpenVINO would otherwise run BF16 on CPUs with AMX
and change the answers); each calling thread gets its own infer request.

Left out: devices other than the CPU, and OpenVINO's asynchronous queue (the server's batcher
already keeps one batch in flight per model).
"""

from __future__ import annotations

import threading
from pathlib import Path

import numpy as np

from graftwork.bundle import Manifest
from graftwork.inference.backends import BackendError, Source

# largest |Δlogit| between a row alone and in a batch (`inference.backends`): FP32 rounds
# differently for another batch shape; the static INT8 IR runs whole batches, so a row's
# logits can move by about one activation quantization step (its labels do not)
TOLERANCE = {"openvino-fp32": 1e-5, "openvino-int8": 1e-2}


def installed() -> bool:
    try:
        import openvino  # noqa: F401
    except ImportError:
        return False
    return True


def available(manifest: Manifest, name: str) -> bool:
    """The bundle holds the IR, and the openvino package is there to run it."""
    return name in manifest.artifacts and installed()


def load(source: Source, name: str, threads: int | None):
    """`forward(batch) -> logits` over the bundle's `name` IR."""
    if not installed():
        raise BackendError(
            f"{source.path} has an OpenVINO artifact, but the openvino package is not "
            "installed: pip install 'graftwork[openvino]', or use another backend"
        )
    return ir_forward(source.path / source.manifest.artifacts[name]["path"], threads)


def describe(manifest: Manifest, name: str) -> dict:
    return {"backend": name, "runs": "whole batches", **manifest.artifacts.get(name, {})}


def tolerance(name: str) -> float:
    return TOLERANCE[name]


def compile_ir(xml: Path, threads: int | None = None):
    """The IR at `xml` compiled for the CPU, FP32 precision, `threads` threads (default: all)."""
    import openvino as ov

    config = {"INFERENCE_PRECISION_HINT": "f32", "PERFORMANCE_HINT": "LATENCY"}
    if threads:
        config["INFERENCE_NUM_THREADS"] = threads
    return ov.Core().compile_model(str(xml), "CPU", config)


def ir_forward(xml: Path, threads: int | None = None):
    """`forward(batch) -> logits` (numpy) over collated batches, with the IR at `xml`."""
    return compiled_forward(compile_ir(xml, threads))


def compiled_forward(compiled):
    """`forward(batch) -> logits` over collated batches, with a compiled OpenVINO model."""
    wanted = {port.get_any_name() for port in compiled.inputs}
    output = compiled.output(0)
    local = threading.local()

    def forward(batch: dict) -> np.ndarray:
        request = getattr(local, "request", None)
        if request is None:
            request = local.request = compiled.create_infer_request()
        feed = {k: v.numpy() for k, v in batch.items() if k in wanted}
        return request.infer(feed)[output].copy()

    return forward
