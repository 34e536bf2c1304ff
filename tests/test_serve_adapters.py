"""Many adapters on one backbone in `graft serve` (`serve.shared_backbone`, `serve.admin`).

Tiny bundles of every adapter method (LoRA, DoRA, IA3, bottleneck adapters) are trained here
on one tiny BERT, each with its own seed so that their answers differ; served together, each
model's answers must be those of its bundle loaded alone (`graftwork.load`), also when requests
for different adapters arrive together. A bundle whose root does not hold the backbone's
tensors (its backbone folder changed after it was trained) loads on its own. The admin routes
add and remove a model at run time, and only with the token.
"""

from __future__ import annotations

import asyncio
import logging
import shutil

import httpx
import pytest
from safetensors.torch import load_file, save_file

from conftest import DATA
from graftwork import registry
from graftwork.inference.predictor import load
from graftwork.runs import finetune as pipeline
from graftwork.serve import load_models, make_config
from graftwork.serve.shared_backbone import PEFT_TYPES, SharedPredictor
from test_serve import running

TOKEN = "adm1n-token"
TEXTS = [
    line.split("\t", 1)[1].strip()
    for line in (DATA / "sst2" / "dev.tsv").read_text(encoding="utf-8").splitlines()[1:7]
]
# two bundles of each method (DoRA shares LoRA's peft type, so one DoRA joins the LoRA group)
BUNDLES = {
    "lora-a": {"type": "lora"},
    "lora-b": {"type": "lora", "r": 4},
    "dora": {"type": "dora"},
    "ia3-a": {"type": "ia3"},
    "ia3-b": {"type": "ia3"},
    "adapter-a": {"type": "adapter", "reduction": 4},
    "adapter-b": {"type": "adapter", "placement": "pfeiffer", "reduction": 8},
}
METHOD_OF = {"lora": "lora-a", "dora": "dora", "ia3": "ia3-a", "adapter": "adapter-a"}


def train(backbone, data, out, name: str, method: dict, seed: int):
    recipe = {
        "name": name,
        "backbone": str(backbone),
        "task": {"type": "classification"},
        "data": {"train": str(data["train"]), "eval": str(data["eval"]), "max_length": 64},
        "method": method,
        "train": {"epochs": 1, "batch_size": 16, "lr": 3e-2, "seed": seed, "log_every": 100},
        "output_dir": str(out / name),
    }
    recipe["data"]["max_train_examples"] = 48
    return pipeline.train(recipe).bundle


@pytest.fixture(scope="module")
def bundles(tiny_bert, sst2_small, tmp_path_factory):
    """Every bundle of BUNDLES, and two LoRA bundles of a copy of the backbone trained before
    and after the copy's weights changed ("before" no longer fits the folder it names)."""
    import torch

    saved = torch.get_num_threads()
    out = tmp_path_factory.mktemp("adapters")
    found = {
        name: train(tiny_bert, sst2_small, out, name, method, seed)
        for seed, (name, method) in enumerate(BUNDLES.items())
    }
    moved = shutil.copytree(tiny_bert, out / "moved-backbone")
    found["before"] = train(moved, sst2_small, out, "before", {"type": "lora"}, 20)
    weights = load_file(str(moved / "model.safetensors"))
    weights["embeddings.LayerNorm.weight"] = weights["embeddings.LayerNorm.weight"] * 1.5
    save_file(weights, str(moved / "model.safetensors"), metadata={"format": "pt"})
    found["after"] = train(moved, sst2_small, out, "after", {"type": "lora"}, 21)
    yield found
    torch.set_num_threads(saved)


@pytest.fixture(scope="module")
def alone(bundles):
    """Each bundle's answers loaded on its own, as graft predict gives them."""
    return {name: load(path, threads=1).predict(TEXTS, top_k=2) for name, path in bundles.items()}


@pytest.fixture(scope="module")
def served(bundles):
    """The models `graft serve` makes of BUNDLES (one call, as for its command line)."""
    config = make_config(threads=1, backend="torch")
    return {m.name: m for m in load_models([f"{n}={bundles[n]}" for n in BUNDLES], config)}


def assert_same(answers, expected):
    """Same labels in the same order, scores equal up to float32 rounding (a LoRA bundle
    alone runs its merged weights, shared its unmerged adapter)."""
    assert len(answers) == len(expected)
    for got, want in zip(answers, expected, strict=True):
        assert [t["label"] for t in got["top_k"]] == [t["label"] for t in want["top_k"]]
        for g, w in zip(got["top_k"], want["top_k"], strict=True):
            assert g["score"] == pytest.approx(w["score"], abs=1e-6)


def test_the_test_covers_every_adapter_method():
    adapter_methods = {*PEFT_TYPES, "adapter"}
    assert adapter_methods <= set(registry.METHODS)
    assert set(METHOD_OF) == adapter_methods


@pytest.mark.parametrize("method", sorted(METHOD_OF))
def test_a_shared_adapter_answers_as_its_bundle_alone(served, alone, method):
    name = METHOD_OF[method]
    model = served[name]
    assert isinstance(model.predictor, SharedPredictor)  # it is on a shared backbone
    others = [n for n, m in served.items() if m.predictor.group is model.predictor.group]
    assert len(others) >= 2
    answers = model.predictor.predict(TEXTS, top_k=2)
    assert_same(answers, alone[name])
    for other in others:  # the adapters differ, so a wrong one active would show
        if other != name:
            assert [a["score"] for a in alone[other]] != pytest.approx(
                [a["score"] for a in answers], abs=1e-4
            )


