"""The server's parts on their own: the batcher, long-text windows and the settings."""

from __future__ import annotations

import asyncio

import numpy as np
import pytest
from prometheus_client.parser import text_string_to_metric_families

from conftest import DATA
from graftwork.data.windows import aggregate, merge_words, split_texts, split_words
from graftwork.errors import GraftError
from graftwork.inference.predictor import blank_text
from graftwork.serve import make_config
from graftwork.serve.batcher import Batcher, QueueFull
from graftwork.serve.config import host_name
from graftwork.serve.metrics import CONTENT_TYPE, ServerMetrics
from graftwork.serve.schemas import request_model
from graftwork.tasks import ner

# The batcher ---------------------------------------------------------------------------------


def feature(marker: int, length: int) -> dict:
    return {"input_ids": [marker] * length}


class Recorder:
    """A fake model: logits are the first input id; marker 99 makes its batch fail."""

    def __init__(self):
        self.batches: list[list[int]] = []

    def __call__(self, features):
        self.batches.append([f["input_ids"][0] for f in features])
        if any(f["input_ids"][0] == 99 for f in features):
            raise RuntimeError("boom")
        return [np.array([float(f["input_ids"][0])]) for f in features]


def run(coro):
    return asyncio.run(coro)


def test_a_failing_batch_fails_only_its_own_requests():
    model = Recorder()

    async def scenario():
        batcher = Batcher(model, max_batch_size=2, max_wait_ms=50)
        batcher.start()
        # sorted by length: [1, 2] then [99, 4]; the second batch fails
        calls = [[feature(4, 8)], [feature(1, 2)], [feature(99, 6)], [feature(2, 3)]]
        results = await asyncio.gather(*(batcher.submit(c) for c in calls), return_exceptions=True)
        after = await batcher.submit([feature(7, 1)])
        await batcher.close()
        return results, after

    results, after = run(scenario())
    assert model.batches[:2] == [[1, 2], [99, 4]]
    assert isinstance(results[0], RuntimeError) and isinstance(results[2], RuntimeError)
    assert results[1][0].tolist() == [1.0] and results[3][0].tolist() == [2.0]
    assert after[0].tolist() == [7.0]


def test_batches_respect_the_size_and_token_limits_and_scatter_in_order():
    model = Recorder()

    async def scenario():
        batcher = Batcher(model, max_batch_size=3, max_wait_ms=100, max_batch_tokens=20)
        batcher.start()
        # seven windows of 5 tokens from two requests: at most 4 by tokens, 3 by size
        first = asyncio.create_task(batcher.submit([feature(i, 5) for i in range(1, 5)]))
        second = batcher.submit([feature(i, 5) for i in range(5, 8)])
        results = await asyncio.gather(first, second)
        await batcher.close()
        return results

    first, second = run(scenario())
    assert [len(b) for b in model.batches] == [3, 3, 1]
    assert [r[0] for r in first] == [1, 2, 3, 4] and [r[0] for r in second] == [5, 6, 7]


def test_close_answers_everything_still_queued():
    model = Recorder()

    async def scenario():
        batcher = Batcher(model, max_batch_size=64, max_wait_ms=10_000)
        batcher.start()
        pending = [asyncio.create_task(batcher.submit([feature(i, 3)])) for i in range(1, 6)]
        await asyncio.sleep(0.01)  # queued, waiting for a fuller batch
        await batcher.close()
        return [await p for p in pending]

    assert [r[0][0] for r in run(scenario())] == [1, 2, 3, 4, 5]


def test_queue_full_and_abandoned_windows():
    model = Recorder()

    async def scenario():
        batcher = Batcher(model, max_batch_size=64, max_wait_ms=200, max_queue=3)
        batcher.start()
        big = asyncio.create_task(batcher.submit([feature(1, 2)] * 4))  # alone: admitted
        await asyncio.sleep(0)
        with pytest.raises(QueueFull):
            await batcher.submit([feature(2, 2)])
        await big
        with pytest.raises(asyncio.TimeoutError):  # gone before its batch ran
            await asyncio.wait_for(batcher.submit([feature(3, 2)]), 0.01)
        await batcher.submit([feature(4, 2)])
        depth = batcher.depth
        await batcher.close()
        return depth

    assert run(scenario()) == 0
    assert [3] not in model.batches and 3 not in sum(model.batches, [])


# Windows -------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def tokenizer(tiny_bert):
    from transformers import AutoTokenizer

    return AutoTokenizer.from_pretrained(str(tiny_bert))


