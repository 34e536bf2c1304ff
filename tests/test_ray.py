"""`graft serve --ray` and `graft predict --ray` on a local single-node Ray.

One Ray session for the module (Ray starts in seconds, not milliseconds): 8 logical CPUs, so
that the two Serve replicas (one CPU each), the two Ray Data workers and Ray Data's reading
tasks fit side by side (Ray's CPUs are counts it schedules by, not cores). The
model is a tiny bundle trained here on real SST-2 rows; the texts are real SST-2 sentences.
Where Ray cannot start, every test here is skipped with Ray's reason.
"""

from __future__ import annotations

import json
import logging
from concurrent.futures import ThreadPoolExecutor

import httpx
import pytest
from fastapi.testclient import TestClient
from typer.testing import CliRunner

from conftest import DATA, tiny_recipe
from graftwork.cli import app as cli
from graftwork.runs import finetune
from graftwork.serve import create_app, load_models, make_config

ray = pytest.importorskip("ray", reason="Ray is not installed (pip install 'graftwork[ray]')")
serve = pytest.importorskip("ray.serve", reason="Ray Serve is not installed")
ray_serve = pytest.importorskip("graftwork.serve.ray_serve")

TOKEN = "ray-s3cret"
AUTH = {"Authorization": f"Bearer {TOKEN}"}


def sst2_texts(start: int, count: int) -> list[str]:
    with open(DATA / "sst2" / "dev.tsv", encoding="utf-8") as fh:
        rows = [line.split("\t")[0] for line in list(fh)[1:]]
    return rows[start : start + count]


@pytest.fixture(scope="module")
def bundle(tiny_bert, sst2_small, tmp_path_factory):
    folder = tmp_path_factory.mktemp("ray")
    # enough steps that scores differ by text (as tests/test_serve.py trains it)
    recipe = tiny_recipe(tiny_bert, sst2_small, folder, name="sst", train={"epochs": 3, "lr": 5e-3})
    recipe["data"]["max_train_examples"] = 160
    return finetune.train(recipe).bundle


@pytest.fixture(scope="module")
def ray_session():
    try:
        ray.init(num_cpus=8, include_dashboard=False, logging_level=logging.WARNING)
    except Exception as exc:  # a sandbox without shared memory or sockets, say
        pytest.skip(f"Ray cannot start here: {type(exc).__name__}: {exc}")
    yield
    serve.shutdown()
    ray.shutdown()


@pytest.fixture(scope="module")
def deployed(ray_session, bundle):
    """`graft serve --ray --replicas 2` with a token; yields the proxy's URL."""
    config = make_config(host="127.0.0.1", port=0, log_level="warning")
    url, served = ray_serve.deploy([f"sst={bundle}"], config, TOKEN, replicas=2)
    assert [m["name"] for m in served] == ["sst"]
    yield url
    ray_serve.stop(started=False)


def running_replicas() -> int:
    deployments = serve.status().applications[ray_serve.APP].deployments
    return deployments[ray_serve.DEPLOYMENT].replica_states.get("RUNNING", 0)


def test_two_replicas_answer_as_graft_serve_does(deployed, bundle):
    texts = [sst2_texts(8 * i, 8) for i in range(6)]
    with ThreadPoolExecutor(6) as pool:  # concurrent, so both replicas take requests
        replies = list(
            pool.map(
                lambda inputs: httpx.post(
                    f"{deployed}/v1/models/sst/predict", json={"inputs": inputs}, headers=AUTH
                ),
                texts,
            )
        )
    assert running_replicas() == 2
    config = make_config(threads=1, log_level="warning")
    app = create_app(load_models([f"sst={bundle}"], config), config)
    with TestClient(app, base_url="http://127.0.0.1") as local:  # a loopback Host
        for inputs, reply in zip(texts, replies, strict=True):
            assert reply.status_code == 200, reply.text
            want = local.post("/v1/models/sst/predict", json={"inputs": inputs}).json()
            got = reply.json()
            assert [o["label"] for o in got["outputs"]] == [o["label"] for o in want["outputs"]]
            assert [o["score"] for o in got["outputs"]] == pytest.approx(
                [o["score"] for o in want["outputs"]], abs=1e-5
            )


def test_the_token_is_required_through_ray(deployed):
    body = {"inputs": sst2_texts(0, 1)}
    url = f"{deployed}/v1/models/sst/predict"
    assert httpx.post(url, json=body).status_code == 401
    wrong = httpx.post(url, json=body, headers={"Authorization": "Bearer nope"})
    assert wrong.status_code == 401 and wrong.json()["error"]["type"] == "unauthorized"
    assert httpx.post(url, json=body, headers=AUTH).status_code == 200
    assert httpx.get(f"{deployed}/health").status_code == 200  # liveness needs no token


def test_ray_predict_writes_the_file_graft_predict_writes(ray_session, bundle, tmp_path):
    texts = sst2_texts(0, 120)
    path = tmp_path / "texts.jsonl"
    path.write_text("".join(json.dumps({"text": t}) + "\n" for t in texts), encoding="utf-8")
    runner = CliRunner()
    outputs = {}
    for name, extra in (("plain", []), ("ray", ["--ray", "--workers", "2"])):
        outputs[name] = tmp_path / f"{name}.jsonl"
        args = ["predict", str(bundle), "--input", str(path), "--output", str(outputs[name])]
        result = runner.invoke(cli, [*args, "--threads", "1", *extra])
        assert result.exit_code == 0, result.output
    got = [json.loads(line) for line in outputs["ray"].read_text(encoding="utf-8").splitlines()]
    want = [json.loads(line) for line in outputs["plain"].read_text(encoding="utf-8").splitlines()]
    assert [(g["text"], g["label"]) for g in got] == [(w["text"], w["label"]) for w in want]
    assert [g["score"] for g in got] == pytest.approx([w["score"] for w in want], abs=1e-5)
