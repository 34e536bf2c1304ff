"""Inference throughput and quality: Hugging Face `pipeline` against graftwork's backends.

On one bundle (classification or NER) and one labelled file, in one process: the transformers
`pipeline` (batch_size 32, the way users call it), then `graftwork.load(bundle, backend=…)` for
PyTorch and every exported artifact the bundle holds (ONNX FP32, ONNX dynamic INT8, OpenVINO
FP32, OpenVINO static INT8; length-sorted batches with a token budget). Each side runs once to
warm up, then `--repeats` timed passes; the best pass counts. Quality is the task metric on the
same file (accuracy, or entity F1 by seqeval for NER). Export first
(`graft export BUNDLE --int8 --openvino`).

The INT8 arithmetic ceiling is printed beside it: a plain INT8 matrix product (2048³, OpenVINO,
NNCF-quantized, same threads) measured in the same run, and each INT8 row's model operations
per second (2 × multiply-adds of the encoder's matrix products over the inputs' own tokens,
padding excluded: a lower bound of the work done).

    python benchmarks/inference.py runs/sst2-full/bundle --data ../shared/data/sst2/dev.tsv
    python benchmarks/inference.py runs/conll2003/bundle --data ../shared/data/conll2003/test.txt
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import torch

import graftwork
from graftwork import registry
from graftwork.backbones.quiet import quiet_libraries
from graftwork.data.readers import read_examples
from graftwork.machine import cpu_name


def timed(fn, repeats: int):
    fn()  # warm-up
    best, result = float("inf"), None
    for _ in range(repeats):
        started = time.perf_counter()
        result = fn()
        best = min(best, time.perf_counter() - started)
    return best, result


def hf_pipeline(bundle: Path, task: str, texts: list[str], batch_size: int):
    from transformers import pipeline

    kind = "text-classification" if task == "classification" else "token-classification"
    extra = {} if task == "classification" else {"aggregation_strategy": "first"}
    pipe = pipeline(kind, model=str(bundle), device=-1, **extra)
    return lambda: pipe(texts, batch_size=batch_size)


def model_ops(config, lengths: list[int]) -> float:
    """2 × the multiply-adds of an encoder's matrix products over inputs of `lengths` tokens:
    per token and layer the four attention projections and the two feed-forward ones, plus the
    attention scores and the weighted sum over the input's own tokens."""
    h, inner, layers = config.hidden_size, config.intermediate_size, config.num_hidden_layers
    per_token = 4 * h * h + 2 * h * inner
    return 2.0 * layers * sum(n * per_token + 2 * n * n * h for n in lengths)


def int8_matmul_rate(threads: int, n: int = 2048, repeats: int = 10) -> float:
    """GOP/s of one NNCF-quantized n×n×n matrix product compiled by OpenVINO for the CPU."""
    import nncf
    import numpy as np
    import openvino as ov
    from openvino import opset13 as ops

    rng = np.random.default_rng(0)
    x = ops.parameter([n, n], np.float32, name="x")
    w = ops.constant(rng.standard_normal((n, n)).astype(np.float32))
    a = rng.standard_normal((n, n)).astype(np.float32)
    model = nncf.quantize(ov.Model([ops.matmul(x, w, False, True)], [x]), nncf.Dataset([a]))
    config = {"INFERENCE_NUM_THREADS": threads, "INFERENCE_PRECISION_HINT": "f32"}
    request = ov.Core().compile_model(model, "CPU", config).create_infer_request()
    seconds, _ = timed(lambda: [request.infer({0: a}) for _ in range(repeats)], 3)
    return 2 * n**3 * repeats / seconds / 1e9


def size_mb(path: Path) -> float:
    return path.stat().st_size / 1e6


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("bundle", type=Path)
    parser.add_argument("--data", type=Path, required=True)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--batch-size", type=int, default=32, help="for the HF pipeline")
    parser.add_argument("--out", type=Path, default=None)
    args = parser.parse_args()
    quiet_libraries()
    threads = torch.get_num_threads()

    base = graftwork.load(args.bundle, backend="torch")
    task = base.task_config.type
    examples = read_examples(args.data, base.task_config, base.data_config).examples
    texts = [e["text"] if task == "classification" else " ".join(e["tokens"]) for e in examples]
    tokens = sum(len(base.tokenizer(t)["input_ids"]) for t in texts)
    rows = {}

    seconds, answers = timed(hf_pipeline(args.bundle, task, texts, args.batch_size), args.repeats)
    accuracy = None
    if task == "classification":
        gold = [e["label"] for e in examples]
        accuracy = sum(a["label"] == g for a, g in zip(answers, gold, strict=True)) / len(gold)
    rows["hf pipeline (PyTorch)"] = {"seconds": seconds, "metric": accuracy}
    sizes = {"hf pipeline (PyTorch)": size_mb(args.bundle / "model.safetensors")}
    artifacts = base.manifest.get("artifacts", {})
    for backend in reversed(registry.BACKENDS):  # torch first, the fastest last
        if backend != "torch" and backend not in artifacts:
            print(f"skipping {backend}: not in the bundle (graft export --int8 --openvino)")
            continue
        predictor = graftwork.load(args.bundle, backend=backend, threads=threads)
        seconds, _ = timed(lambda p=predictor: p.predict(texts), args.repeats)
        metrics = predictor.evaluate(args.data)
        name = f"graftwork {backend}"
        rows[name] = {"seconds": seconds, "metric": metrics.get("accuracy", metrics.get("f1"))}
        files = (
            ["model.safetensors"]
            if backend == "torch"
            else artifacts[backend].get("files", [artifacts[backend]["path"]])
        )
        sizes[name] = sum(size_mb(args.bundle / f) for f in files)
    baseline = rows["hf pipeline (PyTorch)"]["seconds"]
    metric_name = "accuracy" if task == "classification" else "entity F1"
    print(f"CPU: {cpu_name()}, {threads} threads; {len(texts)} inputs ({tokens} tokens)")
    header = f"{'path':28}{'inputs/s':>10}{'tokens/s':>10}{'× pipeline':>12}"
    print(f"{header}{metric_name:>12}{'MB':>8}")
    for name, row in rows.items():
        row["inputs_per_second"] = len(texts) / row["seconds"]
        row["tokens_per_second"] = tokens / row["seconds"]
        row["speedup"] = baseline / row["seconds"]
        row["size_mb"] = sizes[name]
        metric = "" if row["metric"] is None else f"{row['metric']:.4f}"
        print(
            f"{name:28}{row['inputs_per_second']:10.1f}{row['tokens_per_second']:10.0f}"
            f"{row['speedup']:11.2f}x{metric:>12}{row['size_mb']:8.1f}"
        )
    ops = model_ops(base.model.config, [len(base.tokenizer(t)["input_ids"]) for t in texts])
    ceiling = int8_matmul_rate(threads)
    print(f"INT8 ceiling: a 2048³ INT8 matrix product runs {ceiling:.0f} GOP/s here")
    for name, row in rows.items():
        if name.endswith("int8"):
            row["model_gops"] = ops / row["seconds"] / 1e9
            print(
                f"  {name}: {row['model_gops']:.0f} GOP/s of the model's matrix products "
                f"({100 * row['model_gops'] / ceiling:.0f} % of the ceiling)"
            )
    report = {
        "cpu": cpu_name(),
        "threads": threads,
        "data": str(args.data),
        "rows": rows,
        "int8_matmul_gops": ceiling,
        "model_ops_per_pass": ops,
    }
    out = args.out or Path("runs/bench") / f"inference-{args.bundle.parent.name}.json"
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(report, indent=2, default=float))


if __name__ == "__main__":
    main()
