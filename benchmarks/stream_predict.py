"""Streaming prediction: peak memory against input size, and throughput against batch prediction.

For each size in `--lines`, a JSON-lines input of that many SST-2 sentences (the training and
dev sentences, cycled) is written to `--workdir` once, then `graft predict BUNDLE --input FILE
--output FILE` runs in a fresh process; its peak RSS comes from the kernel (`os.wait4`), its
rate is lines over the time after loading (a 1-line run of the same command measures the
loading). The batch path (`graft predict BUNDLE --input FILE`, everything in memory, JSON lines
on stdout) runs on the sizes in `--batch-lines` for comparison.

    python benchmarks/stream_predict.py runs/sst2/bundle --backend onnx-int8 \
        --lines 10000 1000000 --batch-lines 10000
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from itertools import cycle, islice
from pathlib import Path

from graftwork.config.recipe import data_root
from graftwork.machine import cpu_name


def sentences() -> list[str]:
    out = []
    for split in ("train", "dev"):
        with open(Path(data_root()) / "sst2" / f"{split}.tsv", encoding="utf-8") as fh:
            next(fh)
            out += [line.split("\t")[0] for line in fh]
    return out


def count_lines(path: Path) -> int:
    with open(path, "rb") as fh:
        return sum(1 for _ in fh)


def input_file(workdir: Path, lines: int, texts: list[str]) -> Path:
    path = workdir / f"input-{lines}.jsonl"
    if not path.is_file() or count_lines(path) != lines:
        with open(path, "w", encoding="utf-8") as fh:
            for text in islice(cycle(texts), lines):
                fh.write(json.dumps({"text": text}) + "\n")
    return path


def measured(command: list[str], stdout=None) -> tuple[float, float]:
    """(seconds, peak RSS in MB) of `command` in a fresh process."""
    env = {**os.environ, "OMP_NUM_THREADS": os.environ.get("OMP_NUM_THREADS", "2")}
    started = time.perf_counter()
    proc = subprocess.Popen(command, stdout=stdout, env=env)
    _, status, usage = os.wait4(proc.pid, 0)
    seconds = time.perf_counter() - started
    if os.waitstatus_to_exitcode(status) != 0:
        raise SystemExit(f"failed: {' '.join(command)}")
    return seconds, usage.ru_maxrss / 1024


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("bundle")
    parser.add_argument("--lines", type=int, nargs="+", default=[10_000, 1_000_000])
    parser.add_argument("--batch-lines", type=int, nargs="*", default=[10_000])
    parser.add_argument("--backend", default="auto")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--workdir", type=Path, default=Path("/tmp/graft-stream-bench"))
    args = parser.parse_args()
    args.workdir.mkdir(parents=True, exist_ok=True)
    texts = sentences()
    graft = [sys.executable, "-m", "graftwork.cli", "predict", args.bundle]
    options = ["--backend", args.backend, "--threads", str(args.threads)]

    def stream(lines: int) -> tuple[float, float]:
        output = args.workdir / f"output-{lines}.jsonl"
        output.unlink(missing_ok=True)
        inputs = input_file(args.workdir, lines, texts)
        result = measured([*graft, "--input", str(inputs), "--output", str(output), *options])
        if count_lines(output) != lines:
            raise SystemExit(f"{output}: not {lines} lines")
        output.unlink()
        return result

    load_seconds, load_rss = stream(1)
    rows = [{"path": "stream", "lines": 1, "seconds": load_seconds, "peak_rss_mb": load_rss}]
    for lines in args.lines:
        seconds, rss = stream(lines)
        rows.append({"path": "stream", "lines": lines, "seconds": seconds, "peak_rss_mb": rss})
    for lines in args.batch_lines:
        inputs = input_file(args.workdir, lines, texts)
        with open(os.devnull, "w") as sink:
            seconds, rss = measured([*graft, "--input", str(inputs), *options], stdout=sink)
        rows.append({"path": "batch", "lines": lines, "seconds": seconds, "peak_rss_mb": rss})
    for row in rows:
        work = row["seconds"] - load_seconds
        row["lines_per_second"] = round(row["lines"] / work, 1) if row["lines"] > 1 else None
    print(
        json.dumps(
            {
                "cpu": cpu_name(),
                "bundle": args.bundle,
                "backend": args.backend,
                "threads": args.threads,
                "load_seconds": load_seconds,
                "rows": rows,
            },
            indent=2,
        )
    )
    print("| path | lines | seconds | peak RSS (MB) | lines/s after loading |")
    print("| --- | ---: | ---: | ---: | ---: |")
    for row in rows:
        print(
            f"| {row['path']} | {row['lines']:,} | {row['seconds']:.1f} | "
            f"{row['peak_rss_mb']:.0f} | {row['lines_per_second'] or '-'} |"
        )


if __name__ == "__main__":
    main()
