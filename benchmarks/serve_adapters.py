"""Many adapters on one backbone (issue 22 item 1): memory and throughput of `graft serve`.

Eight LoRA bundles of minilm-l6 (SST-2 classification, r 8 on query and value, the head
trained in full) are made first, or reused from `--work`: each is *quick-trained*, one step
on 16 SST-2 training rows at a high learning rate with its own seed, so that its LoRA weights
and head are nonzero and differ from the others' (their accuracy is beside the point here).

1. Resident memory (VmRSS of the server process, after it is ready and every model has
   answered a request): `graft serve` with one bundle, with the eight sharing one backbone (the
   default), and with the eight loaded separately (`--no-share-backbone`). Goal: eight shared
   at most 1.25x one bundle.
2. Throughput of the eight-adapter server (the same server, one after the other in one run):
   `--clients` connections each sending one SST-2 dev sentence per request for `--seconds`,
   all to one adapter, then uniformly mixed (request i to adapter i mod 8). Goal: mixed at
   least 80 % of single-adapter. The one-bundle server's rate under the same single-model load
   is printed beside them (it runs the merged weights, so no LoRA matmuls).

The load generator is asyncio + httpx in this process (`serve_load.py`'s client, with a
model chosen per request), so on 2 cores it takes CPU from the server; both sides of each ratio
share that alike. Backend torch (only PyTorch shares a backbone), threads as `graft serve`
picks them.

    python benchmarks/serve_adapters.py                       # 20 s per load, 64 clients
    python benchmarks/serve_adapters.py --seconds 5 --out x.json
"""

from __future__ import annotations

import argparse
import asyncio
import json
import sys
import time
from pathlib import Path

import httpx
import numpy as np

sys.path.insert(0, str(Path(__file__).parent))
from graftwork.config.recipe import data_root  # noqa: E402
from graftwork.machine import cpu_name  # noqa: E402
from serve_load import Server, sst2_dev  # noqa: E402

ADAPTERS = 8


def make_bundles(work: Path) -> list[Path]:
    """Eight quick-trained LoRA bundles of minilm-l6 (reused when already there)."""
    from graftwork.runs import finetune

    sst2 = Path(data_root()) / "sst2"
    rows = (sst2 / "dev.tsv").read_text(encoding="utf-8").splitlines()
    work.mkdir(parents=True, exist_ok=True)
    small_eval = work / "eval.tsv"  # a short eval set: the bundle needs one, its score is moot
    small_eval.write_text("\n".join(rows[:33]) + "\n", encoding="utf-8")
    bundles = []
    for i in range(ADAPTERS):
        out = work / f"lora-{i}"
        if not (out / "bundle" / "graftwork.json").is_file():
            finetune.train(
                {
                    "name": f"lora-{i}",
                    "backbone": "minilm-l6",
                    "task": {"type": "classification"},
                    "data": {
                        "train": str(sst2 / "train.tsv"),
                        "eval": str(small_eval),
                        "max_length": 64,
                        "max_train_examples": 16,
                    },
                    "method": {"type": "lora", "r": 8, "alpha": 16},
                    "train": {"epochs": 1, "batch_size": 16, "lr": 5e-2, "seed": 100 + i},
                    "output_dir": str(work),  # the run writes work/NAME/bundle
                }
            )
        bundles.append(out / "bundle")
    return bundles


def serve_command(bundles: list[Path], share: bool) -> list[str]:
    command = [sys.executable, "-m", "graftwork.cli", "serve"]
    command += [f"a{i}={b}" for i, b in enumerate(bundles)]
    command += ["--port", "0", "--log-level", "warning", "--backend", "torch"]
    return command + ([] if share else ["--no-share-backbone"])


def rss_mib(pid: int) -> dict[str, float]:
    """VmRSS, and its anonymous and file-backed parts (mapped weights), in MiB."""
    fields = {}
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        key, _, value = line.partition(":")
        if key in ("VmRSS", "RssAnon", "RssFile"):
            fields[key] = int(value.split()[0]) / 1024
    if "VmRSS" not in fields:
        raise SystemExit("no VmRSS in /proc (Linux only)")
    return fields


def touch(url: str, models: list[str]) -> None:
    """One request per model, so every model has run (lazy allocations made)."""
    for name in models:
        body = {"inputs": ["a gripping, beautifully acted film"]}
        response = httpx.post(f"{url}/v1/models/{name}/predict", json=body, timeout=60)
        response.raise_for_status()


