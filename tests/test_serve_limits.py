"""`graft serve` against a hostile client: tokens, Host headers, huge or slow requests.

Each test starts the real app under uvicorn (as `graft serve` runs it: `test_serve.running`)
on 127.0.0.1 with one tiny bundle, and talks to it with httpx or raw sockets. Every client
here stops itself: sockets have timeouts and every loop a deadline, far above what a passing
server needs, so a regression fails the test instead of hanging it.
"""

from __future__ import annotations

import asyncio
import socket
import threading
import time

import httpx
import pytest

from conftest import DATA, tiny_recipe
from graftwork.inference.predictor import load
from graftwork.runs import finetune as pipeline
from test_serve import metric, running

PREDICT = "/v1/models/sst/predict"


@pytest.fixture(scope="module")
def predictors(tiny_bert, sst2_small, tmp_path_factory):
    """One tiny classification bundle (max_length 64); its answers do not matter here."""
    import torch

    saved = torch.get_num_threads()
    recipe = tiny_recipe(tiny_bert, sst2_small, tmp_path_factory.mktemp("limits"), name="sst")
    recipe["data"]["max_train_examples"] = 32
    yield {"sst": load(pipeline.train(recipe).bundle, threads=1)}
    torch.set_num_threads(saved)


def error(response: httpx.Response, status: int, kind: str) -> dict:
    assert response.status_code == status, response.text
    body = response.json()["error"]
    assert body["type"] == kind and body["message"]
    return body


# Auth and Host -------------------------------------------------------------------------------


def test_a_non_ascii_token_matches_byte_for_byte(predictors):
    token = "clé-secrète-✓"
    with running(predictors, token=token) as (url, _):
        good = httpx.get(f"{url}/v1/models", headers={"Authorization": bearer(token, "utf-8")})
        assert good.status_code == 200, good.text
        for wrong in (bearer("cl\xe9-secr\xe8te-?", "latin-1"), bearer("clé-secrète", "utf-8")):
            error(
                httpx.get(f"{url}/v1/models", headers={"Authorization": wrong}), 401, "unauthorized"
            )


def bearer(token: str, encoding: str) -> bytes:
    return f"Bearer {token}".encode(encoding)


def test_bound_to_loopback_only_loopback_host_names_are_answered(predictors):
    with running(predictors) as (url, _):
        port = url.rsplit(":", 1)[1]
        for host in ("localhost", f"LocalHost:{port}", f"127.0.0.1:{port}", f"[::1]:{port}"):
            assert httpx.get(f"{url}/health", headers={"Host": host}).status_code == 200, host
        for host in ("rebound.example", f"rebound.example:{port}", "127.0.0.1.example", "[::1"):
            refused = httpx.get(f"{url}/v1/models", headers={"Host": host})
            assert "--allowed-hosts" in error(refused, 400, "host_not_allowed")["message"]
    with running(predictors, allowed_hosts="Models.Internal, 10.0.0.5") as (url, _):
        for host in ("models.internal:8080", "10.0.0.5", "localhost"):
            assert httpx.get(f"{url}/health", headers={"Host": host}).status_code == 200, host
        error(
            httpx.get(f"{url}/health", headers={"Host": "rebound.example"}), 400, "host_not_allowed"
        )


# Requests too big to answer ------------------------------------------------------------------


def test_huge_bodies_are_refused_at_once_while_health_answers(predictors):
    numbers = b'{"inputs": [' + b",".join([b"1"] * 3_000_000) + b"]}"  # under the 8 MB limit
    keys = ("{" + ",".join(f'"k{i}": 1' for i in range(500_000)) + "}").encode()
    assert max(len(numbers), len(keys)) < 8 << 20
    with running(predictors) as (url, _):

        async def timed(client, method, path, body=None):
            start = time.monotonic()
            response = await client.request(method, path, content=body, headers=JSON)
            return response, time.monotonic() - start

        async def main():
            async with (
                httpx.AsyncClient(base_url=url, timeout=120) as client,
                httpx.AsyncClient(base_url=url, timeout=120) as probe,
            ):
                posts = asyncio.gather(
                    timed(client, "POST", PREDICT, numbers), timed(client, "POST", PREDICT, keys)
                )
                posts = asyncio.ensure_future(posts)
                health = []
                while not posts.done() or not health:
                    health.append(await timed(probe, "GET", "/health"))
                    await asyncio.sleep(0.05)
                return await posts, health

        (big, many), health = asyncio.run(main())
    assert error(big[0], 422, "too_many_inputs")["index"] == 64
    assert "--max-inputs" in big[0].json()["error"]["message"]
    assert "500000 keys" in error(many[0], 422, "invalid_request")["message"]
    # a guard against validation on the event loop (it took a minute), not a benchmark
    assert big[1] < 5 and many[1] < 5, (big[1], many[1])
    assert all(r.status_code == 200 and seconds < 5 for r, seconds in health), health


JSON = {"Content-Type": "application/json"}


