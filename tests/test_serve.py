"""`graft serve` over HTTP: batching, windows, auth, limits and the OpenAPI contract.

Each test starts the real app under uvicorn in a thread on 127.0.0.1 (a free port) and talks
to it over loopback with httpx; the models are tiny bundles trained here on real SST-2 and
CoNLL-2003 rows, and the inputs are real sentences from the shared dev files.
"""

from __future__ import annotations

import asyncio
import math
import re
import threading
import time
from contextlib import contextmanager

import httpx
import pytest

from conftest import DATA, conll_sentences, tiny_recipe
from graftwork.inference.predictor import load
from graftwork.runs import finetune as pipeline
from graftwork.serve import ServedModel, address, create_app, listen, make_config, server
from graftwork.tasks import ner

TOKEN = "s3cret-token"


@pytest.fixture(scope="module")
def predictors(tiny_bert, sst2_small, conll_small, tmp_path_factory):
    """Two tiny bundles (max_length 64), trained just enough that answers differ by text.

    Loaded with one model thread, as `graft serve` picks on 2 cores (the other core serves
    HTTP); torch's thread count is global, so it is put back afterwards.
    """
    import torch

    saved = torch.get_num_threads()
    out = tmp_path_factory.mktemp("serve")
    bundles = {}
    # classification: enough steps that scores differ by text; NER: few, so it still tags
    # entities (longer, it learns to say O everywhere)
    runs = [
        ("sst", "classification", sst2_small, 160, {"epochs": 3, "lr": 5e-3}),
        ("conll", "ner", conll_small, 96, {"epochs": 1}),
    ]
    for name, task, data, examples, train in runs:
        recipe = tiny_recipe(tiny_bert, data, out, task=task, name=name, train=train)
        recipe["data"]["max_train_examples"] = examples
        bundles[name] = pipeline.train(recipe).bundle
    yield {name: load(bundle, threads=1) for name, bundle in bundles.items()}
    torch.set_num_threads(saved)


@contextmanager
def running(predictors, token: str | None = None, **settings):
    """The app for `predictors` under uvicorn (as `graft serve` runs it) in a thread; yields
    (base URL, served models)."""
    config = make_config(**{"host": "127.0.0.1", "port": 0, "log_level": "warning", **settings})
    models = [ServedModel(name, p, config) for name, p in predictors.items()]
    app = create_app(models, config, token=token)
    sock = listen("127.0.0.1", 0)
    uvicorn_server = server(app, config)
    thread = threading.Thread(target=uvicorn_server.run, kwargs={"sockets": [sock]}, daemon=True)
    thread.start()
    url = address(sock)
    headers = {"Authorization": f"Bearer {token}".encode()} if token else {}
    try:
        deadline = time.monotonic() + 20
        while True:
            try:
                if httpx.get(f"{url}/ready", headers=headers).status_code == 200:
                    break
            except httpx.TransportError:
                pass
            assert time.monotonic() < deadline, "server never became ready"
            time.sleep(0.05)
        yield url, models
    finally:
        uvicorn_server.should_exit = True
        thread.join(15)


def post_all(url: str, path: str, bodies: list[dict], headers=None) -> list[httpx.Response]:
    """POST every body at once (one connection each) and return the responses in order."""

    async def main():
        async with httpx.AsyncClient(base_url=url, timeout=60, headers=headers) as client:
            return await asyncio.gather(*(client.post(path, json=b) for b in bodies))

    return asyncio.run(main())


def metric(text: str, name: str, model: str) -> float:
    match = re.search(rf'^{name}{{model="{model}"}} (\S+)$', text, re.M)
    return float(match.group(1)) if match else 0.0


def fits(predictor, texts: list[str], words: bool = False) -> list[str]:
    """The texts that fit in one window (so Predictor.predict sees them whole too)."""
    tok = predictor.tokenizer
    if words:
        return [
            t
            for t in texts
            if len(tok(ner.from_text(t)["tokens"], is_split_into_words=True)["input_ids"])
            <= predictor.max_length
        ]
    return [t for t in texts if len(tok(t)["input_ids"]) <= predictor.max_length]


def sst2_dev(count: int) -> list[str]:
    lines = (DATA / "sst2" / "dev.tsv").read_text(encoding="utf-8").splitlines()[1:]
    return [line.split("\t", 1)[1] for line in lines[:count]]


