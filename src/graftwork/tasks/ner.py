"""Token classification (NER) with IOB2 tags.

Each word's prediction is read from its first sub-word piece. Words cut off by `max_length`
are predicted `O` and counted (`truncated_words`); long-text windows are the serving layer's
job. Metrics: entity-level precision/recall/F1 by `seqeval` (the conlleval-compatible default,
and the strict IOB2 mode alongside), with a per-type table for the report.
"""

from __future__ import annotations

import re
from pathlib import Path

import numpy as np

from graftwork.data.encode import encode_words, first_piece_labels, first_pieces, label_ids

WORD = re.compile(r"\w+(?:[-'’.]\w+)*|[^\w\s]")

LABEL_KEY = "tags"


def model_class():
    from transformers import AutoModelForTokenClassification

    return AutoModelForTokenClassification


def label_set(examples: list[dict]) -> list[str]:
    tags = {tag for e in examples for tag in e["tags"]}
    types = sorted({tag[2:] for tag in tags if tag != "O"})
    return ["O"] + [f"{p}-{t}" for t in types for p in ("B", "I")]


def from_text(text: str) -> dict:
    matches = list(WORD.finditer(text))
    return {
        "tokens": [m.group() for m in matches],
        "offsets": [(m.start(), m.end()) for m in matches],
        "text": text,
        "tags": None,
        "line": 0,
    }


def encode(tokenizer, examples, label2id, max_length: int, path: Path):
    features = encode_words(tokenizer, examples, max_length)
    tags = label_ids(examples, LABEL_KEY, label2id, path)
    if any(t is None for t in tags):
        return features, None
    labels = [first_piece_labels(f["word_ids"], t) for f, t in zip(features, tags, strict=True)]
    return features, labels


def word_predictions(example, feature, logits, id2label) -> tuple[list[str], list[float]]:
    from graftwork.tasks import softmax

    probs = softmax(np.asarray(logits, dtype=np.float64))
    positions = first_pieces(feature["word_ids"])
    tags, scores = [], []
    for word in range(len(example["tokens"])):
        pos = positions.get(word)
        if pos is None:
            tags.append("O")
            scores.append(0.0)
        else:
            best = int(np.argmax(probs[pos]))
            tags.append(id2label[best])
            scores.append(float(probs[pos, best]))
    return tags, scores


def evaluate(examples, features, logits, labels, id2label: dict[int, str]) -> dict:
    from seqeval.metrics import classification_report, f1_score, precision_score, recall_score
    from seqeval.scheme import IOB2

    gold = [e["tags"] for e in examples]
    pred = [
        word_predictions(e, f, lg, id2label)[0]
        for e, f, lg in zip(examples, features, logits, strict=True)
    ]
    truncated = sum(
        len(e["tokens"]) - len(first_pieces(f["word_ids"]))
        for e, f in zip(examples, features, strict=True)
    )
    report = classification_report(gold, pred, output_dict=True, zero_division=0)
    per_type = {
        k: {
            "precision": v["precision"],
            "recall": v["recall"],
            "f1": v["f1-score"],
            "support": int(v["support"]),
        }
        for k, v in report.items()
        if k not in ("micro avg", "macro avg", "weighted avg")
    }
    return {
        "f1": float(f1_score(gold, pred, zero_division=0)),
        "precision": float(precision_score(gold, pred, zero_division=0)),
        "recall": float(recall_score(gold, pred, zero_division=0)),
        "f1_strict": float(f1_score(gold, pred, mode="strict", scheme=IOB2, zero_division=0)),
        "sentences": len(gold),
        "truncated_words": int(truncated),
        "per_type": per_type,
    }


def decode(examples, features, logits, id2label: dict[int, str], top_k: int = 1) -> list[dict]:
    from seqeval.metrics.sequence_labeling import get_entities

    out = []
    for example, feature, row in zip(examples, features, logits, strict=True):
        tags, scores = word_predictions(example, feature, row, id2label)
        offsets = example.get("offsets")
        entities = []
        for kind, start, end in get_entities(tags):
            entity = {
                "type": kind,
                "words": example["tokens"][start : end + 1],
                "score": float(np.mean(scores[start : end + 1])),
            }
            if offsets:
                entity["start"], entity["end"] = offsets[start][0], offsets[end][1]
                entity["text"] = example["text"][entity["start"] : entity["end"]]
            else:
                entity["text"] = " ".join(entity.pop("words"))
                entity["word_start"], entity["word_end"] = start, end + 1
            entities.append(entity)
        out.append({"entities": entities, "tags": tags})
    return out
