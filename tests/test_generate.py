"""Generation (`inference/generate.py`, `graft generate`, the server's generate endpoint).

Tiny random decoders built here (conftest's Llama with a chat template; a GPT-2 without one)
and a tiny causal_lm bundle trained on real Multi30k captions. Greedy answers are checked
against transformers' own `generate` run one prompt at a time (so batching, left padding and
the cache change nothing), streaming against the batch, and the server under concurrency.
"""

from __future__ import annotations

import json
import re
import threading
import time
from pathlib import Path

import httpx
import pytest
from typer.testing import CliRunner

from conftest import build_tiny_llama, tiny_recipe
from graftwork.cli import app
from graftwork.errors import GraftError
from graftwork.inference.generate import Stopped, load_generator
from graftwork.inference.predictor import load
from graftwork.runs.finetune import train
from test_serve import TOKEN, running

PROMPTS = [
    "A man in an orange hat starring at something.",
    "Two dogs play.",
    "A little girl climbing into a wooden playhouse while her father watches.",
    "People walk.",
    "A group of men are loading cotton onto a truck",
]


@pytest.fixture(scope="module")
def tiny_gpt2(tmp_path_factory) -> Path:
    """A 2-layer GPT-2 (seeded) with the tiny Llama's tokenizer, without a chat template."""
    import torch
    from transformers import AutoTokenizer, GPT2Config, GPT2LMHeadModel

    folder = build_tiny_llama(tmp_path_factory.mktemp("tok") / "t", chat=False)
    tokenizer = AutoTokenizer.from_pretrained(folder)
    out = tmp_path_factory.mktemp("tiny-gpt2")
    tokenizer.save_pretrained(out)
    config = GPT2Config(
        vocab_size=len(tokenizer),
        n_positions=256,
        n_embd=32,
        n_layer=2,
        n_head=2,
        bos_token_id=tokenizer.eos_token_id,
        eos_token_id=tokenizer.eos_token_id,
    )
    torch.manual_seed(1)
    GPT2LMHeadModel(config).save_pretrained(out, safe_serialization=True)
    return out


def one_by_one(folder: Path, prompts: list[str], max_new_tokens: int) -> list[str]:
    """transformers' greedy `generate`, one unpadded prompt at a time, formatted as the task
    formats prompts (chat template, else the text and a line break)."""
    from transformers import AutoModelForCausalLM, AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(folder)
    model = AutoModelForCausalLM.from_pretrained(folder).eval()
    out = []
    for prompt in prompts:
        if tokenizer.chat_template:
            messages = [{"role": "user", "content": prompt}]
            text = tokenizer.apply_chat_template(
                messages, tokenize=False, add_generation_prompt=True
            )
            ids = tokenizer(text, add_special_tokens=False, return_tensors="pt")
        else:
            ids = tokenizer(prompt + "\n", return_tensors="pt")
        new = model.generate(
            **ids,
            max_new_tokens=max_new_tokens,
            do_sample=False,
            pad_token_id=tokenizer.pad_token_id,
            eos_token_id=tokenizer.eos_token_id,
        )[0, ids["input_ids"].shape[1] :].tolist()
        if tokenizer.eos_token_id in new:
            new = new[: new.index(tokenizer.eos_token_id)]
        out.append(tokenizer.decode(new, skip_special_tokens=True).strip())
    return out


@pytest.mark.parametrize("which", ["tiny_llama", "tiny_gpt2"])
def test_batched_greedy_generation_equals_transformers_one_prompt_at_a_time(request, which):
    folder = request.getfixturevalue(which)
    generator = load_generator(folder)
    settings = generator.settings_with(max_new_tokens=12, greedy=True)
    ours = generator.generate(PROMPTS, settings, batch_size=3)
    assert [a["generated_text"] for a in ours] == one_by_one(folder, PROMPTS, 12)
    assert all(0 < a["tokens"] <= 12 for a in ours)


def test_streaming_gives_the_batch_answer_piece_by_piece(tiny_llama):
    generator = load_generator(tiny_llama)
    settings = generator.settings_with(max_new_tokens=12)
    pieces = list(generator.stream(PROMPTS[0], settings))
    assert len(pieces) > 1
    whole = generator.generate([PROMPTS[0]], settings)[0]["generated_text"]
    assert "".join(pieces).strip() == whole


