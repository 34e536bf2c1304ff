"""ONNX export: FP32 graph with dynamic batch and sequence axes, ONNX Runtime's transformer
fusions, optional dynamic INT8 quantization, and a parity check on real examples.

Export uses `torch.onnx.export` (TorchScript path, eager attention, so ONNX Runtime's BERT
fusions recognise the graph); fusion uses `onnxruntime.transformers.optimizer`; quantization uses
`onnxruntime.quantization.quantize_dynamic` (weights INT8, activations quantized at run time).
With `keep_attention_fp32`, only MatMuls against constant weights are quantized: the attention
score and context products (and fused Attention nodes) stay FP32.

The result is written into the bundle under `onnx/` and the manifest gains an `artifacts`
section with each file's parity figures. The files run with plain `onnxruntime` and the saved
tokenizer. What this leaves out: static (calibrated) quantization and GPU-specific graphs.
"""

from __future__ import annotations

import logging
import os
import shutil
from pathlib import Path

import numpy as np
import torch

from graftwork.errors import GraftError
from graftwork.tasks import output_logits

log = logging.getLogger("graftwork")

ONNX_DIR = "onnx"
FP32 = "model.onnx"
INT8 = "model-int8.onnx"
OPSET = 17
# config.model_type → onnxruntime.transformers model type for fusions
FUSION_TYPES = {
    "bert": "bert",
    "roberta": "bert",
    "xlm-roberta": "bert",
    "distilbert": "bert",
    "electra": "bert",
    "camembert": "bert",
    "mpnet": "bert",
    "deberta-v2": "bert",
}
FP32_TOLERANCE = 1e-4


class ParityError(GraftError):
    """An exported model does not reproduce the PyTorch model's outputs."""


class _LogitsOnly(torch.nn.Module):
    def __init__(self, model, names: list[str]):
        super().__init__()
        self.model = model
        self.names = names

    def forward(self, *inputs):
        return output_logits(self.model(**dict(zip(self.names, inputs, strict=True))))


def input_names(tokenizer) -> list[str]:
    names = ["input_ids", "attention_mask"]
    if "token_type_ids" in tokenizer.model_input_names:
        names.append("token_type_ids")
    return names


def export_fp32(model, tokenizer, path: Path) -> None:
    """Trace `model` to ONNX with dynamic batch and sequence axes."""
    model = model.eval()
    names = input_names(tokenizer)
    sample = tokenizer(["a short example", "and a second, longer example text"], padding=True)
    args = tuple(torch.tensor(sample[n]) for n in names)
    axes = {n: {0: "batch", 1: "sequence"} for n in names}
    token_level = output_logits(model(**dict(zip(names, args, strict=True)))).dim() == 3
    axes["logits"] = {0: "batch", 1: "sequence"} if token_level else {0: "batch"}
    with torch.inference_mode():
        torch.onnx.export(
            _LogitsOnly(model, names),
            args,
            str(path),
            input_names=names,
            output_names=["logits"],
            dynamic_axes=axes,
            opset_version=OPSET,
            do_constant_folding=True,
            dynamo=False,
        )


def fuse(path: Path, config) -> bool:
    """Apply ONNX Runtime's transformer fusions in place; False if the architecture has none."""
    kind = FUSION_TYPES.get(config.model_type)
    if kind is None:
        log.info(
            "no ONNX Runtime fusions for model type %s; keeping the plain graph", config.model_type
        )
        return False
    from onnxruntime.transformers.optimizer import optimize_model

    heads = getattr(config, "num_attention_heads", 0) or getattr(config, "n_heads", 0)
    hidden = getattr(config, "hidden_size", 0) or getattr(config, "dim", 0)
    optimized = optimize_model(str(path), model_type=kind, num_heads=heads, hidden_size=hidden)
    optimized.save_model_to_file(str(path))
    return True


def quantize(src: Path, dst: Path, keep_attention_fp32: bool) -> None:
    import onnx
    from onnxruntime.quantization import QuantType, quantize_dynamic

    ops = ["MatMul", "Gemm"] if keep_attention_fp32 else ["MatMul", "Gemm", "Attention"]
    # per-channel weight scales and 7-bit weights: on SST-2 dev with MiniLM this turned a
    # 0.6-point accuracy loss into none (per-tensor 8-bit saturates in the u8×s8 kernels of
    # CPUs without VNNI); see BENCHMARKS.md
    quantize_dynamic(
        str(src),
        str(dst),
        op_types_to_quantize=ops,
        weight_type=QuantType.QInt8,
        per_channel=True,
        reduce_range=True,
        extra_options={
            "MatMulConstBOnly": keep_attention_fp32,
            # fused nodes (com.microsoft domain) defeat shape inference; their outputs are float
            "DefaultTensorType": onnx.TensorProto.FLOAT,
        },
    )


def parity(reference: list[np.ndarray], candidate: list[np.ndarray]) -> dict:
    """Max |Δlogit| and the share of examples (or tokens) with the same predicted label."""
    delta = max(float(np.abs(a - b).max()) for a, b in zip(reference, candidate, strict=True))
    same = [
        (np.argmax(a, -1) == np.argmax(b, -1)).mean()
        for a, b in zip(reference, candidate, strict=True)
    ]
    return {"max_abs_logit_diff": delta, "label_agreement": float(np.mean(same))}


def link_or_copy(src: Path, dst: Path) -> None:
    dst.parent.mkdir(parents=True, exist_ok=True)
    try:
        os.link(src, dst)
    except OSError:
        shutil.copy2(src, dst)
