"""The Open Inference Protocol (KServe v2) beside /v1: a real client (tritonclient's HTTP
client) gets the answers /v1 gives for the same texts, over the same batcher, guard and limits.

The bundles are tiny models trained a few steps here on real SST-2, CoNLL-2003 and SQuAD rows
(enough that answers differ by text); the texts are real sentences from the shared dev files.
"""

from __future__ import annotations

import asyncio
import json
import re

import httpx
import numpy as np
import pytest

from conftest import tiny_recipe
from graftwork.inference.predictor import load
from graftwork.runs import finetune as pipeline
from test_serve import conll_dev, fits, metric, running, sst2_dev

httpclient = pytest.importorskip(
    "tritonclient.http", reason="tritonclient[http] is in the dev extra: pip install -e '.[dev]'"
)
from tritonclient.utils import InferenceServerException  # noqa: E402

TOKEN = "v2-token"
LIMITS = {"max_inputs": 4, "max_input_chars": 1000}
TENSOR = {"name": "text", "shape": [1], "datatype": "BYTES", "data": ["a film"]}


@pytest.fixture(scope="module")
def predictors(tiny_bert, sst2_small, conll_small, squad_small, tmp_path_factory):
    """Three tiny bundles (classification, NER, QA), loaded with one model thread."""
    import torch

    saved = torch.get_num_threads()
    out = tmp_path_factory.mktemp("serve-v2")
    bundles = {}
    runs = [("sst", "classification", sst2_small), ("conll", "ner", conll_small)]
    runs.append(("qa", "qa", squad_small))
    for name, task, data in runs:
        recipe = tiny_recipe(tiny_bert, data, out, task=task, name=name, train={"lr": 5e-3})
        recipe["data"]["max_train_examples"] = 32
        bundles[name] = pipeline.train(recipe).bundle
    yield {name: load(bundle, threads=1) for name, bundle in bundles.items()}
    torch.set_num_threads(saved)


@pytest.fixture(scope="module")
def served(predictors):
    """One server for the module, with a token and small limits; yields its base URL."""
    with running(predictors, token=TOKEN, **LIMITS) as (url, _):
        yield url


def auth() -> dict:
    """The token header, a new dict each time (tritonclient adds its own headers to it)."""
    return {"Authorization": f"Bearer {TOKEN}"}


def client(url: str):
    return httpclient.InferenceServerClient(url.removeprefix("http://"), network_timeout=60)


def texts_input(name: str, texts: list[str], binary: bool = False):
    tensor = httpclient.InferInput(name, [len(texts)], "BYTES")
    return tensor.set_data_from_numpy(np.array(texts, dtype=object), binary_data=binary)


def strings(array) -> list[str]:
    """A BYTES output's elements (tritonclient gives JSON data as str, binary data as bytes)."""
    return [x.decode() if isinstance(x, bytes) else x for x in array.tolist()]


def v1(url: str, model: str, inputs: list, **options) -> list[dict]:
    body = {"inputs": inputs, **options}
    response = httpx.post(f"{url}/v1/models/{model}/predict", json=body, headers=auth())
    assert response.status_code == 200, response.text
    return response.json()["outputs"]


def infer(url: str, body: dict, model: str = "sst", headers=None) -> httpx.Response:
    headers = auth() if headers is None else headers
    return httpx.post(f"{url}/v2/models/{model}/infer", json=body, headers=headers)


def text_body(texts: list[str], **extra) -> dict:
    tensor = {"name": "text", "shape": [len(texts)], "datatype": "BYTES", "data": texts}
    return {"inputs": [tensor], **extra}


# The same answers as /v1 -----------------------------------------------------------------