def test_sampling_is_seeded_and_differs_from_greedy(tiny_llama):
    generator = load_generator(tiny_llama)
    sampled = generator.settings_with(max_new_tokens=12, temperature=1.5)
    assert not sampled.greedy
    first = generator.generate(PROMPTS, sampled)
    assert generator.generate(PROMPTS, sampled) == first  # every batch reseeds
    greedy = generator.generate(PROMPTS, generator.settings_with(max_new_tokens=12))
    assert first != greedy


def test_contradicting_or_invalid_settings_are_refused(tiny_llama):
    generator = load_generator(tiny_llama)
    with pytest.raises(GraftError, match="temperature set how to sample, but greedy"):
        generator.settings_with(temperature=0.7, greedy=True)
    with pytest.raises(GraftError, match="top_p"):
        generator.settings_with(top_p=1.5)
    with pytest.raises(GraftError, match=r"prompts\[1\] is empty or only whitespace"):
        generator.generate(["fine", "  "])


@pytest.fixture(scope="module")
def bundle(tiny_llama, instructions_small, tmp_path_factory) -> Path:
    """A tiny causal_lm bundle (LoRA, default targets) whose prompts carry a task prefix."""
    recipe = tiny_recipe(
        tiny_llama,
        instructions_small,
        tmp_path_factory.mktemp("gen-bundle"),
        task="causal_lm",
        method="lora",
        train={"lr": 1e-2, "threads": 1},
        generation={"max_new_tokens": 10},
    )
    recipe["data"]["max_train_examples"] = 64
    recipe["task"]["prefix"] = "Translate to German: "
    return train(recipe).bundle


def test_a_bundle_generates_with_its_prefix_and_settings_as_predict_does(bundle):
    generator = load_generator(bundle)
    assert generator.settings.max_new_tokens == 10
    answers = generator.generate(PROMPTS[:2])
    predicted = load(bundle, backend="torch").predict(PROMPTS[:2])
    assert answers == predicted
    prefixed = one_by_one(bundle, [f"Translate to German: {p}" for p in PROMPTS[:2]], 10)
    assert [a["generated_text"] for a in answers] == prefixed


def test_graft_generate_streams_one_prompt_and_writes_a_file_of_prompts(bundle, tmp_path):
    runner = CliRunner()
    done = runner.invoke(app, ["generate", str(bundle), PROMPTS[1]])
    assert done.exit_code == 0, done.output
    expected = load_generator(bundle).generate([PROMPTS[1]])[0]["generated_text"]
    assert done.stdout.strip() == expected
    prompts = tmp_path / "prompts.jsonl"
    prompts.write_text("".join(json.dumps({"prompt": p}) + "\n" for p in PROMPTS))
    out = tmp_path / "out.jsonl"
    args = ["generate", str(bundle), "--input", str(prompts), "--output", str(out)]
    done = runner.invoke(app, [*args, "--batch-size", "2"])
    assert done.exit_code == 0, done.output
    records = [json.loads(line) for line in out.read_text().splitlines()]
    assert [r["prompt"] for r in records] == PROMPTS
    assert [r["generated_text"] for r in records] == [
        a["generated_text"] for a in load_generator(bundle).generate(PROMPTS)
    ]


