"""The three INT8 kinds side by side on one exported bundle: ONNX Runtime dynamic (row by row, as
the `onnx-int8` backend runs it, and whole batches), ONNX Runtime static (QDQ, calibrated), and
OpenVINO static (NNCF, the `openvino-int8` artifact).

In one process, on the bundle's recipe eval file: every side runs the same length-sorted
batches of pre-tokenized inputs (forward only, no tokenization), one warm-up pass, then the best
of `--repeats`; accuracy (or token accuracy for NER) and agreement with the PyTorch model's
labels, and the file size. ONNX Runtime's static INT8 is made here, from the bundle's unfused
FP32 graph (`onnxruntime.quantization.quantize_static`, QDQ, per-channel 7-bit weights,
MinMax calibration on `--calibration` training examples: the same seeded sample the OpenVINO
export calibrates on); it is not a graftwork artifact. Export first:
`graft export BUNDLE --int8 --openvino`.

    python benchmarks/int8_kinds.py runs/quickstart/bundle
"""

from __future__ import annotations

import argparse
import json
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

import graftwork
from graftwork.backbones.quiet import quiet_libraries
from graftwork.config.recipe import load_recipe
from graftwork.data.batching import collate, inference_batches
from graftwork.data.readers import read_examples
from graftwork.export import onnx as onnx_export
from graftwork.export import openvino as ov_export
from graftwork.inference.forward import logits_for, torch_forward
from graftwork.inference.onnx import onnx_forward, rowwise_forward, session
from graftwork.inference.openvino import ir_forward
from graftwork.machine import cpu_name


def best_of(fn, repeats: int) -> float:
    fn()
    best = float("inf")
    for _ in range(repeats):
        started = time.perf_counter()
        fn()
        best = min(best, time.perf_counter() - started)
    return best


def static_ort(predictor, bundle: Path, features: list[dict], out: Path) -> Path:
    """ONNX Runtime static INT8 (QDQ) of a freshly traced unfused FP32 graph."""
    from onnxruntime.quantization import (
        CalibrationDataReader,
        CalibrationMethod,
        QuantFormat,
        QuantType,
        quantize_static,
    )

    eager = predictor.method.load(
        predictor.task.model_class(), bundle, predictor.adapter, attn_implementation="eager"
    )
    fp32 = out / "plain.onnx"
    onnx_export.export_fp32(eager, predictor.tokenizer, fp32)
    names = onnx_export.input_names(predictor.tokenizer)
    batches = ov_export.calibration_batches(features, predictor.tokenizer.pad_token_id, names)

    class Reader(CalibrationDataReader):
        def __init__(self):
            self.left = iter(batches)

        def get_next(self):
            return next(self.left, None)

    target = out / "static-int8.onnx"
    quantize_static(
        str(fp32),
        str(target),
        Reader(),
        quant_format=QuantFormat.QDQ,
        per_channel=True,
        reduce_range=True,
        activation_type=QuantType.QUInt8,
        weight_type=QuantType.QInt8,
        calibrate_method=CalibrationMethod.MinMax,
        op_types_to_quantize=["MatMul", "Gemm"],
    )
    return target


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("bundle", type=Path)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--out", type=Path, default=Path("runs/bench/int8_kinds.json"))
    args = parser.parse_args()
    quiet_libraries()
    threads = torch.get_num_threads()
    predictor = graftwork.load(args.bundle, backend="torch", threads=threads)
    artifacts = predictor.manifest.artifacts
    recipe = load_recipe(predictor.manifest.recipe)
    examples = read_examples(recipe.data_path("eval"), predictor.task_config, predictor.data_config)
    label2id = {v: k for k, v in predictor.id2label.items()}
    task, tokenizer = predictor.task, predictor.tokenizer
    features, labels = task.encode(
        tokenizer, examples.examples, label2id, predictor.max_length, "eval"
    )
    calibration, _ = ov_export.calibration_features(
        predictor, {"examples": examples.examples, "shown": "eval"}
    )
    pad = tokenizer.pad_token_id
    reference = logits_for(torch_forward(predictor.model), features, 64, pad)

    def labels_of(logits) -> np.ndarray:
        return np.concatenate([np.atleast_1d(x.argmax(-1)).ravel() for x in logits])

    gold = np.concatenate([np.atleast_1d(np.asarray(g)).ravel() for g in labels])
    keep = gold >= 0  # token tasks: positions that carry a label
    ref = labels_of(reference)
    with tempfile.TemporaryDirectory() as work:
        ort_static = static_ort(predictor, args.bundle, calibration, Path(work))
        sides = {
            "onnx-fp32 (reference graph)": (
                onnx_forward(session(args.bundle / artifacts["onnx-fp32"]["path"], threads)),
                args.bundle / artifacts["onnx-fp32"]["path"],
            ),
            "ORT dynamic INT8, row by row": (
                rowwise_forward(args.bundle / artifacts["onnx-int8"]["path"], threads),
                args.bundle / artifacts["onnx-int8"]["path"],
            ),
            "ORT dynamic INT8, whole batch": (
                onnx_forward(session(args.bundle / artifacts["onnx-int8"]["path"], threads)),
                args.bundle / artifacts["onnx-int8"]["path"],
            ),
            "ORT static INT8 (QDQ, MinMax)": (
                onnx_forward(session(ort_static, threads)),
                ort_static,
            ),
            "OpenVINO static INT8 (NNCF)": (
                ir_forward(args.bundle / artifacts["openvino-int8"]["path"], threads),
                args.bundle / artifacts["openvino-int8"]["path"],
            ),
        }
        rows = {}
        print(f"CPU: {cpu_name()}, {threads} threads; {len(features)} inputs")
        print(f"{'kind':34}{'inputs/s':>10}{'accuracy':>10}{'agree':>8}{'MB':>8}")
        lengths = [len(f["input_ids"]) for f in features]
        for name, (forward, path) in sides.items():
            batches = [
                collate([features[i] for i in idx], pad)
                for idx in inference_batches(lengths, 64, 8192)
            ]
            seconds = best_of(lambda f=forward, b=batches: [f(x) for x in b], args.repeats)
            got = labels_of(logits_for(forward, features, 64, pad, 8192))
            size = sum(p.stat().st_size for p in [path, path.with_suffix(".bin")] if p.exists())
            rows[name] = {
                "inputs_per_second": len(features) / seconds,
                "accuracy": float((got[keep] == gold[keep]).mean()),
                "agreement": float((got == ref).mean()),
                "size_mb": size / 1e6,
            }
            row = rows[name]
            print(
                f"{name:34}{row['inputs_per_second']:10.1f}{row['accuracy']:10.4f}"
                f"{row['agreement']:8.4f}{row['size_mb']:8.1f}"
            )
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps({"cpu": cpu_name(), "threads": threads, "rows": rows}, indent=2))


if __name__ == "__main__":
    main()