def conll_dev(count: int) -> list[str]:
    blocks = conll_sentences(DATA / "conll2003" / "dev.txt", count).split("\n\n")
    sentences = [" ".join(line.split()[0] for line in b.splitlines()) for b in blocks]
    return [s for s in sentences if not s.startswith("-DOCSTART-")]


# Batching ------------------------------------------------------------------------------------


def test_concurrent_requests_each_get_their_own_answer(predictors):
    predictor = predictors["sst"]
    # keep texts whose answers differ from every other kept one, so a mix-up cannot pass
    texts, expected = [], {}
    for text in fits(predictor, sst2_dev(400)):
        answer = predictor.predict([text], top_k=2)[0]
        if all(abs(answer["score"] - e["score"]) > 1e-6 for e in expected.values()):
            texts.append(text)
            expected[text] = answer
        if len(texts) == 64:
            break
    assert len(texts) == 64, "the tiny model's answers are too alike to tell a mix-up"
    # 40 one-text requests and 8 three-text requests, all at once
    groups = [[t] for t in texts[:40]] + [texts[i : i + 3] for i in range(40, 64, 3)]
    with running(predictors, max_wait_ms=20, max_batch_size=16) as (url, _):
        bodies = [{"inputs": g, "top_k": 2} for g in groups]
        responses = post_all(url, "/v1/models/sst/predict", bodies)
        metrics = httpx.get(f"{url}/metrics").text
    for group, response in zip(groups, responses, strict=True):
        assert response.status_code == 200, response.text
        outputs = response.json()["outputs"]
        assert len(outputs) == len(group)
        for text, output in zip(group, outputs, strict=True):
            want = {s["label"]: s["score"] for s in expected[text]["top_k"]}
            got = {s["label"]: s["score"] for s in output["top_k"]}
            assert got == pytest.approx(want, abs=1e-7), text  # batched vs alone: ~1e-9
            assert output["windows"] == 1
    batches = metric(metrics, "graft_batch_size_count", "sst")
    windows = metric(metrics, "graft_batch_size_sum", "sst")
    assert windows / batches > 2, "concurrent requests were not batched together"


def test_concurrent_ner_requests_get_their_own_entities(predictors):
    predictor = predictors["conll"]
    texts = fits(predictor, conll_dev(80), words=True)[:32]
    expected = {t: predictor.predict([t])[0] for t in texts}
    with running(predictors, max_wait_ms=20) as (url, _):
        responses = post_all(url, "/v1/models/conll/predict", [{"inputs": [t]} for t in texts])
    for text, response in zip(texts, responses, strict=True):
        assert response.status_code == 200, response.text
        output = response.json()["outputs"][0]
        assert output["tags"] == expected[text]["tags"], text
        spans = [(e["type"], e["start"], e["end"], e["text"]) for e in output["entities"]]
        want = [(e["type"], e["start"], e["end"], e["text"]) for e in expected[text]["entities"]]
        assert spans == want


# Long texts ----------------------------------------------------------------------------------


def long_document(sentences: list[str], predictor, tokens: int) -> str:
    doc, used = [], 0
    for sentence in sentences:
        doc.append(sentence)
        used = len(predictor.tokenizer(" ".join(doc))["input_ids"])
        if used > tokens:
            return " ".join(doc)
    raise AssertionError("not enough sentences for the document")


def test_long_document_is_split_into_windows_and_answered(predictors):
    predictor = predictors["sst"]
    doc = long_document(sst2_dev(200), predictor, tokens=600)
    content = len(predictor.tokenizer(doc)["input_ids"]) - 2  # less [CLS] and [SEP]
    with running(predictors, window=64, stride=16) as (url, _):
        answers = {
            how: httpx.post(
                f"{url}/v1/models/sst/predict", json={"inputs": [doc], "aggregate": how}
            ).json()["outputs"][0]
            for how in ("mean", "max")
        }
    room = 64 - 2
    assert answers["mean"]["windows"] == 1 + math.ceil((content - room) / (room - 16))
    for answer in answers.values():
        assert answer["label"] in ("0", "1") and 0.5 <= answer["score"] <= 1
    assert answers["mean"]["score"] != answers["max"]["score"]


