"""Long texts read alike everywhere: `Predictor.predict`, `graft predict`, `graft eval` (and a
run's own evaluation) and the server split a document into the same windows and join them the
same way; inputs that fit get exactly the answers and metrics of plain truncated encoding.

The models are tiny bundles (max_length 64) trained here on real SST-2 and CoNLL-2003 rows;
the long documents are real dev sentences joined until they hold over 5,000 tokens.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from fastapi.testclient import TestClient
from typer.testing import CliRunner

from conftest import DATA, conll_sentences, tiny_recipe
from graftwork.cli import app as cli
from graftwork.data.readers import read_examples
from graftwork.inference.forward import logits_for
from graftwork.inference.predictor import load
from graftwork.runs import finetune
from graftwork.serve import ServedModel, create_app, make_config

TOKENS = 5000


@pytest.fixture(scope="module")
def runs(tiny_bert, sst2_small, conll_small, tmp_path_factory):
    """One tiny classification run and one NER run (as in test_serve: answers differ by text,
    and the tagger still finds entities)."""
    out = tmp_path_factory.mktemp("windows")
    settings = {
        "classification": (sst2_small, 160, {"epochs": 3, "lr": 5e-3}),
        "ner": (conll_small, 96, {"epochs": 1}),
    }
    results = {}
    for task, (data, examples, train) in settings.items():
        recipe = tiny_recipe(tiny_bert, data, out, task=task, name=task, train=train)
        recipe["data"]["max_train_examples"] = examples
        results[task] = finetune.train(recipe)
    return results


def sentences(task: str) -> list[str]:
    if task == "classification":
        lines = (DATA / "sst2" / "dev.tsv").read_text(encoding="utf-8").splitlines()[1:]
        return [line.split("\t", 1)[1] for line in lines]
    blocks = conll_sentences(DATA / "conll2003" / "dev.txt", 3000).split("\n\n")
    words = [" ".join(line.split()[0] for line in b.splitlines()) for b in blocks]
    return [s for s in words if not s.startswith("-DOCSTART-")]


def long_document(task: str, tokenizer) -> str:
    """Real dev sentences, joined until the text is over TOKENS tokens long."""
    doc: list[str] = []
    for sentence in sentences(task):
        doc.append(sentence)
        if len(doc) % 20 == 0 and len(tokenizer(" ".join(doc))["input_ids"]) > TOKENS:
            return " ".join(doc)
    raise AssertionError("not enough sentences for the document")


def same(a: dict, b: dict) -> None:
    """Two answers agree: the same labels or entities, scores equal up to batching noise."""
    if "label" in a:
        assert a["label"] == b["label"]
        assert a["score"] == pytest.approx(b["score"], abs=1e-6)
        return
    assert a["tags"] == b["tags"]
    spans = [(e["type"], e["start"], e["end"], e["text"]) for e in a["entities"]]
    assert spans == [(e["type"], e["start"], e["end"], e["text"]) for e in b["entities"]]
    for x, y in zip(a["entities"], b["entities"], strict=True):
        assert x["score"] == pytest.approx(y["score"], abs=1e-6)


def gold_file(task: str, predictor, doc: str, answer: dict, folder: Path) -> Path:
    """The document as a labelled file whose gold is the answer given (so evaluation scores
    it 1.0 exactly when it reads the document as predict did)."""
    if task == "classification":
        path = folder / "long.tsv"
        path.write_text(f"sentence\tlabel\n{doc}\t{answer['label']}\n", encoding="utf-8")
        return path
    example = predictor.task.from_text(doc)
    words = example["tokens"]
    word_at = {start: i for i, (start, _) in enumerate(example["offsets"])}
    tags = ["O"] * len(words)  # the predicted entities, written as valid IOB2
    for entity in answer["entities"]:
        first = word_at[entity["start"]]
        for i in range(len(entity["words"])):
            tags[first + i] = ("B-" if i == 0 else "I-") + entity["type"]
    path = folder / "long.txt"
    path.write_text("".join(f"{w}\t{t}\n" for w, t in zip(words, tags, strict=True)))
    return path


@pytest.mark.parametrize("task", ["classification", "ner"])
def test_a_long_document_gets_one_answer_from_every_path(runs, task, tmp_path):
    bundle = runs[task].bundle
    predictor = load(bundle)
    doc = long_document(task, predictor.tokenizer)

    api = predictor.predict([doc])[0]

    source = tmp_path / "in.jsonl"
    source.write_text(json.dumps({"text": doc}) + "\n", encoding="utf-8")
    printed = CliRunner().invoke(cli, ["predict", str(bundle), "--input", str(source)])
    assert printed.exit_code == 0, printed.output
    (line,) = printed.stdout.splitlines()
    command = json.loads(line)
    assert command.pop("text") == doc

    config = make_config()
    model = ServedModel(task, predictor, config)
    with TestClient(create_app([model], config), base_url="http://127.0.0.1") as client:
        response = client.post(f"/v1/models/{task}/predict", json={"inputs": [doc]})
    assert response.status_code == 200, response.text
    served = response.json()["outputs"][0]
    windows = served.pop("windows")

    room = predictor.window - 2  # [CLS] and [SEP]
    assert windows > TOKENS / room, "the document was not read in windows"
    assert (model.window, model.stride) == (predictor.window, predictor.stride)
    same(api, command)
    same(api, served)
    if task == "ner":
        assert api["entities"], "the tiny tagger found no entity; the comparison proved little"

    # graft eval reads the document as predict did: its answer as gold scores 1.0, other gold less
    metrics = predictor.evaluate(gold_file(task, predictor, doc, api, tmp_path))
    if task == "classification":
        assert metrics["accuracy"] == 1.0
        other = "0" if api["label"] == "1" else "1"
        (tmp_path / "other.tsv").write_text(f"sentence\tlabel\n{doc}\t{other}\n")
        assert predictor.evaluate(tmp_path / "other.tsv")["accuracy"] == 0.0
    else:
        assert metrics["f1"] == metrics["precision"] == metrics["recall"] == 1.0
        assert metrics["truncated_words"] == 0


@pytest.mark.parametrize("task", ["classification", "ner"])
def test_inputs_that_fit_get_the_answers_and_metrics_of_truncated_encoding(runs, task):
    """Windows change nothing for an input of at most max_length tokens."""
    result = runs[task]
    predictor = load(result.bundle)
    task_module, tok = predictor.task, predictor.tokenizer
    path = Path(result.recipe.data_path("eval"))
    examples = read_examples(path, predictor.task_config, predictor.data_config).examples
    features, labels = task_module.encode(
        tok, examples, {v: k for k, v in predictor.id2label.items()}, predictor.max_length, path
    )
    fits = [i for i, f in enumerate(features) if len(f["input_ids"]) < predictor.max_length]
    examples = [examples[i] for i in fits]
    features = [features[i] for i in fits]
    labels = [labels[i] for i in fits]
    logits = logits_for(predictor.forward, features, 64, tok.pad_token_id)
    truncated = task_module.evaluate(examples, features, logits, labels, predictor.id2label)

    kept = path.with_name(f"fit-{path.name}")
    if task == "classification":
        lines = path.read_text(encoding="utf-8").splitlines()
        kept.write_text("\n".join([lines[0]] + [lines[e["line"] - 1] for e in examples]) + "\n")
    else:
        kept.write_text(
            "\n".join(
                "".join(f"{w} {t}\n" for w, t in zip(e["tokens"], e["tags"], strict=True))
                for e in examples
            )
        )
    windowed = predictor.evaluate(kept)
    for key, value in truncated.items():
        assert windowed[key] == value, key

    texts = [e["text"] if "text" in e else " ".join(e["tokens"]) for e in examples[:40]]
    plain = [task_module.from_text(t) for t in texts]
    enc, _ = task_module.encode(tok, plain, {}, predictor.max_length, Path("<input>"))
    rows = logits_for(predictor.forward, enc, 64, tok.pad_token_id)
    before = task_module.decode(plain, enc, rows, predictor.id2label, top_k=2)
    assert predictor.predict(texts, top_k=2) == before


def test_a_runs_metrics_equal_graft_evals(runs):
    """The run's own evaluation of its eval split reads long sentences in windows too."""
    for result in runs.values():
        run_metrics = result.metrics["eval"]
        batch_size = result.recipe.train.eval_batch_size
        again = load(result.bundle).evaluate(result.recipe.data_path("eval"), batch_size)
        for key, value in run_metrics.items():
            assert again[key] == value, key