def test_graft_generate_names_the_bad_line_of_an_input_file(tmp_path, tiny_llama):
    from graftwork.cli import generate as verb

    bad = tmp_path / "prompts.jsonl"
    bad.write_text('{"prompt": "fine"}\n\n{"text": "no prompt"}\n')
    with pytest.raises(
        GraftError, match="prompts.jsonl, line 3: expected a JSON object with a non"
    ):
        verb.read_prompts(bad)
    bad.write_text('{"prompt": "fine"}\n{"prompt": "  "}\n')
    blank = "line 2: the prompt is empty or only whitespace; there is nothing to continue from"
    with pytest.raises(GraftError, match=blank):
        verb.read_prompts(bad)
    bad.write_text('{"prompt": "fine"}\n{"prompt": \n')
    with pytest.raises(GraftError, match="line 2: not valid JSON .*; expected JSON lines with a"):
        verb.read_prompts(bad)
    bad.write_text('{"question": "q", "context": "c"}\n')  # a QA pair is no prompt
    with pytest.raises(GraftError, match="line 1: expected a JSON object"):
        verb.read_prompts(bad)
    plain = tmp_path / "prompts.txt"  # one prompt a line, behind a byte-order mark
    plain.write_text("What is Paris?\n\n  Name a colour.\n", encoding="utf-8-sig")
    assert verb.read_prompts(plain) == ["What is Paris?", "  Name a colour."]
    with pytest.raises(GraftError, match="is a folder; give a file with one prompt a line"):
        verb.read_prompts(tmp_path)
    with pytest.raises(GraftError, match="give one prompt, or --input FILE"):
        verb.generate(str(tiny_llama), None, None, None, None, None, None, None, 16, None)


def test_an_encoder_backbone_is_refused_by_graft_generate(tiny_bert):
    with pytest.raises(GraftError, match="holds a BertModel, not a decoder language model"):
        load_generator(tiny_bert)


def test_a_classification_bundle_is_refused_by_graft_generate(tiny_bert, sst2_small, tmp_path):
    recipe = tiny_recipe(tiny_bert, sst2_small, tmp_path)
    recipe["data"]["max_train_examples"] = 16
    classifier = train(recipe).bundle
    with pytest.raises(GraftError, match="classification bundle; graft generate needs a causal"):
        load_generator(classifier)


# ---------------------------------------------------------------- the server


def events(body: str) -> list[tuple[str, dict]]:
    """(event name, data) of each server-sent event."""
    out = []
    for block in body.strip().split("\n\n"):
        lines = dict(line.split(": ", 1) for line in block.splitlines())
        out.append((lines.get("event", "message"), json.loads(lines["data"])))
    return out


@pytest.fixture(scope="module")
def served(bundle):
    return {"translate": load(bundle, threads=1)}


def test_the_generate_endpoint_answers_whole_and_streamed(served, bundle):
    expected = load_generator(bundle).generate(PROMPTS[:3])
    headers = {"Authorization": f"Bearer {TOKEN}"}
    with running(served, token=TOKEN) as (url, _):
        whole = httpx.post(
            f"{url}/v1/models/translate/generate", json={"inputs": PROMPTS[:3]}, headers=headers
        )
        assert whole.status_code == 200, whole.text
        assert whole.json()["outputs"] == expected
        with httpx.stream(
            "POST",
            f"{url}/v1/models/translate/generate",
            json={"inputs": [PROMPTS[0]], "stream": True},
            headers=headers,
        ) as response:
            assert response.headers["content-type"].startswith("text/event-stream")
            body = "".join(response.iter_text())
        got = events(body)
        assert got[-1] == (
            "message",
            {"done": True, "generated_text": expected[0]["generated_text"]},
        )
        assert "".join(d["text"] for _, d in got[:-1]).strip() == expected[0]["generated_text"]
        unauthorised = httpx.post(f"{url}/v1/models/translate/generate", json={"inputs": ["x"]})
        assert unauthorised.status_code == 401
        metrics = httpx.get(f"{url}/metrics", headers=headers).text
        counted = re.search(r'requests_total\{code="200",model="translate"\} (\S+)', metrics)
        assert counted and float(counted.group(1)) == 2, metrics


def test_concurrent_streams_each_get_their_own_whole_answer(served, bundle):
    expected = {
        p: a["generated_text"]
        for p, a in zip(PROMPTS, load_generator(bundle).generate(PROMPTS), strict=True)
    }
    results: dict[str, str] = {}

    def ask(url: str, prompt: str) -> None:
        with httpx.stream(
            "POST",
            f"{url}/v1/models/translate/generate",
            json={"inputs": [prompt], "stream": True},
            timeout=120,
        ) as response:
            body = "".join(response.iter_text())
        got = events(body)
        results[prompt] = got[-1][1]["generated_text"] if got[-1][1].get("done") else body

    with running(served) as (url, _):
        threads = [threading.Thread(target=ask, args=(url, p)) for p in PROMPTS]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
    assert results == expected


