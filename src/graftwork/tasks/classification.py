"""Sentence (and sentence-pair) classification: one label per text.

Data: TSV/CSV tables or JSON lines (`data.readers`); `task.label_names` names the labels as
they are read (`data.labels.name_labels`), so the model, its bundle and every answer carry the
names, while the label ids keep the order of the raw labels. Metrics: accuracy and macro-F1
(scikit-learn), for two labels also the F1 of the second one as GLUE scores MRPC (`f1`, the
label in `f1_of`: `1` of 0/1 labels, else the later name in sort order, e.g. `paraphrase`),
plus the confusion matrix the report plots. Long texts are split into windows
whose logits are averaged per label (or maximised: `aggregate="max"`).

Left out: windows for sentence pairs, and for tokenizers without a fast (Rust) version: such
inputs are cut at the window, as training cuts them.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
from pydantic import BaseModel, Field

from graftwork.data import readers, windows
from graftwork.data.encode import encode_texts, label_ids
from graftwork.data.labels import name_labels
from graftwork.errors import DataError
from graftwork.tasks import losses, softmax
from graftwork.tasks.html import pyplot, svg

LABEL_KEY = "label"
HEADLINE = "accuracy"
SHOWN = ("accuracy", "macro_f1")
DEFAULT_FORMAT = "tsv"
EXAMPLE = "a gripping, funny film"


class LabelScore(BaseModel):
    label: str
    score: float


class ClassificationOutput(BaseModel):
    label: str
    score: float
    top_k: list[LabelScore] | None = Field(None, description="Present when top_k > 1.")


Output = ClassificationOutput


def model_class():
    from transformers import AutoModelForSequenceClassification

    return AutoModelForSequenceClassification


def read(rows, fmt: str, task, data, require_labels: bool) -> None:
    if fmt == "jsonl":
        readers.read_text_jsonl(rows, task, require_labels)
    else:
        readers.read_table(rows, task, data, fmt, require_labels)
    name_labels(rows.result.examples, task.label_names, rows.shown)


def label_set(examples: list[dict], names: dict[str, str] | None = None) -> list[str]:
    """Labels in the order of their raw values (numbers numerically, else alphabetically),
    named by `names` (raw → name, as `read` named the examples' labels)."""
    names = names or {}
    raw_of = {name: raw for raw, name in names.items()}
    found = {raw_of.get(e["label"], e["label"]) for e in examples}
    if all(label.lstrip("-").isdigit() for label in found):
        ordered = sorted(found, key=int)
    else:
        ordered = sorted(found)
    return [names.get(label, label) for label in ordered]


def from_text(text: str, task=None) -> dict:
    return {"text": text, "text_pair": None, "label": None, "line": 0}


loss = losses.logits_loss  # the training loss (`tasks.base.Task.loss`)


def to_text(example: dict, task=None) -> str:
    return example["text"]


def rewrite(example: dict, text: str) -> dict:
    """The example with a new wording of its text and the same label (back-translation)."""
    if example.get("text_pair") is not None:
        raise DataError("back-translation takes single texts; these examples are sentence pairs")
    return {**example, "text": text}


def encode(tokenizer, examples, label2id, max_length: int, path: Path | str):
    features = encode_texts(tokenizer, examples, max_length)
    labels = label_ids(examples, LABEL_KEY, label2id, path)
    return features, (labels if all(lab is not None for lab in labels) else None)


def split_windows(tokenizer, examples: list[dict], window: int, stride: int) -> list[list[dict]]:
    if not getattr(tokenizer, "is_fast", False) or any(
        e.get("text_pair") is not None for e in examples
    ):
        return [[feature] for feature in encode_texts(tokenizer, examples, window)]
    return windows.split_texts(tokenizer, [e["text"] for e in examples], window, stride)


def merge_windows(features: list[dict], logits: list, aggregate: str = "mean") -> tuple:
    return features[0], windows.aggregate(logits, aggregate)


def predicted(logits: list[np.ndarray]) -> np.ndarray:
    return np.array([int(np.argmax(row)) for row in logits])


def evaluate(examples, features, logits, labels, id2label: dict[int, str]) -> dict:
    from sklearn.metrics import confusion_matrix, f1_score

    gold = np.array(labels)
    pred = predicted(logits)
    names = [id2label[i] for i in range(len(id2label))]
    scores = {
        "accuracy": float((gold == pred).mean()),
        "macro_f1": float(f1_score(gold, pred, average="macro", labels=list(range(len(names))))),
    }
    if len(names) == 2:  # GLUE's F1 of a binary task: of its second label (`1`, `paraphrase`)
        scores["f1"] = float(f1_score(gold, pred, pos_label=1, average="binary", labels=[0, 1]))
        scores["f1_of"] = names[1]
    return {
        **scores,
        "examples": len(gold),
        "confusion": {
            "labels": names,
            "matrix": confusion_matrix(gold, pred, labels=list(range(len(names)))).tolist(),
        },
    }


def decode(examples, features, logits, id2label: dict[int, str], top_k: int = 1) -> list[dict]:
    out = []
    for row in logits:
        probs = softmax(np.asarray(row, dtype=np.float64))
        order = np.argsort(-probs)[: max(1, top_k)]
        answer = {"label": id2label[int(order[0])], "score": float(probs[order[0]])}
        if top_k > 1:
            answer["top_k"] = [{"label": id2label[int(i)], "score": float(probs[i])} for i in order]
        out.append(answer)
    return out


def report_sections(metrics: dict) -> list[str]:
    if "confusion" not in metrics:
        return []
    return [confusion_plot(metrics["confusion"]["labels"], metrics["confusion"]["matrix"])]


def confusion_plot(labels: list[str], matrix: list[list[int]]) -> str:
    plt = pyplot()
    size = max(3.0, 0.6 * len(labels) + 1.5)
    fig, ax = plt.subplots(figsize=(size, size))
    ax.imshow(matrix, cmap="Blues")
    ax.set_xticks(range(len(labels)), labels, rotation=45, ha="right")
    ax.set_yticks(range(len(labels)), labels)
    ax.set_xlabel("predicted")
    ax.set_ylabel("true")
    peak = max(max(row) for row in matrix) or 1
    for i, row in enumerate(matrix):
        for j, value in enumerate(row):
            color = "white" if value > peak / 2 else "black"
            ax.text(j, i, str(value), ha="center", va="center", color=color)
    return svg(fig)