def long_text(sentences: int) -> str:
    lines = (DATA / "sst2" / "dev.tsv").read_text(encoding="utf-8").splitlines()[1:]
    return " ".join(line.split("\t", 1)[1] for line in lines[:sentences])


def test_text_windows_cover_every_token_once_overlap_removed(tokenizer):
    text = long_text(40)
    full = tokenizer(text)["input_ids"][1:-1]
    windows = split_texts(tokenizer, [text, "short"], window=32, stride=8)
    assert len(windows[1]) == 1 and len(windows[0]) > 10
    content = [w["input_ids"][1:-1] for w in windows[0]]
    assert all(len(w["input_ids"]) <= 32 for w in windows[0])
    assert all(a[-8:] == b[:8] for a, b in zip(content, content[1:], strict=False))
    assert content[0] + [t for c in content[1:] for t in c[8:]] == full


def test_word_windows_cover_every_word_and_mark_true_first_pieces(tokenizer):
    words = ner.from_text(long_text(30))["tokens"]
    full = tokenizer(words, is_split_into_words=True).word_ids()[1:-1]
    (windows,) = split_words(tokenizer, [words], window=24, stride=6)
    ids = [w["word_ids"][1:-1] for w in windows]
    assert ids[0] + [i for c in ids[1:] for i in c[6:]] == full
    step = 24 - 2 - 6  # text tokens per window less the overlap
    starts_inside_a_word = 0
    for k, window in enumerate(windows):
        for j, first in enumerate(window["first"][1:-1]):
            g = k * step + j  # the piece's place in the whole text
            assert first == (g == 0 or full[g - 1] != full[g]), (k, j)
        starts_inside_a_word += full[k * step - 1] == full[k * step] if k else 0
    assert starts_inside_a_word, "no window began inside a word; the check above proved little"


def test_each_word_takes_the_window_where_it_has_most_context():
    # words 0-3 in window 0, words 2-5 in window 1; window k's logits say "k"
    windows = [
        {"word_ids": [None, 0, 1, 2, 3, None], "first": [False, True, True, True, True, False]},
        {"word_ids": [None, 2, 3, 4, 5, None], "first": [False, True, True, True, True, False]},
    ]
    logits = [np.tile([1.0, 0.0], (6, 1)), np.tile([0.0, 1.0], (6, 1))]
    feature, rows = merge_words(windows, logits)
    assert feature["word_ids"] == [0, 1, 2, 3, 4, 5]
    # word 2: one token from window 0's cut end, none from window 1's cut start → window 0
    # word 3: at window 0's cut end, one token from window 1's cut start → window 1
    assert rows.argmax(axis=1).tolist() == [0, 0, 0, 1, 1, 1]


def test_a_continuation_piece_never_stands_for_its_word():
    windows = [
        {"word_ids": [None, 0, 1, None], "first": [False, True, True, False]},
        {"word_ids": [None, 1, 2, None], "first": [False, False, True, False]},
    ]
    logits = [np.tile([1.0, 0.0], (4, 1)), np.tile([0.0, 1.0], (4, 1))]
    _, rows = merge_words(windows, logits)
    assert rows.argmax(axis=1).tolist() == [0, 0, 1]


def test_window_logits_aggregate_by_mean_or_max():
    rows = [np.array([1.0, -2.0]), np.array([-1.0, 4.0])]
    assert aggregate(rows, "mean").tolist() == [0.0, 1.0]
    assert aggregate(rows, "max").tolist() == [1.0, 4.0]


# Settings ------------------------------------------------------------------------------------


def test_bad_settings_name_the_flag_and_the_variable():
    with pytest.raises(GraftError, match=r"--max-batch-size \(GRAFT_MAX_BATCH_SIZE\)"):
        make_config(max_batch_size=0)


def test_the_token_comes_from_the_environment_or_a_file(tmp_path, monkeypatch):
    monkeypatch.delenv("GRAFT_API_TOKEN", raising=False)
    assert make_config().api_token() is None
    monkeypatch.setenv("GRAFT_API_TOKEN", "from-env")
    assert make_config().api_token() == "from-env"
    token_file = tmp_path / "token"
    token_file.write_text("from-file\n")
    with pytest.raises(GraftError, match="both set"):
        make_config(token_file=token_file).api_token()
    monkeypatch.delenv("GRAFT_API_TOKEN")
    assert make_config(token_file=token_file).api_token() == "from-file"
    token_file.write_text("  \n")
    with pytest.raises(GraftError, match="empty"):
        make_config(token_file=token_file).api_token()


