"""Extractive QA: windows and offsets on real SQuAD text, the official scoring, located errors
for bad data, and the whole path on a tiny BERT (train → bundle → reload → predict, CLI,
ONNX export)."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

import graftwork
from conftest import DATA, tiny_recipe
from graftwork.config.recipe import load_recipe
from graftwork.data.readers import read_examples
from graftwork.errors import DataError, GraftError
from graftwork.tasks import qa
from graftwork.tasks.squad_metric import f1_v1, normalize_answer, score, squad_scores

SQUAD = DATA / "squad"


@pytest.fixture(scope="module")
def tokenizer():
    """The packaged MiniLM's tokenizer (real WordPiece offsets on real text)."""
    from graftwork.backbones import load
    from graftwork.config.sections import BackboneConfig

    config = BackboneConfig(name="minilm-l6")
    return load.load_tokenizer(load.resolve(config), config)


def read(path: Path, **task) -> list[dict]:
    recipe = load_recipe({"task": {"type": "qa", **task}, "data": {"train": str(path)}})
    return read_examples(path, recipe.task, recipe.data).examples


@pytest.fixture(scope="module")
def dev() -> list[dict]:
    return read(SQUAD / "dev.json")


# ---------------------------------------------------------------- windows and offsets


def test_the_official_squad_json_is_read_whole(dev):
    assert len(dev) == 1676
    assert len(read(SQUAD / "train.json")) == 7010
    first = dev[0]
    assert first["where"].startswith("data[0].paragraphs[0].qas[0] (id ")
    for e in dev:
        for a in e["answers"]:
            assert e["context"][a["start"] : a["start"] + len(a["text"])] == a["text"]


def test_windows_overlap_by_the_stride_and_keep_context_offsets(tokenizer, dev):
    long = max(dev, key=lambda e: len(e["context"]))
    [windows] = qa.split_windows(tokenizer, [long], 128, 32)
    assert len(windows) > 5
    for feature in windows:
        assert len(feature["input_ids"]) <= 128
        assert feature["input_ids"][feature["cls"]] == tokenizer.cls_token_id
    spans = [[o for o in f["offsets"] if o is not None] for f in windows]
    for before, after in zip(spans, spans[1:], strict=False):
        assert before[-32:] == after[:32]  # consecutive windows share 32 context tokens
    assert spans[0][0][0] == 0 and spans[-1][-1][1] == len(long["context"].rstrip())


def test_an_answer_past_the_first_window_is_recovered_exactly(tokenizer, dev):
    """Targets land in a later window, and decoding them gives the gold text and offsets."""
    features, targets = qa.encode(tokenizer, dev, None, 128, "dev.json")
    first: dict[int, dict] = {}
    for feature in features:
        first.setdefault(feature["sample"], feature)
    later, exact = 0, 0
    for feature, (start, end) in zip(features, targets, strict=True):
        if start == feature["cls"] or first[feature["sample"]] is feature:
            continue
        example = dev[feature["sample"]]
        answer = example["answers"][0]
        later += 1
        logits = np.full((len(feature["input_ids"]), 2), -10.0)
        logits[start, 0] = logits[end, 1] = 10.0
        others = [f for f in features if f["sample"] == feature["sample"]]
        rows = [
            logits if f is feature else np.full((len(f["input_ids"]), 2), -10.0) for f in others
        ]
        [got] = qa.decode([example], [{"windows": others}], [rows], {})
        gold = (answer["start"], answer["start"] + len(answer["text"]))
        if (got["start"], got["end"]) == gold:
            exact += 1
            assert got["answer"] == answer["text"]
        else:  # the answer starts or ends inside a word piece ("gold" of "golden")
            assert answer["text"] in got["answer"]
    assert later > 100
    assert exact / later > 0.97


def test_an_unanswerable_question_is_answered_empty_only_with_no_answer():
    context = "Grafting joins a scion to a rootstock."
    rows = np.zeros((12, 2))
    rows[0] = [5.0, 5.0]  # [CLS] beats every span
    rows[6] = [3.0, 0.0]
    rows[7] = [0.0, 3.0]
    feature = {"cls": 0, "offsets": [None] * 4 + [(i * 3, i * 3 + 2) for i in range(8)]}
    example = {"context": context, "options": {**qa.DEFAULTS, "no_answer": True}}
    [empty] = qa.answer_spans(example, [feature], [rows])
    assert empty["answer"] == "" and empty["start"] is None
    example["options"]["no_answer"] = False
    [span] = qa.answer_spans(example, [feature], [rows])
    assert (span["start"], span["end"]) == (6, 11) and span["answer"] == context[6:11]


