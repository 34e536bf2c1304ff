"""`graft serve` against `graft serve --ray` on one machine: the same bundle, the same load.

Each server runs as a subprocess on 127.0.0.1 (as `benchmarks/serve_load.py` starts them),
then `wrk` (one thread, `--clients` connections, `benchmarks/serve_wrk.lua`: one SST-2 dev
sentence per request) loads it for `--seconds`. The two sides:

- `graft serve --threads T`: one process, uvicorn, T model threads;
- `graft serve --ray --replicas R --threads 1`: Ray started on this machine, Ray Serve's proxy
  in front of R replicas, each with graftwork's app and one model thread.

What it shows is what Ray's proxy hop and the replicas cost or buy on one machine; on a
cluster the replicas would sit on other machines, which one machine cannot show.

    python benchmarks/serve_ray.py --bundle runs/quickstart/bundle                 # 20 s each
    python benchmarks/serve_ray.py --bundle B --replicas 2 --threads 1 --seconds 10
"""

from __future__ import annotations

import argparse
import os
import shutil
import sys
from pathlib import Path

from graftwork.machine import cpu_name
from serve_load import Server, show, wrk_test


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--bundle", type=Path, required=True, help="a bundle folder")
    parser.add_argument("--seconds", type=float, default=20, help="load time per server")
    parser.add_argument("--clients", type=int, default=64)
    parser.add_argument("--replicas", type=int, default=2)
    parser.add_argument("--threads", type=int, default=1, help="model threads of graft serve")
    parser.add_argument("--backend", default="auto", help="auto | torch | onnx | onnx-int8")
    args = parser.parse_args()
    if not shutil.which("wrk"):
        raise SystemExit("wrk is not installed (apt-get install wrk)")
    base = [sys.executable, "-m", "graftwork.cli", "serve", f"bench={args.bundle}"]
    base += ["--port", "0", "--log-level", "warning", "--backend", args.backend]
    servers = {
        f"graft serve ({args.threads} thr)": [*base, "--threads", str(args.threads)],
        f"--ray ({args.replicas}x1 thr)": [
            *base,
            *["--ray", "--replicas", str(args.replicas), "--threads", "1"],
        ],
    }
    rows = {}
    for name, command in servers.items():
        server = Server(command)
        try:
            rows[name] = wrk_test(server.url, args.clients, args.seconds)
        finally:
            server.stop()
    print(
        f"CPU: {cpu_name()} ({os.cpu_count()} cores); {args.clients} connections (wrk), "
        f"{args.seconds:g} s each, bundle {args.bundle}, backend {args.backend}"
    )
    print(
        f"{'server':20}{'req/s':>10}{'p50 ms':>10}{'p95 ms':>10}{'p99 ms':>10}"
        f"{'non-2xx':>9}{'socket':>8}"
    )
    for name, row in rows.items():
        show(name, row)
    plain, ray = rows.values()
    print(
        f"--ray / graft serve: {ray['requests_per_second'] / plain['requests_per_second']:.2f}x "
        f"requests/s, p99 {ray['p99_ms'] / plain['p99_ms']:.2f}x"
    )


if __name__ == "__main__":
    main()