def test_tritonclient_gets_v1s_labels_and_scores(served, predictors):
    texts = fits(predictors["sst"], sst2_dev(12))[: LIMITS["max_inputs"]]
    result = client(served).infer("sst", [texts_input("text", texts)], headers=auth())
    want = v1(served, "sst", texts)
    labels = strings(result.as_numpy("label"))
    assert labels == [w["label"] for w in want]
    assert result.as_numpy("score").dtype == np.float32
    np.testing.assert_allclose(result.as_numpy("score"), [w["score"] for w in want], rtol=1e-6)
    assert result.as_numpy("windows").tolist() == [1] * len(texts)
    assert len({float(s) for s in result.as_numpy("score")}) == len(texts)  # a mix-up would show


def test_binary_tensor_data_is_read_as_the_json_data(served, predictors):
    texts = sst2_dev(3) + ["naïve café, 東京 — a ünïcode review"]
    inputs = [texts_input("text", texts, binary=True)]
    result = client(served).infer("sst", inputs, headers=auth())
    want = v1(served, "sst", texts)
    assert strings(result.as_numpy("label")) == [w["label"] for w in want]
    np.testing.assert_allclose(result.as_numpy("score"), [w["score"] for w in want], rtol=1e-6)


def test_ner_entities_and_tags_come_as_v1s_json(served, predictors):
    texts = fits(predictors["conll"], conll_dev(40), words=True)[: LIMITS["max_inputs"]]
    result = client(served).infer("conll", [texts_input("text", texts)], headers=auth())
    got = [json.loads(e) for e in result.as_numpy("entities")]
    tags = [json.loads(t) for t in result.as_numpy("tags")]
    want = v1(served, "conll", texts)
    assert got == [w["entities"] for w in want]
    assert tags == [w["tags"] for w in want]
    assert any(got), "the tiny model tagged no entity, so the comparison shows little"


def test_qa_takes_question_and_context_and_answers_as_v1(served):
    context = "Ann planted the orchard. " * 20 + "Bob grafted the apple trees in 1990."
    pairs = [
        {"question": "Who grafted the trees?", "context": context},
        {"question": "When were the trees grafted?", "context": "Bob grafted them in 1990."},
    ]
    inputs = [texts_input(n, [p[n] for p in pairs]) for n in ("question", "context")]
    result = client(served).infer("qa", inputs, headers=auth())
    want = v1(served, "qa", pairs)
    assert strings(result.as_numpy("answer")) == [w["answer"] for w in want]
    starts = [-1 if w["start"] is None else w["start"] for w in want]
    assert result.as_numpy("start").tolist() == starts
    assert result.as_numpy("windows").tolist() == [w["windows"] for w in want]
    assert want[0]["windows"] > 1  # the long context went through windows on both paths


def test_top_k_and_the_requested_outputs_follow_the_request(served):
    texts = sst2_dev(2)
    outputs = [httpclient.InferRequestedOutput("top_k", binary_data=False)]
    result = client(served).infer(
        "sst",
        [texts_input("text", texts)],
        outputs=outputs,
        parameters={"top_k": 2},
        headers=auth(),
    )
    want = v1(served, "sst", texts, top_k=2)
    assert [json.loads(t) for t in result.as_numpy("top_k")] == [w["top_k"] for w in want]
    assert result.as_numpy("label") is None  # only what was asked for


# Health, readiness and metadata ------------------------------------------------------------


def test_health_and_readiness_answer_as_the_protocol_says(served):
    triton = client(served)
    assert triton.is_server_live()  # no token: liveness is open, as /health
    assert triton.is_server_ready(headers=auth())
    assert triton.is_model_ready("conll", headers=auth())
    assert httpx.get(f"{served}/v2/models/qa/ready", headers=auth()).json() == {
        "name": "qa",
        "ready": True,
    }


def test_metadata_names_each_models_inputs_and_outputs(served):
    triton = client(served)
    server = triton.get_server_metadata(headers=auth())
    assert server["name"] == "graftwork" and server["extensions"] == []
    sst = triton.get_model_metadata("sst", headers=auth())
    qa = triton.get_model_metadata("qa", headers=auth())
    conll = triton.get_model_metadata("conll", headers=auth())
    assert sst["inputs"] == [{"name": "text", "datatype": "BYTES", "shape": [-1]}]
    assert [(o["name"], o["datatype"]) for o in sst["outputs"]] == [
        ("label", "BYTES"),
        ("score", "FP32"),
        ("windows", "INT64"),
    ]
    assert [i["name"] for i in qa["inputs"]] == ["question", "context"]
    assert {o["name"]: o["datatype"] for o in qa["outputs"]}["start"] == "INT64"
    assert [o["name"] for o in conll["outputs"]] == ["entities", "tags", "windows"]