def test_spans_longer_than_max_answer_length_are_not_answered():
    rows = np.zeros((10, 2))
    rows[2, 0], rows[9, 1], rows[3, 1] = 9.0, 9.0, 1.0
    feature = {"cls": 0, "offsets": [None] + [(i, i + 1) for i in range(9)]}
    example = {"context": "abcdefghij", "options": {**qa.DEFAULTS, "max_answer_length": 4}}
    [span] = qa.answer_spans(example, [feature], [rows])
    assert (span["start"], span["end"]) == (1, 3)  # tokens 2..3, not 2..9


# ---------------------------------------------------------------- scoring


def test_normalisation_and_f1_follow_the_official_script():
    assert normalize_answer("The  Quick, Brown fox!") == "quick brown fox"
    assert normalize_answer("an apple a day") == "apple day"
    assert f1_v1("the cat sat on the mat", "a cat sat") == pytest.approx(2 / 3)
    assert f1_v1("Denver Broncos", "the Denver Broncos!") == 1.0
    assert f1_v1("", "Denver") == 0.0
    assert score("Broncos", ["Denver Broncos", "Broncos"], v2=False) == (1, 1.0)
    assert score("Carolina", ["Denver Broncos"], v2=False) == (0, 0.0)


def test_squad_v2_scores_unanswerable_questions_by_an_empty_answer():
    refs = [[], [], ["Denver Broncos"]]
    got = squad_scores(["", "Denver", "Denver Broncos"], refs, v2=True)
    assert got["exact_match"] == pytest.approx(2 / 3) and got["f1"] == pytest.approx(2 / 3)
    assert got["no_answer_exact_match"] == 0.5 and got["has_answer_f1"] == 1.0
    assert got["no_answer_questions"] == 2 and got["has_answer_questions"] == 1


def test_gold_answers_score_one_and_empty_answers_zero_on_the_dev_set(dev):
    references = [[a["text"] for a in e["answers"]] for e in dev]
    assert squad_scores([r[0] for r in references], references) == {
        "exact_match": 1.0,
        "f1": 1.0,
        "questions": 1676,
    }
    assert squad_scores([""] * len(dev), references)["f1"] == 0.0
    # the last reference of each question against all of them: the official max rule
    last = squad_scores([r[-1] for r in references], references)
    assert last["exact_match"] == 1.0


# ---------------------------------------------------------------- bad input


def write(path: Path, rows: list[dict]) -> Path:
    path.write_text("".join(json.dumps(r) + "\n" for r in rows), encoding="utf-8")
    return path


GOOD = {
    "question": "Who?",
    "context": "Ann met Bob.",
    "answers": [{"text": "Bob", "answer_start": 8}],
}


@pytest.mark.parametrize(
    "record, message",
    [
        ({k: v for k, v in GOOD.items() if k != "question"}, "line 2: field 'question' is missing"),
        ({**GOOD, "context": "  "}, "line 2: the context is missing or empty"),
        ({k: v for k, v in GOOD.items() if k != "answers"}, "line 2: field 'answers' is missing"),
        ({**GOOD, "answers": [{"text": "Bob"}]}, r"line 2: answers\[0\] .* has no answer_start"),
        ({**GOOD, "answers": [{"text": "Ann", "answer_start": 8}]}, "not inside its context"),
        ({**GOOD, "is_impossible": True, "answers": []}, "task.no_answer: true"),
    ],
)
def test_bad_records_are_refused_with_their_line(tmp_path, record, message):
    path = write(tmp_path / "qa.jsonl", [GOOD, record])
    with pytest.raises(DataError, match=message):
        read(path)


