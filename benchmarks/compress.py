"""Compression trade-offs side by side: task metric, inputs/s and size of several bundles.

Each bundle is measured with every backend it holds (PyTorch, ONNX FP32, ONNX INT8), on the
same labelled file, in one process, with `graftwork.runs.compress.measure` (best of 2 passes).
Speed-ups are against the first bundle with the same backend, so a teacher and its student
(or an unpruned and a pruned model) are compared like for like.

    python benchmarks/compress.py teacher=runs/sst2-full/bundle \\
        student=runs/sst2-full-student/bundle pruned=runs/sst2-full/bundle-pruned \\
        --data ../shared/data/sst2/dev.tsv
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import torch

from graftwork.backbones.quiet import quiet_libraries
from graftwork.machine import cpu_name
from graftwork.runs.compress import measure


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("bundles", nargs="+", help="NAME=BUNDLE_FOLDER, the reference first")
    parser.add_argument("--data", type=Path, required=True)
    parser.add_argument("--out", type=Path, default=Path("runs/bench/compress.json"))
    args = parser.parse_args()
    quiet_libraries()
    rows = []
    for item in args.bundles:
        name, _, path = item.partition("=")
        rows += measure(name, Path(path), args.data)
    reference = {}
    print(f"CPU: {cpu_name()}, {torch.get_num_threads()} threads; data {args.data}")
    print(
        f"{'bundle':10}{'backend':11}{rows[0]['metric']:>10}{'of ref':>8}{'inputs/s':>10}"
        f"{'speed-up':>10}{'MB':>8}"
    )
    for row in rows:
        ref = reference.setdefault(row["backend"], row)
        row["metric_ratio"] = row["value"] / ref["value"]
        row["speedup"] = row["inputs_per_second"] / ref["inputs_per_second"]
        print(
            f"{row['stage']:10}{row['backend']:11}{row['value']:10.4f}{row['metric_ratio']:8.3f}"
            f"{row['inputs_per_second']:10.1f}{row['speedup']:9.2f}x{row['size_mb']:8.1f}"
        )
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps({"cpu": cpu_name(), "rows": rows}, indent=2))


if __name__ == "__main__":
    main()