def test_ner_offsets_point_into_the_original_text(predictors):
    predictor = predictors["conll"]
    odd = "  Peter   Blackburn\tvisited São Paulo,\n\nBrazil — on Monday (1996-08-22).  "
    doc = odd + long_document(conll_dev(200), predictor, tokens=700) + odd
    words = ner.from_text(doc)
    with running(predictors, window=48, stride=12) as (url, _):
        response = httpx.post(f"{url}/v1/models/conll/predict", json={"inputs": [doc, odd]})
    assert response.status_code == 200, response.text
    long, short = response.json()["outputs"]
    assert long["windows"] > 10 and short["windows"] == 1
    assert len(long["tags"]) == len(words["tokens"])  # every word got a prediction
    assert long["entities"], "the tiny model found no entity to check"
    starts = {start for start, _ in words["offsets"]}
    for entity in long["entities"] + short["entities"]:
        source = doc if entity in long["entities"] else odd
        assert source[entity["start"] : entity["end"]] == entity["text"]
        assert entity["start"] in starts
        assert ner.from_text(entity["text"])["tokens"] == entity["words"]


# Endpoints, auth -----------------------------------------------------------------------------


def test_models_health_ready_and_metrics(predictors):
    with running(predictors) as (url, _):
        models = httpx.get(f"{url}/v1/models").json()["models"]
        health = httpx.get(f"{url}/health")
        ready = httpx.get(f"{url}/ready")
        httpx.post(f"{url}/v1/models/sst/predict", json={"inputs": ["a fine film"]})
        metrics = httpx.get(f"{url}/metrics")
    assert [(m["name"], m["task"]) for m in models] == [("sst", "classification"), ("conll", "ner")]
    assert models[0]["labels"] == ["0", "1"] and models[1]["labels"][0] == "O"
    assert models[0]["artifact"]["backend"] == "torch"
    assert models[0]["artifact"]["path"] == str(predictors["sst"].path)
    assert health.json() == {"status": "ok"} and ready.json() == {"status": "ready"}
    assert metrics.headers["content-type"].startswith("text/plain; version=0.0.4")
    text = metrics.text
    assert 'graft_requests_total{code="200",model="sst"} 1.0' in text
    assert 'graft_request_duration_seconds_bucket{le="+Inf",model="sst"} 1.0' in text
    for name in ("graft_queue_depth", "graft_batch_size_bucket", "graft_errors_total"):
        assert f"# TYPE {name.removesuffix('_bucket')} " in text


def test_a_token_is_required_everywhere_but_health(predictors):
    good = {"Authorization": f"Bearer {TOKEN}"}
    with running(predictors, token=TOKEN) as (url, _):
        assert httpx.get(f"{url}/health").status_code == 200
        for method, path in [
            ("GET", "/ready"),
            ("GET", "/metrics"),
            ("GET", "/v1/models"),
            ("GET", "/openapi.json"),
            ("POST", "/v1/models/sst/predict"),
        ]:
            for headers in ({}, {"Authorization": "Bearer wrong"}, {"Authorization": TOKEN}):
                response = httpx.request(
                    method, url + path, headers=headers, json={"inputs": ["x"]}
                )
                assert response.status_code == 401, (path, headers)
                assert response.headers["www-authenticate"] == "Bearer"
                assert "Authorization: Bearer" in response.json()["error"]["message"]
            response = httpx.request(method, url + path, headers=good, json={"inputs": ["x"]})
            assert response.status_code == 200, (path, response.text)
        schema = httpx.get(f"{url}/openapi.json", headers=good).json()
    assert schema["components"]["securitySchemes"]["bearer"]["scheme"] == "bearer"
    assert schema["paths"]["/health"]["get"]["security"] == []


# Limits and failures -------------------------------------------------------------------------