@pytest.mark.parametrize(
    "body, status, message",
    [
        ({"inputs": []}, 422, "inputs"),
        ({"inputs": ["   "]}, 422, r"inputs\[0\] is empty or only whitespace"),
        ({"inputs": ["a", "b"], "stream": True}, 422, "stream answers one prompt"),
        ({"inputs": ["a"], "temperature": 0.5, "greedy": True}, 422, "greedy decoding"),
        ({"inputs": ["a"], "temperature": 0}, 422, 'temperature 0 does not sample.*"greedy": true'),
        ({"inputs": ["a"], "temperature": 0, "greedy": False}, 422, "temperature 0 does not"),
        ({"prompt": "a"}, 422, "inputs"),
    ],
)
def test_bad_generate_requests_say_what_is_wrong(served, body, status, message):
    with running(served) as (url, _):
        response = httpx.post(f"{url}/v1/models/translate/generate", json=body)
    assert response.status_code == status
    assert re.search(message, response.json()["error"]["message"]), response.text


@pytest.mark.parametrize(
    "body, message",
    [
        ('{"inputs": ["a"], "max_new_tokens": 100000}', "max_new_tokens: Input should be less"),
        ('{"inputs": ["a"], "temperature": NaN}', "temperature: Input should be a finite number"),
        ('{"inputs": ["a"], "top_p": Infinity}', "top_p: Input should be a finite number"),
    ],
)
def test_a_bad_generate_setting_is_named_alone_without_a_hint_about_inputs(served, body, message):
    with running(served) as (url, _):
        response = httpx.post(
            f"{url}/v1/models/translate/generate",
            content=body,
            headers={"Content-Type": "application/json"},
        )
    assert response.status_code == 422, response.text
    said = response.json()["error"]["message"]
    assert said.startswith(message), said
    assert "inputs" not in said and "should be less than or equal to 10" not in said


def endless_generator(folder: Path):
    """The tiny Llama's generator, which never ends an answer: its end of sequence is
    suppressed (it samples, so that the answer holds words, which stream piece by piece)."""
    generator = load_generator(folder)
    generator.model.generation_config.suppress_tokens = [generator.tokenizer.eos_token_id]
    return generator


def test_a_stream_whose_reader_stops_generates_at_most_one_more_token(tiny_llama):
    endless = endless_generator(tiny_llama)
    stop = threading.Event()
    after_stop = []
    endless.model.register_forward_pre_hook(lambda *_: after_stop.append(stop.is_set()))
    settings = endless.settings_with(max_new_tokens=8192, temperature=1.0)
    pieces = endless.stream("Two dogs play.", settings, stop)
    assert next(pieces)
    stop.set()
    with pytest.raises(Stopped):
        list(pieces)
    assert sum(after_stop) <= 1


def test_a_dropped_stream_stops_generating_and_counts_as_client_closed(served, tiny_llama):
    endless = endless_generator(tiny_llama)
    forwards = []
    endless.model.register_forward_pre_hook(lambda *_: forwards.append(1))
    with running(served) as (url, models):
        models[0].generator = endless  # the served causal_lm bundle generates without end
        generate = f"{url}/v1/models/translate/generate"
        body = {"inputs": [PROMPTS[1]], "max_new_tokens": 8192, "temperature": 1.0}
        with httpx.stream("POST", generate, json={**body, "stream": True}) as response:
            next(line for line in response.iter_lines() if line.startswith("data:"))
        # the client is gone: the server counts it as 499 once it has seen so
        pattern = r'requests_total\{code="499",model="translate"\} 1\.0'
        deadline = time.monotonic() + 60
        while not re.search(pattern, httpx.get(f"{url}/metrics").text):
            assert time.monotonic() < deadline, httpx.get(f"{url}/metrics").text
            time.sleep(0.05)
        seen = len(forwards)
        behind = httpx.post(generate, json={"inputs": [PROMPTS[3]], "max_new_tokens": 2})
        assert behind.status_code == 200, behind.text
        metrics = httpx.get(f"{url}/metrics").text
    assert len(forwards) <= seen + 1 + 2  # one more step of the stream, two of the request
    assert 'code="500"' not in metrics, metrics