def long_text(sentences: int) -> str:
    lines = (DATA / "sst2" / "dev.tsv").read_text(encoding="utf-8").splitlines()[1:]
    return " ".join(line.split("\t", 1)[1] for line in lines[:sentences])


def test_a_request_that_could_not_be_answered_in_time_is_refused_before_the_model(predictors):
    doc = long_text(12)  # about 1,500 characters: several windows of 64 tokens
    with running(predictors, max_queue=4) as (url, _):  # an empty queue used to take it all
        before = httpx.get(f"{url}/metrics").text
        body = error(httpx.post(url + PREDICT, json={"inputs": [doc]}), 413, "too_many_windows")
        assert body["limit"] == 4 and "--max-request-windows" in body["message"]
        after = httpx.get(f"{url}/metrics").text
        assert httpx.post(url + PREDICT, json={"inputs": ["a fine film"]}).status_code == 200
    batches = "graft_batch_size_count"
    assert metric(after, batches, "sst") == metric(before, batches, "sst")  # nothing ran
    assert 'graft_requests_total{code="413",model="sst"} 1.0' in after
    with running(predictors, max_request_windows=3, max_request_chars=len(doc) + 10) as (url, _):
        assert error(httpx.post(url + PREDICT, json={"inputs": [doc]}), 413, "too_many_windows")
        many = {"inputs": [doc[:400]] * 3 + [doc[:20]]}  # each short, too many in all
        body = error(httpx.post(url + PREDICT, json=many), 413, "request_too_large")
        assert body["limit"] == len(doc) + 10 and "--max-request-chars" in body["message"]


def test_empty_or_blank_texts_get_an_error_naming_the_input(predictors):
    with running(predictors) as (url, _):
        for inputs, index in (
            (["a fine film", ""], 1),
            ([" \n\t "], 0),
            (["fine", "good", "\u200b\u00a0"], 2),  # only invisible characters
        ):
            response = httpx.post(url + PREDICT, json={"inputs": inputs})
            body = error(response, 422, "empty_input")
            assert body["index"] == index and f"inputs[{index}]" in body["message"]


# Slow clients --------------------------------------------------------------------------------


def hold(address: tuple[str, int], first: bytes, drip: bytes | None, limit: float = 8.0):
    """Connect, send `first`, then `drip` every 0.2 s until the server answers or closes.

    Returns (what the server sent, seconds until it closed the connection, or None if it was
    still open after `limit` seconds)."""
    sock = socket.create_connection(address, timeout=limit)
    start, received = time.monotonic(), b""
    try:
        if first:
            sock.sendall(first)
        sock.settimeout(0.2)
        while time.monotonic() - start < limit:
            try:
                chunk = sock.recv(65536)
            except TimeoutError:
                if drip and not received:
                    sock.sendall(drip)
                continue
            except ConnectionResetError:
                return received, time.monotonic() - start
            if not chunk:
                return received, time.monotonic() - start
            received += chunk
        return received, None
    finally:
        sock.close()


def test_slow_headers_and_bodies_are_cut_off(predictors):
    start_line = b"POST /v1/models/sst/predict HTTP/1.1\r\nHost: 127.0.0.1\r\n"
    clients = {
        "silent": (b"", None),
        "headers": (start_line + b"X-Slow: ", b"x"),
        "body": (
            start_line + b"Content-Type: application/json\r\nContent-Length: 200\r\n\r\n",
            b" ",
        ),
    }
    with running(predictors, header_timeout=1, body_timeout=1) as (url, _):
        address = ("127.0.0.1", int(url.rsplit(":", 1)[1]))
        results: dict = {}
        threads = [
            threading.Thread(target=lambda n=n, c=c: results.update({n: hold(address, *c)}))
            for n, c in clients.items()
        ]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join(15)
        assert httpx.get(f"{url}/health").status_code == 200
    for name, (_, closed_after) in results.items():
        assert closed_after is not None and closed_after < 5, (name, closed_after)
    assert results["silent"][0] == b""
    for name, kind in (("headers", b'"header_timeout"'), ("body", b'"body_timeout"')):
        received = results[name][0]
        assert received.startswith(b"HTTP/1.1 408 "), (name, received[:200])
        assert kind in received and b"connection: close" in received.lower()


def test_connections_beyond_the_limit_are_turned_away(predictors):
    with running(predictors, max_connections=4, header_timeout=10) as (url, _):
        address = ("127.0.0.1", int(url.rsplit(":", 1)[1]))
        idle = [socket.create_connection(address, timeout=5) for _ in range(3)]
        try:
            time.sleep(0.3)  # accepted by the server
            assert httpx.get(f"{url}/health").status_code == 503
        finally:
            for sock in idle:
                sock.close()
        deadline = time.monotonic() + 5
        while httpx.get(f"{url}/health").status_code != 200:
            assert time.monotonic() < deadline, "the server did not take connections again"
            time.sleep(0.05)
