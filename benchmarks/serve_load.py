"""Serving under load: `graft serve` (dynamic batching) against a naive server, same model.

Both servers run as subprocesses on 127.0.0.1 with the same settings (uvicorn, one process,
the same torch threads and backend, access log off); the threads default to what `graft
serve` picks (all cores but one) and are given to both explicitly. The naive server is what
one writes first: FastAPI calling `Predictor.predict` on each request's texts, one forward
pass per request, one request at a time (a single model thread, as a lock around the model
would).

1. Load: `--clients` concurrent connections send SST-2 dev sentences
   (`recipe.data_root()/sst2/dev.tsv`), one per request, for `--seconds`. The load generator is
   `wrk` (C, with `benchmarks/serve_wrk.lua`) when it is installed (`apt-get install wrk`),
   else asyncio + httpx clients, which on 2 cores take a core from the servers (`--load`
   chooses). Reported per server: requests/s, p50, p95 and p99 latency, non-2xx answers and
   socket errors; then graft/naive ratios.
   The naive server runs once per `--naive-backends` entry: `same` (graft serve's backend:
   isolates what batching buys) and `torch` (a transformers model per request: the Flask
   wrapper users write today).
2. Long texts (graft serve only; the naive server truncates): one document at a time of about
   1k, 5k and 20k tokens (SST-2 dev sentences joined, counted with the bundle's tokenizer),
   `--repeats` times each; reported as milliseconds per 1,000 tokens and windows used.

The client shares the machine with the server, as it would on one host; on few cores it takes
CPU from both servers alike. Results go to `--out` (JSON) with the CPU's name.

    python benchmarks/serve_load.py --bundle runs/quickstart/bundle              # 30 s each
    python benchmarks/serve_load.py --bundle B --naive-backends same --load python
    python benchmarks/serve_load.py --bundle runs/quickstart/bundle --seconds 5 --out x.json
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import queue
import re
import shutil
import subprocess
import sys
import threading
import time
from pathlib import Path

import httpx
import numpy as np
from pydantic import BaseModel

from graftwork.config.recipe import data_root
from graftwork.machine import cpu_name
from graftwork.serve.model import serving_threads

LONG_TOKENS = (1_000, 5_000, 20_000)


def sst2_dev() -> list[str]:
    lines = (Path(data_root()) / "sst2" / "dev.tsv").read_text(encoding="utf-8").splitlines()
    return [line.split("\t", 1)[1] for line in lines[1:] if "\t" in line]


# The naive server (run by this same script as a subprocess) ---------------------------------


class NaiveRequest(BaseModel):
    inputs: list[str]


def naive_server(bundle: Path, threads: int | None, backend: str) -> None:
    """One forward pass per request, one request at a time; prints its address, then serves."""
    from concurrent.futures import ThreadPoolExecutor

    import uvicorn
    from fastapi import FastAPI

    from graftwork.backbones.quiet import quiet_libraries
    from graftwork.inference.predictor import load
    from graftwork.serve import listen

    quiet_libraries()
    predictor = load(bundle, threads=threads, backend=backend)
    model_thread = ThreadPoolExecutor(1)
    app = FastAPI()

    @app.get("/ready")
    async def ready():
        return {"status": "ready"}

    @app.post("/v1/models/{name}/predict")
    async def predict(name: str, request: NaiveRequest):
        loop = asyncio.get_running_loop()
        outputs = await loop.run_in_executor(model_thread, predictor.predict, request.inputs)
        return {"model": name, "outputs": outputs}

    predictor.predict(["warm up"])
    sock = listen("127.0.0.1", 0)
    host, port = sock.getsockname()[:2]
    print(f"naive server: listening on http://{host}:{port}", flush=True)
    config = uvicorn.Config(app, log_level="warning", access_log=False, lifespan="on")
    uvicorn.Server(config).run(sockets=[sock])


# Starting and stopping servers --------------------------------------------------------------


class Server:
    """A server subprocess; `url` once it printed where it listens and answers /ready."""

    def __init__(self, command: list[str], token: str | None = None):
        self.proc = subprocess.Popen(
            command, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
        )
        self.lines: queue.Queue = queue.Queue()
        threading.Thread(target=self._read, daemon=True).start()
        self.url = self._wait_for_url(120)
        self._wait_ready(120)

    def _read(self) -> None:
        for line in self.proc.stdout:
            self.lines.put(line)

    def _wait_for_url(self, timeout: float) -> str:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            try:
                line = self.lines.get(timeout=1)
            except queue.Empty:
                if self.proc.poll() is not None:
                    raise SystemExit(f"server exited: {self.proc.stderr.read()[-2000:]}") from None
                continue
            match = re.search(r"listening on (http://127\.0\.0\.1:\d+)", line)
            if match:
                return match.group(1)
        raise SystemExit("server did not start in time")

    def _wait_ready(self, timeout: float) -> None:
        deadline = time.monotonic() + timeout
        while httpx.get(f"{self.url}/ready", timeout=10).status_code != 200:
            if time.monotonic() > deadline:
                raise SystemExit("server never became ready")
            time.sleep(0.1)

    def stop(self) -> None:
        self.proc.terminate()
        try:
            self.proc.wait(timeout=60)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()


# Load ---------------------------------------------------------------------------------------


async def load_test(url: str, texts: list[str], clients: int, seconds: float) -> dict:
    """`clients` loops, each sending one text per request until time is up."""
    bodies = [json.dumps({"inputs": [t]}).encode() for t in texts]
    latencies: list[float] = []
    statuses: dict[str, int] = {}
    counter = iter(range(10**12))
    headers = {"Content-Type": "application/json"}
    limits = httpx.Limits(max_connections=clients, max_keepalive_connections=clients)
    async with httpx.AsyncClient(base_url=url, timeout=30, limits=limits) as client:
        start = time.perf_counter()
        stop_at = start + seconds

        async def one_client() -> None:
            while time.perf_counter() < stop_at:
                body = bodies[next(counter) % len(bodies)]
                sent = time.perf_counter()
                try:
                    response = await client.post(
                        "/v1/models/bench/predict", content=body, headers=headers
                    )
                    key = str(response.status_code)
                except httpx.HTTPError as exc:
                    key = type(exc).__name__
                statuses[key] = statuses.get(key, 0) + 1
                if key == "200":
                    latencies.append(time.perf_counter() - sent)

        await asyncio.gather(*(one_client() for _ in range(clients)))
        elapsed = time.perf_counter() - start
    ms = np.array(latencies) * 1000 if latencies else np.array([float("nan")])
    answered = sum(n for k, n in statuses.items() if k.isdigit())
    return {
        "load": "python",
        "requests": sum(statuses.values()),
        "ok": len(latencies),
        "seconds": elapsed,
        "requests_per_second": len(latencies) / elapsed,
        "p50_ms": float(np.percentile(ms, 50)),
        "p95_ms": float(np.percentile(ms, 95)),
        "p99_ms": float(np.percentile(ms, 99)),
        "non_2xx": answered - len(latencies),
        "socket_errors": sum(statuses.values()) - answered,
        "statuses": statuses,
    }


WRK_SCRIPT = Path(__file__).with_name("serve_wrk.lua")


def wrk_test(url: str, clients: int, seconds: float) -> dict:
    """The same load from `wrk` (one thread, `clients` connections), parsed from its done()."""
    command = ["wrk", "-t1", f"-c{clients}", f"-d{seconds:g}s", "--timeout", "30s"]
    command += ["-s", str(WRK_SCRIPT), f"{url}/v1/models/bench/predict"]
    env = {**os.environ, "GRAFT_DATA": str(data_root())}
    done = subprocess.run(command, capture_output=True, text=True, env=env, check=True)
    line = next(x for x in done.stdout.splitlines() if x.startswith("GRAFT-WRK "))
    requests, elapsed, p50, p95, p99, non_2xx, socket_errors = line.split()[1:]
    ok = int(requests) - int(non_2xx)
    return {
        "load": "wrk",
        "requests": int(requests),
        "ok": ok,
        "seconds": float(elapsed),
        "requests_per_second": ok / float(elapsed),
        "p50_ms": float(p50),
        "p95_ms": float(p95),
        "p99_ms": float(p99),
        "non_2xx": int(non_2xx),
        "socket_errors": int(socket_errors),
    }


def long_documents(bundle: Path, texts: list[str]) -> dict[int, str]:
    """Documents of about each size in LONG_TOKENS tokens, from SST-2 dev sentences."""
    from transformers import AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(str(bundle))
    counts = [len(ids) - 2 for ids in tokenizer(texts)["input_ids"]]
    docs = {}
    for target in LONG_TOKENS:
        parts, total, i = [], 0, 0
        while total < target:
            parts.append(texts[i % len(texts)])
            total += counts[i % len(texts)]
            i += 1
        docs[target] = " ".join(parts)
    return docs


def long_text_latency(url: str, docs: dict[int, str], repeats: int) -> list[dict]:
    rows = []
    with httpx.Client(base_url=url, timeout=600) as client:
        for tokens, doc in docs.items():
            times, windows = [], None
            for _ in range(repeats):
                sent = time.perf_counter()
                response = client.post("/v1/models/bench/predict", json={"inputs": [doc]})
                times.append(time.perf_counter() - sent)
                if response.status_code != 200:
                    raise SystemExit(f"long text of {tokens} tokens: {response.text[:500]}")
                windows = response.json()["outputs"][0]["windows"]
            ms = float(np.median(times) * 1000)
            rows.append(
                {
                    "tokens": tokens,
                    "chars": len(doc),
                    "windows": windows,
                    "ms": ms,
                    "ms_per_1k_tokens": ms / (tokens / 1000),
                }
            )
    return rows


# Report -------------------------------------------------------------------------------------


def show(name: str, row: dict) -> None:
    print(
        f"{name:20}{row['requests_per_second']:10.1f}{row['p50_ms']:10.1f}{row['p95_ms']:10.1f}"
        f"{row['p99_ms']:10.1f}{row['non_2xx']:9d}{row['socket_errors']:8d}"
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--bundle", type=Path, required=True, help="a bundle folder")
    parser.add_argument("--seconds", type=float, default=30, help="load time per server")
    parser.add_argument("--clients", type=int, default=64)
    parser.add_argument("--repeats", type=int, default=3, help="long-text runs per size")
    parser.add_argument("--threads", type=int, default=None, help="torch threads (both servers)")
    parser.add_argument("--backend", default="auto", help="auto | torch | onnx | onnx-int8")
    parser.add_argument(
        "--naive-backends",
        default="same,torch",
        help="naive server backends, comma-separated: same (graft serve's) and/or a backend",
    )
    parser.add_argument("--load", default="auto", choices=["auto", "wrk", "python"])
    parser.add_argument("--skip-long", action="store_true", help="skip the long-text part")
    parser.add_argument("--out", type=Path, default=Path("runs/bench/serve_load.json"))
    parser.add_argument("--naive-server", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.naive_server:
        return naive_server(args.bundle, args.threads, args.backend)

    texts = sst2_dev()
    threads = args.threads or serving_threads()
    load = args.load if args.load != "auto" else ("wrk" if shutil.which("wrk") else "python")
    if load == "wrk" and not shutil.which("wrk"):
        raise SystemExit("--load wrk: wrk is not installed (apt-get install wrk)")
    graft_cmd = [sys.executable, "-m", "graftwork.cli", "serve", f"bench={args.bundle}"]
    graft_cmd += ["--port", "0", "--max-input-chars", "1000000", "--log-level", "warning"]
    graft_cmd += ["--backend", args.backend, "--threads", str(threads)]
    servers = {"graft serve": graft_cmd}
    for backend in args.naive_backends.split(","):
        backend = args.backend if backend == "same" else backend
        servers[f"naive ({backend})"] = [
            sys.executable,
            os.path.abspath(__file__),
            "--naive-server",
            "--bundle",
            str(args.bundle),
            *["--backend", backend, "--threads", str(threads)],
        ]
    results: dict = {
        "cpu": cpu_name(),
        "cores": os.cpu_count(),
        "bundle": str(args.bundle),
        "clients": args.clients,
        "threads": threads,
        "seconds": args.seconds,
        "load": load,
        "texts": "sst2/dev.tsv",
        "servers": {},
    }
    for name, command in servers.items():
        server = Server(command)
        try:
            if load == "wrk":
                row = wrk_test(server.url, args.clients, args.seconds)
            else:
                row = asyncio.run(load_test(server.url, texts, args.clients, args.seconds))
            results["servers"][name] = row
            if name == "graft serve":
                row["metrics"] = httpx.get(f"{server.url}/metrics").text
                if not args.skip_long:
                    docs = long_documents(args.bundle, texts)
                    results["long_text"] = long_text_latency(server.url, docs, args.repeats)
        finally:
            server.stop()
    graft = results["servers"]["graft serve"]
    print(
        f"CPU: {results['cpu']} ({results['cores']} cores, {threads} model threads); "
        f"{args.clients} connections ({load}), {args.seconds:g} s each, bundle {args.bundle}, "
        f"backend {args.backend}"
    )
    print(
        f"{'server':20}{'req/s':>10}{'p50 ms':>10}{'p95 ms':>10}{'p99 ms':>10}"
        f"{'non-2xx':>9}{'socket':>8}"
    )
    for name, row in results["servers"].items():
        show(name, row)
    results["ratios"] = {}
    for name, row in results["servers"].items():
        if name == "graft serve":
            continue
        ratio = {
            "requests_per_second": graft["requests_per_second"]
            / max(row["requests_per_second"], 1e-9),
            "p50": graft["p50_ms"] / row["p50_ms"],
            "p99": graft["p99_ms"] / row["p99_ms"],
        }
        results["ratios"][name] = ratio
        print(
            f"graft serve / {name}: {ratio['requests_per_second']:.2f}x requests/s, "
            f"p50 {ratio['p50']:.2f}x, p99 {ratio['p99']:.2f}x"
        )
    for row in results.get("long_text", []):
        print(
            f"long text {row['tokens']:>6} tokens: {row['windows']:4d} windows, "
            f"{row['ms']:9.1f} ms, {row['ms_per_1k_tokens']:7.1f} ms per 1,000 tokens"
        )
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(results, indent=2))
    print(f"written: {args.out}")


if __name__ == "__main__":
    main()
