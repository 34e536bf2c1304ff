"""Sentence (and sentence-pair) classification: one label per text.

Metrics: accuracy and macro-F1 (scikit-learn), plus the confusion matrix for the report.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from graftwork.data.encode import encode_texts, label_ids

LABEL_KEY = "label"


def model_class():
    from transformers import AutoModelForSequenceClassification

    return AutoModelForSequenceClassification


def label_set(examples: list[dict]) -> list[str]:
    labels = {e["label"] for e in examples}
    if all(label.lstrip("-").isdigit() for label in labels):
        return sorted(labels, key=int)
    return sorted(labels)


def from_text(text: str) -> dict:
    return {"text": text, "text_pair": None, "label": None, "line": 0}


def encode(tokenizer, examples, label2id, max_length: int, path: Path):
    features = encode_texts(tokenizer, examples, max_length)
    labels = label_ids(examples, LABEL_KEY, label2id, path)
    return features, (labels if all(lab is not None for lab in labels) else None)


def predicted(logits: list[np.ndarray]) -> np.ndarray:
    return np.array([int(np.argmax(row)) for row in logits])


def evaluate(examples, features, logits, labels, id2label: dict[int, str]) -> dict:
    from sklearn.metrics import confusion_matrix, f1_score

    gold = np.array(labels)
    pred = predicted(logits)
    names = [id2label[i] for i in range(len(id2label))]
    return {
        "accuracy": float((gold == pred).mean()),
        "macro_f1": float(f1_score(gold, pred, average="macro", labels=list(range(len(names))))),
        "examples": len(gold),
        "confusion": {
            "labels": names,
            "matrix": confusion_matrix(gold, pred, labels=list(range(len(names)))).tolist(),
        },
    }


def decode(examples, features, logits, id2label: dict[int, str], top_k: int = 1) -> list[dict]:
    from graftwork.tasks import softmax

    out = []
    for row in logits:
        probs = softmax(np.asarray(row, dtype=np.float64))
        order = np.argsort(-probs)[: max(1, top_k)]
        answer = {"label": id2label[int(order[0])], "score": float(probs[order[0]])}
        if top_k > 1:
            answer["top_k"] = [{"label": id2label[int(i)], "score": float(probs[i])} for i in order]
        out.append(answer)
    return out