def test_a_token_set_but_empty_is_refused_not_read_as_no_auth(tmp_path, monkeypatch):
    for empty in ("", "  \n"):
        monkeypatch.setenv("GRAFT_API_TOKEN", empty)
        with pytest.raises(GraftError, match="GRAFT_API_TOKEN is set but empty.*unset it"):
            make_config().api_token()
    monkeypatch.setenv("GRAFT_API_TOKEN", "  padded\n")
    assert make_config().api_token() == "padded"
    monkeypatch.setenv("GRAFT_API_TOKEN", "two\nlines")
    with pytest.raises(GraftError, match="control character"):
        make_config().api_token()
    monkeypatch.delenv("GRAFT_API_TOKEN")
    token_file = tmp_path / "token"
    token_file.write_text("")
    with pytest.raises(GraftError, match="is empty; put the token in it"):
        make_config(token_file=token_file).api_token()


def test_host_names_answered_depend_on_the_address_and_the_setting():
    loopback = {"localhost", "127.0.0.1", "[::1]"}
    assert make_config().host_allowlist() == loopback
    assert make_config(host="::1").host_allowlist() == loopback
    assert make_config(host="127.0.0.2").host_allowlist() == loopback | {"127.0.0.2"}
    assert make_config(host="0.0.0.0").host_allowlist() is None  # reachable by name anyway
    extra = make_config(host="0.0.0.0", allowed_hosts=" API.example:8080, fe80::1 ,")
    assert extra.allowed_hosts == "api.example,[fe80::1]"
    assert extra.host_allowlist() == loopback | {"0.0.0.0", "api.example", "[fe80::1]"}
    assert make_config(allowed_hosts="*").host_allowlist() is None
    with pytest.raises(GraftError, match=r"--allowed-hosts \(GRAFT_ALLOWED_HOSTS\)"):
        make_config(allowed_hosts="http://x/")
    assert [host_name(h) for h in ("[::1]:80", "Local:1", "a.b", "[::1", "")] == [
        "[::1]",
        "local",
        "a.b",
        "",
        "",
    ]


# Inputs --------------------------------------------------------------------------------------


def test_texts_with_nothing_to_read_are_found():
    assert blank_text(["a fine film", "x\u200b"]) is None
    assert blank_text(["ok", "", "  "]) == 1
    assert blank_text(["ok", " \t\r\n\u3000"]) == 1
    assert blank_text(["\u200b\ufeff\u00a0"]) == 0  # invisible format characters only


def test_the_request_model_stops_at_its_limits_with_one_error():
    from pydantic import ValidationError

    model = request_model(max_inputs=4, max_input_chars=10)
    for body in (
        {"inputs": [1] * 3_000_000},  # not a string, and too many: one error, not millions
        {f"k{i}": 1 for i in range(300_000)},
    ):
        with pytest.raises(ValidationError) as caught:
            model.model_validate(body)
        assert caught.value.error_count() == 1
    schema = model.model_json_schema()["properties"]["inputs"]
    text, qa_input = schema["items"]["anyOf"]  # a text, or a QA {question, context} object
    assert schema["maxItems"] == 4 and text["maxLength"] == 10
    parts = model.model_json_schema()["$defs"][qa_input["$ref"].rsplit("/", 1)[-1]]["properties"]
    assert parts["question"]["maxLength"] == parts["context"]["maxLength"] == 10


# Metrics -------------------------------------------------------------------------------------


def test_each_server_counts_in_its_own_registry_and_gauges_read_live_state():
    depth = {("sst",): 3}
    one = ServerMetrics(queue=lambda: depth, in_flight=lambda: {("sst",): 1})
    two = ServerMetrics(queue=lambda: {}, in_flight=lambda: {})
    one.requests.labels("sst", "200").inc()
    one.batch_size.labels("sst").observe(4)
    depth[("sst",)] = 5

    def samples(metrics):
        families = text_string_to_metric_families(metrics.render())
        return {
            (s.name, tuple(sorted(s.labels.items()))): s.value for f in families for s in f.samples
        }

    got = samples(one)
    assert got[("graft_requests_total", (("code", "200"), ("model", "sst")))] == 1
    assert got[("graft_queue_depth", (("model", "sst"),))] == 5
    assert got[("graft_requests_in_flight", (("model", "sst"),))] == 1
    assert got[("graft_batch_size_bucket", (("le", "2.0"), ("model", "sst")))] == 0
    assert got[("graft_batch_size_bucket", (("le", "4.0"), ("model", "sst")))] == 1
    assert got[("graft_batch_size_sum", (("model", "sst"),))] == 4
    assert not any(name.endswith("_created") for name, _ in got)
    assert samples(two) == {}
    assert CONTENT_TYPE.startswith("text/plain; version=0.0.4")