def test_bundles_of_one_backbone_hold_one_copy_of_it(served):
    groups = {id(m.predictor.group): m.predictor.group for m in served.values()}
    assert len(groups) == 3  # peft LoRA (with DoRA), peft IA3, bottleneck adapters
    assert sorted(len(g.members) for g in groups.values()) == [2, 2, 3]


def test_mixed_concurrent_requests_answer_as_each_bundle_alone(served, alone):
    predictors = {name: m.predictor for name, m in served.items()}

    async def ask_all(url):
        async with httpx.AsyncClient(base_url=url, timeout=30) as client:
            calls = [
                client.post(f"/v1/models/{name}/predict", json={"inputs": [text], "top_k": 2})
                for text in TEXTS
                for name in predictors
            ]
            return await asyncio.gather(*calls)

    with running(predictors, max_wait_ms=50) as (url, _):
        responses = asyncio.run(ask_all(url))
    pairs = [(name, i) for i in range(len(TEXTS)) for name in predictors]
    for (name, i), response in zip(pairs, responses, strict=True):
        assert response.status_code == 200, response.text
        assert_same(response.json()["outputs"], alone[name][i : i + 1])


def test_a_bundle_not_on_its_backbone_loads_on_its_own(bundles, alone, caplog):
    config = make_config(threads=1, backend="torch")
    with caplog.at_level(logging.INFO, logger="graftwork.serve"):
        specs = [f"{name}={bundles[name]}" for name in ("before", "after", "lora-a")]
        models = {m.name: m for m in load_models(specs, config)}
    assert not isinstance(models["before"].predictor, SharedPredictor)
    assert isinstance(models["after"].predictor, SharedPredictor)
    assert not isinstance(models["lora-a"].predictor, SharedPredictor)  # another backbone
    assert "before" in caplog.text and "differs from the backbone" in caplog.text
    assert_same(models["before"].predictor.predict(TEXTS, top_k=2), alone["before"])
    assert_same(models["after"].predictor.predict(TEXTS, top_k=2), alone["after"])


def test_admin_adds_an_adapter_to_the_shared_backbone_and_removes_it(served, bundles, alone):
    predictors = {"lora-a": served["lora-a"].predictor, "ia3-a": served["ia3-a"].predictor}
    auth = {"Authorization": f"Bearer {TOKEN}"}
    with running(predictors, token=TOKEN) as (url, models):
        added = httpx.post(
            f"{url}/v1/admin/models",
            json={"path": str(bundles["dora"].resolve()), "name": "new"},
            headers=auth,
            timeout=30,
        )
        assert added.status_code == 201, added.text
        answer = httpx.post(
            f"{url}/v1/models/new/predict", json={"inputs": TEXTS, "top_k": 2}, headers=auth
        )
        assert_same(answer.json()["outputs"], alone["dora"])
        removed = httpx.delete(f"{url}/v1/admin/models/new", headers=auth, timeout=30)
        assert removed.status_code == 200, removed.text
        gone = httpx.post(f"{url}/v1/models/new/predict", json={"inputs": TEXTS}, headers=auth)
        assert gone.status_code == 404
        still = httpx.post(
            f"{url}/v1/models/lora-a/predict", json={"inputs": TEXTS, "top_k": 2}, headers=auth
        )
    assert_same(still.json()["outputs"], alone["lora-a"])


def test_admin_routes_need_the_token(served, bundles):
    predictors = {"lora-a": served["lora-a"].predictor, "lora-b": served["lora-b"].predictor}
    body = {"path": str(bundles["dora"].resolve())}
    with running(predictors, token=TOKEN) as (url, _):
        without = httpx.post(f"{url}/v1/admin/models", json=body)
        wrong = httpx.delete(f"{url}/v1/admin/models/lora-b", headers={"Authorization": "Bearer x"})
        listed = httpx.get(f"{url}/v1/models", headers={"Authorization": f"Bearer {TOKEN}"})
    assert (without.status_code, wrong.status_code) == (401, 401)
    assert {m["name"] for m in listed.json()["models"]} == {"lora-a", "lora-b"}


def test_admin_routes_are_off_without_a_token(served, bundles):
    predictors = {"lora-a": served["lora-a"].predictor, "lora-b": served["lora-b"].predictor}
    with running(predictors) as (url, _):
        add = httpx.post(f"{url}/v1/admin/models", json={"path": str(bundles["dora"].resolve())})
        remove = httpx.delete(f"{url}/v1/admin/models/lora-b")
    assert (add.status_code, remove.status_code) == (403, 403)
    assert "GRAFT_API_TOKEN" in add.json()["error"]["message"]


def test_admin_refuses_a_path_that_is_not_a_bundle(served):
    predictors = {"lora-a": served["lora-a"].predictor}
    auth = {"Authorization": f"Bearer {TOKEN}"}
    paths = ["relative/bundle", "/", "/no/such/folder"]
    with running(predictors, token=TOKEN) as (url, _):
        responses = [
            httpx.post(f"{url}/v1/admin/models", json={"path": path}, headers=auth)
            for path in paths
        ]
    for path, response in zip(paths, responses, strict=True):
        assert response.status_code == 422
        assert response.json()["error"]["type"] == "invalid_path"
        assert repr(path) in response.json()["error"]["message"]
