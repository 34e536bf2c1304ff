"""One-request latency (batch 1) of bundles and backends: what `graft advise` reads.

Every dev sentence is predicted alone, after 20 warm-up requests; p50/p95/p99 in ms over all of
them, in one process, one bundle × backend after another, 2 threads.

    python benchmarks/latency.py teacher=runs/sst2-full/bundle \\
        student=runs/sst2-full-student/bundle --data ../shared/data/sst2/dev.tsv
"""

from __future__ import annotations

import argparse
import json
import statistics
import time
from pathlib import Path

import torch

import graftwork
from graftwork.backbones.quiet import quiet_libraries
from graftwork.machine import cpu_name


def texts_of(path: Path) -> list[str]:
    lines = path.read_text(encoding="utf-8").splitlines()[1:]
    return [line.split("\t", 1)[1] for line in lines if "\t" in line]


def percentile(values: list[float], q: float) -> float:
    return statistics.quantiles(values, n=100, method="inclusive")[q - 1]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("bundles", nargs="+", help="NAME=BUNDLE_FOLDER")
    parser.add_argument("--data", type=Path, required=True, help="a TSV: label<TAB>sentence")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--out", type=Path, default=Path("runs/bench/latency.json"))
    args = parser.parse_args()
    quiet_libraries()
    torch.set_num_threads(args.threads)
    texts = texts_of(args.data)
    rows = []
    print(f"CPU: {cpu_name()}, {args.threads} threads; {len(texts)} single-text requests")
    print(f"{'bundle':10}{'backend':11}{'p50 ms':>8}{'p95 ms':>8}{'p99 ms':>8}")
    for item in args.bundles:
        name, _, path = item.partition("=")
        manifest = graftwork.load(path, backend="torch").manifest
        for backend in ["torch", *manifest.get("artifacts", {})]:
            predictor = graftwork.load(path, backend=backend, threads=args.threads)
            for text in texts[:20]:
                predictor.predict([text])
            times = []
            for text in texts:
                start = time.perf_counter()
                predictor.predict([text])
                times.append(1000 * (time.perf_counter() - start))
            row = {
                "bundle": name,
                "backend": backend,
                "p50_ms": statistics.median(times),
                "p95_ms": percentile(times, 95),
                "p99_ms": percentile(times, 99),
            }
            rows.append(row)
            print(
                f"{name:10}{backend:11}{row['p50_ms']:8.2f}{row['p95_ms']:8.2f}{row['p99_ms']:8.2f}"
            )
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps({"cpu": cpu_name(), "rows": rows}, indent=2))


if __name__ == "__main__":
    main()