def test_each_limit_answers_its_status_with_a_json_error(predictors):
    limits = {"max_inputs": 4, "max_input_chars": 300, "max_body_bytes": 2000}
    with running(predictors, **limits) as (url, models):
        predict = f"{url}/v1/models/sst/predict"

        def error(response, status):
            assert response.status_code == status, response.text
            body = response.json()["error"]
            assert body["message"] and body["type"]
            return body

        assert error(httpx.post(predict, json={"inputs": ["a"] * 5}), 422)["index"] == 4
        too_long = {"inputs": ["fine", "good", "x" * 301]}
        assert error(httpx.post(predict, json=too_long), 422)["index"] == 2
        error(httpx.post(predict, json={"inputs": ["x" * 2500]}), 413)
        chunked = httpx.post(predict, content=iter([b'{"inputs": ["', b"y" * 2500, b'"]}']))
        error(chunked, 413)
        bad_json = httpx.post(predict, content=b'{"inputs": [', headers=JSON)
        assert "not valid JSON" in error(bad_json, 422)["message"]
        assert error(httpx.post(predict, json={"inputs": ["ok", 3]}), 422)["index"] == 1
        surrogate = httpx.post(predict, content=b'{"inputs": ["ok", "\\ud800"]}', headers=JSON)
        assert error(surrogate, 422)["index"] == 1
        for body in ({"inputs": "text"}, {"inputs": []}, {"inputs": ["a"], "top_k": "2"}):
            error(httpx.post(predict, json=body), 422)
        error(httpx.post(predict, json={"input": ["a"]}), 422)
        unknown = httpx.post(f"{url}/v1/models/x/predict", json={"inputs": ["a"]})
        assert "served: sst, conll" in error(unknown, 404)["message"]
        error(httpx.get(f"{url}/nowhere"), 404)
        error(httpx.get(predict), 405)

        def broken(features):
            raise RuntimeError("out of memory")

        models[0].forward = broken
        failed = error(httpx.post(predict, json={"inputs": ["a"]}), 500)
        assert "out of memory" in failed["message"]
        del models[0].forward  # back to the class's method: the server goes on
        assert httpx.post(predict, json={"inputs": ["a"]}).status_code == 200


JSON = {"Content-Type": "application/json"}


def test_a_full_queue_answers_503_with_retry_after(predictors):
    with running(predictors, max_queue=2, max_wait_ms=400, max_batch_size=64) as (url, _):

        async def main():
            async with httpx.AsyncClient(base_url=url, timeout=30) as client:
                path = "/v1/models/sst/predict"
                first = asyncio.create_task(client.post(path, json={"inputs": ["a", "b"]}))
                while metric((await client.get("/metrics")).text, "graft_queue_depth", "sst") < 2:
                    await asyncio.sleep(0.01)
                second = await client.post(path, json={"inputs": ["c"]})
                return await first, second

        first, second = asyncio.run(main())
    assert first.status_code == 200
    assert second.status_code == 503 and second.headers["retry-after"] == "1"
    assert "--max-queue" in second.json()["error"]["message"]


def test_a_slow_request_times_out_with_504(predictors):
    with running(predictors, request_timeout=0.1, max_wait_ms=600, max_batch_size=64) as (url, _):
        response = httpx.post(f"{url}/v1/models/sst/predict", json={"inputs": ["a fine film"]})
    assert response.status_code == 504
    assert "--request-timeout" in response.json()["error"]["message"]


# The OpenAPI contract, fuzzed ----------------------------------------------------------------


def test_openapi_schema_holds_under_generated_requests(predictors):
    import schemathesis
    from hypothesis import HealthCheck, given, settings
    from schemathesis.checks import not_a_server_error
    from schemathesis.specs.openapi.checks import (
        content_type_conformance,
        response_schema_conformance,
        status_code_conformance,
    )

    checks = [
        not_a_server_error,
        status_code_conformance,
        content_type_conformance,
        response_schema_conformance,
    ]
    auth = {"Authorization": f"Bearer {TOKEN}"}
    seen: dict[str, set[int]] = {}
    with running(predictors, token=TOKEN, max_inputs=8, max_input_chars=2000) as (url, _):
        schema = schemathesis.openapi.from_url(f"{url}/openapi.json", headers=auth)
        operations = [op.ok() for op in schema.get_all_operations()]
        v2 = {"/v2/health/live", "/v2/health/ready", "/v2", "/v2/models/{name}"}
        v2 |= {"/v2/models/{name}/ready", "/v2/models/{name}/infer"}  # serve/v2.py
        assert {op.path for op in operations} >= {"/v1/models/{name}/predict", "/metrics", *v2}
        for operation in operations:

            @given(case=operation.as_strategy())
            @settings(
                max_examples=12,
                deadline=None,
                database=None,
                suppress_health_check=list(HealthCheck),
            )
            def check(case):
                response = case.call(base_url=url, headers=auth)
                seen.setdefault(case.operation.path, set()).add(response.status_code)
                case.validate_response(response, checks=checks)
                if response.status_code >= 400:  # the Open Inference Protocol's: a string
                    error = response.json()["error"]
                    v2 = case.operation.path.startswith("/v2")
                    assert error if v2 and isinstance(error, str) else error["message"]

            check()
    assert 200 in seen["/v1/models/{name}/predict"], seen  # generated requests got answers
    assert 200 in seen["/v2/models/{name}"] and 400 in seen["/v2/models/{name}/infer"], seen