async def load(url: str, models: list[str], texts: list[str], clients: int, seconds: float):
    """`clients` loops; request n sends text n to model n mod len(models)."""
    bodies = [json.dumps({"inputs": [t]}).encode() for t in texts]
    latencies, errors, counter = [], 0, iter(range(10**12))
    headers = {"Content-Type": "application/json"}
    limits = httpx.Limits(max_connections=clients, max_keepalive_connections=clients)
    async with httpx.AsyncClient(base_url=url, timeout=60, limits=limits) as client:
        start = time.perf_counter()

        async def one_client() -> None:
            nonlocal errors
            while time.perf_counter() < start + seconds:
                n = next(counter)
                sent = time.perf_counter()
                path = f"/v1/models/{models[n % len(models)]}/predict"
                try:
                    response = await client.post(
                        path, content=bodies[n % len(bodies)], headers=headers
                    )
                    ok = response.status_code == 200
                except httpx.HTTPError:
                    ok = False
                if ok:
                    latencies.append(time.perf_counter() - sent)
                else:
                    errors += 1

        await asyncio.gather(*(one_client() for _ in range(clients)))
        elapsed = time.perf_counter() - start
    ms = np.array(latencies or [float("nan")]) * 1000
    return {
        "requests_per_second": len(latencies) / elapsed,
        "p50_ms": float(np.percentile(ms, 50)),
        "p99_ms": float(np.percentile(ms, 99)),
        "errors": errors,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--work", type=Path, default=Path("/tmp/graft-serve-adapters"))
    parser.add_argument("--seconds", type=float, default=20)
    parser.add_argument("--clients", type=int, default=64)
    parser.add_argument("--out", type=Path)
    args = parser.parse_args()
    bundles = make_bundles(args.work)
    names = [f"a{i}" for i in range(ADAPTERS)]
    texts = sst2_dev()
    result: dict = {"cpu": cpu_name(), "adapters": ADAPTERS, "clients": args.clients}
    print(f"CPU: {result['cpu']}; {ADAPTERS} quick-trained LoRA bundles of minilm-l6, torch")

    rss = {}
    for label, command, served in [
        ("one bundle", serve_command(bundles[:1], True), names[:1]),
        (f"{ADAPTERS} shared", serve_command(bundles, True), names),
        (f"{ADAPTERS} separate", serve_command(bundles, False), names),
    ]:
        server = Server(command)
        try:
            touch(server.url, served)
            fields = rss_mib(server.proc.pid)
            rss[label] = fields["VmRSS"]
            print(
                f"RSS {label:>12}: {rss[label]:7.1f} MiB (anonymous {fields['RssAnon']:.1f}, "
                f"file-backed {fields['RssFile']:.1f})",
                flush=True,
            )
            if label == "one bundle":
                alone = asyncio.run(load(server.url, names[:1], texts, args.clients, args.seconds))
                result["one_bundle_single"] = alone
            if label.endswith("shared"):
                single = asyncio.run(load(server.url, names[:1], texts, args.clients, args.seconds))
                mixed = asyncio.run(load(server.url, names, texts, args.clients, args.seconds))
                result.update(shared_single=single, shared_mixed=mixed)
        finally:
            server.stop()
    result["rss_mib"] = rss
    one = rss["one bundle"]
    print(
        f"memory: {ADAPTERS} shared {rss[f'{ADAPTERS} shared'] / one:.2f}x one bundle (goal "
        f"<= 1.25x), {ADAPTERS} separate {rss[f'{ADAPTERS} separate'] / one:.2f}x"
    )
    for label, key in [
        ("one bundle alone, single model", "one_bundle_single"),
        (f"{ADAPTERS} shared, single adapter", "shared_single"),
        (f"{ADAPTERS} shared, uniformly mixed", "shared_mixed"),
    ]:
        row = result[key]
        print(
            f"{label:>34}: {row['requests_per_second']:6.1f} req/s  p50 {row['p50_ms']:6.1f} ms"
            f"  p99 {row['p99_ms']:6.1f} ms  errors {row['errors']}"
        )
    ratio = result["shared_mixed"]["requests_per_second"] / max(
        result["shared_single"]["requests_per_second"], 1e-9
    )
    result["mixed_over_single"] = ratio
    print(f"throughput: mixed {100 * ratio:.0f} % of single-adapter (goal >= 80 %)")
    if args.out:
        args.out.write_text(json.dumps(result, indent=2), encoding="utf-8")


if __name__ == "__main__":
    main()
