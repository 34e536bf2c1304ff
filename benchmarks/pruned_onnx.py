"""Pruned heads in the ONNX graph: stored as zeros (today's export) against sliced out.

A pruned bundle keeps every head's shape with the pruned heads' weights at zero
(`runs/prune.py`); PyTorch slices them out when it loads the bundle (`apply_pruning`), but the
exported graph is traced from the model as stored. This script prunes `--heads` of MiniLM's
heads in every layer (weights zeroed: the values do not change the speed), then exports three
ONNX FP32 graphs of the same model: the heads as zeros (fused, as `graft export` does), the
heads sliced out (`surgery.prune_heads`) and fused with ONNX Runtime's fusions told the
unpruned head count (what `export.onnx.fuse` passes), sliced and fused with the head count
left for the optimizer to detect (num_heads=0, hidden_size=0), and sliced unfused; plus the
same for PyTorch. Each graph's parity against the sliced PyTorch model, and inputs/s on the
same pre-tokenized, length-sorted batches of SST-2 dev sentences (forward only; one warm-up,
best of `--repeats`).

    python benchmarks/pruned_onnx.py [--heads 0.5] [--texts 872] [--threads 2]
"""

from __future__ import annotations

import argparse
import copy
import tempfile
import time
from pathlib import Path

import numpy as np
import torch
from transformers import AutoModelForSequenceClassification, AutoTokenizer

from graftwork.backbones.load import resolve
from graftwork.backbones.surgery import prunable_layers, prune_heads
from graftwork.config.recipe import data_root
from graftwork.export import onnx as onnx_export
from graftwork.inference.forward import logits_for, torch_forward
from graftwork.inference.onnx import onnx_forward, session
from graftwork.machine import cpu_name


def zero_heads(model, heads: dict[int, list[int]]) -> None:
    """Zero the pruned heads' query/key/value rows and output columns, as a bundle stores them."""
    for i, layer in enumerate(prunable_layers(model)):
        size = layer.head_size
        rows = torch.cat([torch.arange(h * size, (h + 1) * size) for h in heads[i]])
        with torch.no_grad():
            for part in (layer.q, layer.k, layer.v):
                part.weight[rows] = 0
                part.bias[rows] = 0
            layer.attn_out.weight[:, rows] = 0


def fuse_with(path: Path, config, heads: int) -> None:
    from onnxruntime.transformers.optimizer import optimize_model

    hidden = config.hidden_size if heads else 0  # 0 and 0: both read from the graph
    optimized = optimize_model(str(path), model_type="bert", num_heads=heads, hidden_size=hidden)
    optimized.save_model_to_file(str(path))


def rate(forward, features, pad: int, repeats: int) -> tuple[float, list[np.ndarray]]:
    out = logits_for(forward, features, 32, pad)  # warm-up
    best = float("inf")
    for _ in range(repeats):
        started = time.perf_counter()
        logits_for(forward, features, 32, pad)
        best = min(best, time.perf_counter() - started)
    return len(features) / best, out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--heads", type=float, default=0.5, help="share of heads per layer")
    parser.add_argument("--texts", type=int, default=872)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    folder = resolve("minilm-l6")
    tokenizer = AutoTokenizer.from_pretrained(str(folder))
    zeros = AutoModelForSequenceClassification.from_pretrained(
        str(folder), num_labels=2, attn_implementation="eager"
    ).eval()
    total = zeros.config.num_attention_heads
    drop = int(round(args.heads * total))
    # other heads in each layer, as importance would choose them (5 is prime to 12: distinct)
    layers = range(len(prunable_layers(zeros)))
    heads = {i: sorted((i + j * 5) % total for j in range(drop)) for i in layers}
    zero_heads(zeros, heads)
    sliced = copy.deepcopy(zeros)
    prune_heads(sliced, heads)
    lines = (Path(data_root()) / "sst2" / "dev.tsv").read_text(encoding="utf-8").splitlines()[1:]
    texts = [line.split("\t", 1)[1] for line in lines[: args.texts]]
    features = [dict(tokenizer(t, truncation=True, max_length=128)) for t in texts]
    pad = tokenizer.pad_token_id
    print(
        f"CPU: {cpu_name()}, {args.threads} threads; MiniLM-L6, {drop} of {total} heads pruned in "
        f"each layer; {len(texts)} SST-2 dev sentences, batches of 32, forward only"
    )
    results = {}
    reference = None
    with tempfile.TemporaryDirectory() as tmp:
        for name, model in (("torch, heads as zeros", zeros), ("torch, heads sliced", sliced)):
            speed, out = rate(torch_forward(model), features, pad, args.repeats)
            reference = out if "sliced" in name else reference
            results[name] = (speed, out)
        graphs = {
            "onnx, heads as zeros (fused)": (zeros, total),
            "onnx, heads sliced, fused with num_heads=12": (sliced, total),
            "onnx, heads sliced, fused with num_heads=0 (detected)": (sliced, 0),
            "onnx, heads sliced, unfused": (sliced, None),
        }
        for i, (name, (model, fuse_heads)) in enumerate(graphs.items()):
            path = Path(tmp) / f"g{i}.onnx"
            onnx_export.export_fp32(model, tokenizer, path)
            if fuse_heads is not None:
                fuse_with(path, model.config, fuse_heads)
            forward = onnx_forward(session(path, args.threads))
            results[name] = rate(forward, features, pad, args.repeats)
    base = results["onnx, heads as zeros (fused)"][0]
    print(f"{'path':56}{'inputs/s':>10}{'× zeros ONNX':>14}{'max |Δlogit|':>14}")
    for name, (speed, out) in results.items():
        delta = max(float(np.abs(a - b).max()) for a, b in zip(out, reference, strict=True))
        print(f"{name:56}{speed:10.1f}{speed / base:13.2f}x{delta:14.2e}")


if __name__ == "__main__":
    main()