def test_datasets_style_answers_and_skipping_bad_rows(tmp_path):
    columns = {**GOOD, "answers": {"text": ["Bob"], "answer_start": [8]}}
    path = write(
        tmp_path / "qa.jsonl", [columns, {**GOOD, "answers": [{"text": "x", "answer_start": 0}]}]
    )
    recipe = load_recipe(
        {"task": {"type": "qa"}, "data": {"train": str(path), "on_bad_rows": "skip"}}
    )
    result = read_examples(path, recipe.task, recipe.data)
    assert [e["answers"] for e in result.examples] == [[{"text": "Bob", "start": 8}]]
    assert len(result.skipped) == 1 and "line 2" in result.skipped[0]


def test_qa_options_are_refused_for_other_tasks():
    with pytest.raises(Exception, match="task.doc_stride is an option of extractive QA"):
        load_recipe({"task": {"type": "classification", "doc_stride": 64}})
    load_recipe({"task": {"type": "qa", "doc_stride": 64, "no_answer": True}})


def test_a_question_that_leaves_no_room_for_context_is_a_located_error(tokenizer):
    example = {**qa.from_text({"question": "why " * 200, "context": "because"}), "where": "q7"}
    with pytest.raises(DataError, match="q7: the question takes 200 tokens"):
        qa.split_windows(tokenizer, [example], 128, 32)


def test_raw_inputs_need_a_question_and_a_context():
    with pytest.raises(GraftError, match='give {"question"'):
        qa.from_text("just a text")
    with pytest.raises(GraftError, match="non-empty 'context'"):
        qa.from_text({"question": "Who?"})
    assert qa.from_text(json.dumps({"question": "Who?", "context": "Bob."}))["question"] == "Who?"


# ---------------------------------------------------------------- end to end (tiny BERT)


@pytest.fixture(scope="module")
def trained(tiny_bert, squad_small, tmp_path_factory):
    from graftwork.runs.finetune import train

    out = tmp_path_factory.mktemp("qa-run")
    train_section = {"epochs": 1, "batch_size": 16, "lr": 3e-3, "seed": 3, "threads": 1}
    recipe = tiny_recipe(tiny_bert, squad_small, out, task="qa", train=train_section)
    recipe["task"]["doc_stride"] = 16
    recipe["data"]["max_train_examples"] = 200
    return train(recipe)


def test_a_trained_bundle_reloads_and_answers_as_in_memory(trained, squad_small):
    metrics = trained.metrics["eval"]
    assert set(metrics) >= {"exact_match", "f1", "questions", "windows"}
    assert metrics["questions"] == 100 and metrics["windows"] > 100
    predictor = graftwork.load(trained.bundle, backend="torch")
    again = predictor.evaluate(squad_small["eval"])
    assert again["f1"] == pytest.approx(metrics["f1"]) and again["exact_match"] == pytest.approx(
        metrics["exact_match"]
    )
    rows = [json.loads(line) for line in squad_small["eval"].read_text().splitlines()[:5]]
    inputs = [{"question": r["question"], "context": r["context"]} for r in rows]
    answers = predictor.predict(inputs, top_k=3)
    for answer, row in zip(answers, rows, strict=True):
        assert row["context"][answer["start"] : answer["end"]] == answer["answer"]
        assert len(answer["top_k"]) == 3 and answer["top_k"][0]["answer"] == answer["answer"]
    single = [predictor.predict([i])[0]["answer"] for i in inputs]
    assert single == [a["answer"] for a in answers]  # batching changes no answer


def test_the_bundle_loads_in_plain_transformers(trained):
    import torch
    from transformers import AutoModelForQuestionAnswering, AutoTokenizer

    model = AutoModelForQuestionAnswering.from_pretrained(str(trained.bundle)).eval()
    tokenizer = AutoTokenizer.from_pretrained(str(trained.bundle))
    inputs = tokenizer("Who?", "Ann met Bob.", return_tensors="pt")
    predictor = graftwork.load(trained.bundle, backend="torch")
    with torch.inference_mode():
        out = model(**inputs)
        ours = predictor.model(**inputs)
    torch.testing.assert_close(out.start_logits, ours.start_logits)


def test_onnx_export_answers_like_pytorch(trained, squad_small):
    from graftwork.export import export_bundle

    artifacts = export_bundle(trained.bundle, int8=True, limit=40)
    assert artifacts["onnx-fp32"]["max_abs_logit_diff"] < 1e-4
    assert artifacts["onnx-int8"]["metric"] == "f1"
    rows = [json.loads(line) for line in squad_small["eval"].read_text().splitlines()[:20]]
    inputs = [{"question": r["question"], "context": r["context"]} for r in rows]
    torch_answers = graftwork.load(trained.bundle, backend="torch").predict(inputs)
    onnx_answers = graftwork.load(trained.bundle, backend="onnx").predict(inputs)
    assert [a["answer"] for a in onnx_answers] == [a["answer"] for a in torch_answers]