# The guard, the limits and the protocol's errors -------------------------------------------


def test_a_token_is_required_and_refused_in_the_protocols_format(served):
    with pytest.raises(InferenceServerException) as refused:
        client(served).infer("sst", [texts_input("text", ["a fine film"])])
    assert refused.value.status() == "401"
    response = infer(served, text_body(["a fine film"]), headers={})
    assert response.status_code == 401
    assert "Authorization: Bearer" in response.json()["error"]


@pytest.mark.parametrize(
    ("body", "model", "status", "says"),
    [
        (text_body(["a film"] * 5), "sst", 400, "--max-inputs"),
        (text_body(["a film", "x" * 1001]), "sst", 400, "input 'text'[1] has 1001 characters"),
        (text_body(["  "]), "sst", 400, "only whitespace"),
        (text_body(["a film"]), "nosuch", 404, "no model named 'nosuch'"),
        ({"inputs": [TENSOR | {"name": "sentence"}]}, "sst", 400, "reads text"),
        (text_body(["a film"]) | {"inputs": [TENSOR | {"shape": [2]}]}, "sst", 400, "shape [2]"),
        (text_body(["a film"], outputs=[{"name": "logits"}]), "sst", 400, "no output 'logits'"),
        (text_body(["a film"], parameters={"top_k": 0}), "sst", 400, "parameters.top_k"),
        ({"inputs": []}, "sst", 400, "inputs"),
    ],
    ids=[
        "too-many",
        "too-long",
        "blank",
        "unknown-model",
        "wrong-input",
        "wrong-shape",
        "wrong-output",
        "bad-top-k",
        "no-inputs",
    ],
)
def test_a_bad_request_gets_the_protocols_error(served, body, model, status, says):
    response = infer(served, body, model)
    assert response.status_code == status
    assert set(response.json()) == {"error"} and says in response.json()["error"]


def test_guard_errors_are_in_the_protocols_format_too(served):
    too_big = httpx.post(
        f"{served}/v2/models/sst/infer", content=b"{" * (9 << 20), headers=auth()
    )  # over --max-body-bytes (8 MiB)
    unknown = httpx.get(f"{served}/v2/models/sst/versions/1", headers=auth())
    assert too_big.status_code == 413 and "--max-body-bytes" in too_big.json()["error"]
    assert unknown.status_code == 404 and isinstance(unknown.json()["error"], str)


# One batcher for both APIs -----------------------------------------------------------------


def test_v1_and_v2_requests_share_a_batch_and_the_metrics(predictors):
    texts = sst2_dev(2)

    async def both(url):
        async with httpx.AsyncClient(base_url=url, timeout=60) as http:
            return await asyncio.gather(
                http.post("/v1/models/sst/predict", json={"inputs": texts[:1]}),
                http.post("/v2/models/sst/infer", json=text_body(texts[1:])),
            )

    with running(predictors, max_wait_ms=300, max_batch_size=8) as (url, _):
        before = httpx.get(f"{url}/metrics").text
        first, second = asyncio.run(both(url))
        after = httpx.get(f"{url}/metrics").text
    assert first.status_code == 200 and second.status_code == 200, second.text
    names = ("graft_batch_size_count", "graft_batch_size_sum")
    grew = [metric(after, n, "sst") - metric(before, n, "sst") for n in names]
    assert grew == [1, 2], "the two requests were not in one batch"
    assert answered(after) - answered(before) == 2


def answered(metrics: str) -> float:
    match = re.search(r'^graft_requests_total{code="200",model="sst"} (\S+)$', metrics, re.M)
    return float(match.group(1)) if match else 0.0
