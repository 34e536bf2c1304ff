"""`graft serve` as a user runs it: names, flags, the printed address, and draining on SIGTERM."""

from __future__ import annotations

import asyncio
import os
import queue
import re
import signal
import subprocess
import sys
import threading
import time

import httpx
import pytest
import torch
from typer.testing import CliRunner

from conftest import tiny_recipe
from graftwork.cli import app, main
from graftwork.errors import GraftError
from graftwork.inference.predictor import load
from graftwork.runs import finetune as pipeline
from graftwork.serve import load_models, make_config
from graftwork.tasks import classification

runner = CliRunner()


@pytest.fixture(scope="module")
def bundle(tiny_bert, sst2_small, tmp_path_factory):
    recipe = tiny_recipe(tiny_bert, sst2_small, tmp_path_factory.mktemp("serve-cli"), name="sst")
    recipe["data"]["max_train_examples"] = 64
    return pipeline.train(recipe).bundle


def test_models_are_named_by_manifest_or_by_name_equals_path(bundle):
    config = make_config(threads=torch.get_num_threads())  # torch's setting is global
    assert [m.name for m in load_models([str(bundle), f"other={bundle}"], config)] == [
        "sst",
        "other",
    ]
    with pytest.raises(GraftError, match="two bundles are named 'sst'"):
        load_models([str(bundle), str(bundle)], config)
    with pytest.raises(GraftError, match="cannot be a model name"):
        load_models([f"a b={bundle}"], config)


def test_every_flag_has_an_environment_variable():
    result = runner.invoke(app, ["serve", "--help"], env={"COLUMNS": "200"})
    assert result.exit_code == 0
    flags = set(re.findall(r"--([a-z][a-z-]+)", result.output)) - {"help"}
    flags = {f for f in flags if f.removeprefix("no-") not in flags - {f}}  # --no-X: X's variable
    variables = set(re.findall(r"GRAFT_([A-Z_]+)", result.output))
    assert {f.replace("-", "_").upper() for f in flags} <= variables


def graft(monkeypatch, capsys, *args: str) -> tuple[int, str]:
    """`graft ARGS` as the console script runs it: (exit status, what it printed to stderr)."""
    monkeypatch.setattr(sys, "argv", ["graft", *args])
    with pytest.raises(SystemExit) as exited:
        main()
    return exited.value.code, capsys.readouterr().err


def test_a_token_set_but_empty_stops_graft_serve_before_it_starts(bundle, monkeypatch, capsys):
    monkeypatch.setenv("GRAFT_API_TOKEN", "")
    status, stderr = graft(monkeypatch, capsys, "serve", str(bundle), "--port", "0")
    assert status == 2 and "GRAFT_API_TOKEN is set but empty" in stderr
    assert "Traceback" not in stderr


def test_blank_texts_are_refused_by_predict_naming_where_they_are(
    bundle, tmp_path, monkeypatch, capsys
):
    status, stderr = graft(monkeypatch, capsys, "predict", str(bundle), "a fine film", " ")
    assert status == 2 and "text 2 is empty or only whitespace" in " ".join(stderr.split())
    inputs = tmp_path / "in.jsonl"
    inputs.write_text('{"text": "one"}\n{"text": ""}\n')
    status, stderr = graft(monkeypatch, capsys, "predict", str(bundle), "x", "--input", str(inputs))
    assert status == 2 and "line 2: the text is empty" in " ".join(stderr.split())
    with pytest.raises(GraftError, match=r"texts\[1\] is empty or only whitespace"):
        load(bundle).predict(["a fine film", "\u200b"])


def lines_of(stream) -> queue.Queue:
    lines: queue.Queue = queue.Queue()
    threading.Thread(target=lambda: [lines.put(line) for line in stream], daemon=True).start()
    return lines


def test_sigterm_drains_every_accepted_request(bundle):
    env = {**os.environ, "GRAFT_MAX_WAIT_MS": "1500", "GRAFT_PORT": "0"}
    proc = subprocess.Popen(
        [sys.executable, "-m", "graftwork.cli", "serve", str(bundle), "--max-batch-size", "64"],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=env,
    )
    try:
        stdout = lines_of(proc.stdout)
        first = stdout.get(timeout=60)
        url = re.search(r"listening on (http://127\.0\.0\.1:\d+)", first).group(1)
        shown = stdout.get(timeout=5) + stdout.get(timeout=5)
        assert "curl -s" in shown and classification.EXAMPLE in shown
        deadline = time.monotonic() + 30
        while httpx.get(f"{url}/ready").status_code != 200:
            assert time.monotonic() < deadline
            time.sleep(0.05)
        texts = [f"film number {i} is {'good' if i % 2 else 'bad'}" for i in range(24)]

        async def main():
            async with httpx.AsyncClient(base_url=url, timeout=60) as client:
                path = "/v1/models/sst/predict"
                tasks = [
                    asyncio.create_task(client.post(path, json={"inputs": [t]})) for t in texts
                ]
                while True:  # every request accepted and waiting for its batch
                    metrics = (await client.get("/metrics")).text
                    if 'graft_requests_in_flight{model="sst"} 24' in metrics:
                        break
                    await asyncio.sleep(0.02)
                proc.send_signal(signal.SIGTERM)
                return await asyncio.gather(*tasks)

        responses = asyncio.run(main())
        assert [r.status_code for r in responses] == [200] * len(texts)
        assert all(r.json()["outputs"][0]["label"] in ("0", "1") for r in responses)
        # uvicorn re-raises the signal once drained, so the parent sees how it ended
        assert proc.wait(timeout=30) in (0, -signal.SIGTERM)
        stderr = proc.stderr.read()
        assert "Traceback" not in stderr
        assert "WARNING:  no API token: any program on this machine can use" in stderr
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