def test_graft_predict_answers_a_question_about_a_context(trained):
    from typer.testing import CliRunner

    from graftwork.cli import app

    context = "The scion was grafted onto the rootstock in the orchard behind the house."
    args = ["predict", str(trained.bundle), "--question", "Where?", "--context", context]
    done = CliRunner().invoke(app, [*args, "--top-k", "2"])
    assert done.exit_code == 0, done.output
    answer = json.loads(done.output.strip().splitlines()[-1])
    assert answer["question"] == "Where?" and len(answer["top_k"]) == 2
    assert context[answer["start"] : answer["end"]] == answer["answer"]
    refused = CliRunner().invoke(app, ["predict", str(trained.bundle), "--question", "Where?"])
    assert refused.exit_code != 0 and "--question and --context together" in str(
        refused.exception or refused.output
    )


def test_the_server_answers_questions_with_offsets(trained):
    import httpx

    from test_serve import running

    predictor = graftwork.load(trained.bundle, threads=1)
    context = "Ann planted the orchard. " * 30 + "Bob grafted the apple trees in 1990."
    inputs = [{"question": "Who grafted the trees?", "context": context}]
    with running({"qa": predictor}) as (url, _):
        done = httpx.post(f"{url}/v1/models/qa/predict", json={"inputs": inputs, "top_k": 2})
        assert done.status_code == 200, done.text
        [answer] = done.json()["outputs"]
        missing = httpx.post(f"{url}/v1/models/qa/predict", json={"inputs": [{"question": "x"}]})
        blank = {"inputs": [{"question": "Who?", "context": "  "}]}
        empty = httpx.post(f"{url}/v1/models/qa/predict", json=blank)
        text = httpx.post(f"{url}/v1/models/qa/predict", json={"inputs": ["no question here"]})
    assert answer["windows"] > 1
    assert context[answer["start"] : answer["end"]] == answer["answer"]
    assert answer == {**predictor.predict(inputs, top_k=2)[0], "windows": answer["windows"]}
    assert missing.status_code == 422 and "context" in missing.text
    assert empty.status_code == 422 and empty.json()["error"]["type"] == "empty_input"
    assert text.status_code == 422 and text.json()["error"]["index"] == 0
    assert 'give {"question"' in text.json()["error"]["message"]


def test_stages_written_for_label_heads_refuse_a_qa_model(trained):
    from graftwork.errors import RecipeError
    from graftwork.methods.base import refuse

    for stage in ("distill", "prune"):
        with pytest.raises(GraftError, match="extractive-QA model"):
            refuse("full", stage, trained.bundle, task="qa")
    with pytest.raises(RecipeError, match="task qa trains with no objective"):
        load_recipe({"task": {"type": "qa"}, "objective": {"type": "dann", "target": "x"}})


def test_graft_predict_reads_questions_from_json_lines(trained, squad_small, tmp_path):
    from typer.testing import CliRunner

    from graftwork.cli import app

    rows = [json.loads(line) for line in squad_small["eval"].read_text().splitlines()[:6]]
    source = write(tmp_path / "questions.jsonl", rows)
    printed = CliRunner().invoke(app, ["predict", str(trained.bundle), "--input", str(source)])
    assert printed.exit_code == 0, printed.output
    answers = [json.loads(line) for line in printed.output.strip().splitlines()[-6:]]
    out = tmp_path / "answers.jsonl"
    args = ["predict", str(trained.bundle), "--input", str(source), "--output", str(out)]
    streamed = CliRunner().invoke(app, args)
    assert streamed.exit_code == 0, streamed.output
    lines = [json.loads(line) for line in out.read_text().splitlines()]
    assert [a["answer"] for a in lines] == [a["answer"] for a in answers]
    for answer, row in zip(answers, rows, strict=True):
        assert answer["question"] == row["question"]
        assert row["context"][answer["start"] : answer["end"]] == answer["answer"]
