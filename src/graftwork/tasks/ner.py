"""Token classification (NER) with IOB2 tags.

Data: CoNLL column files or JSON lines of tokens and tags (`data.readers`). Each word's
prediction is read from its first sub-word piece; a sentence longer than the window is split
into windows and each word takes its logits from the window that gives it the most context
(`data.windows.merge_words`). Words that get no piece at all are predicted `O` and counted
(`truncated_words`). Metrics: entity-level precision/recall/F1 by `seqeval` (the
conlleval-compatible default, and the strict IOB2 mode alongside), with a per-type table for
the report.

Tags are IOB2; conlleval's looser reading (an I-X may start an entity) is accepted with
`data.iob: repair`, which rewrites such tags to IOB2 as they are read. Entity types keep their
names as the data spells them (`task.label_names` is for classification).

Left out: nested entities, and schemes other than IOB2 (IOBES data must be converted).
"""

from __future__ import annotations

import re
from pathlib import Path

import numpy as np
from pydantic import BaseModel, Field

from graftwork.data import readers, windows
from graftwork.data.encode import encode_words, first_piece_labels, first_pieces, label_ids
from graftwork.tasks import losses, softmax
from graftwork.tasks.html import table

WORD = re.compile(r"\w+(?:[-'’.]\w+)*|[^\w\s]")

LABEL_KEY = "tags"
HEADLINE = "f1"
SHOWN = ("f1", "precision", "recall")
DEFAULT_FORMAT = "conll"
EXAMPLE = "EU rejects German call to boycott British lamb."


class Entity(BaseModel):
    type: str
    text: str = Field(..., description="The entity as it appears: text[start:end].")
    start: int = Field(..., description="Offset in the input text, in Unicode code points.")
    end: int = Field(..., description="Offset in the input text (exclusive), in code points.")
    score: float = Field(..., description="Mean probability of the entity's word tags.")
    words: list[str]


class EntitiesOutput(BaseModel):
    entities: list[Entity]
    tags: list[str] = Field(..., description="One IOB2 tag per word (words: tasks.ner.WORD).")


Output = EntitiesOutput


def model_class():
    from transformers import AutoModelForTokenClassification

    return AutoModelForTokenClassification


def read(rows, fmt: str, task, data, require_labels: bool) -> None:
    if fmt == "jsonl":
        readers.read_tagged_jsonl(rows, data, require_labels)
    else:
        readers.read_conll(rows, data, require_labels)
    if data.drop_labels:
        readers.drop_entity_types(rows.result.examples, set(data.drop_labels))


def label_set(examples: list[dict], names: dict[str, str] | None = None) -> list[str]:
    tags = {tag for e in examples for tag in e["tags"]}
    types = sorted({tag[2:] for tag in tags if tag != "O"})
    return ["O"] + [f"{p}-{t}" for t in types for p in ("B", "I")]


def from_text(text: str, task=None) -> dict:
    matches = list(WORD.finditer(text))
    return {
        "tokens": [m.group() for m in matches],
        "offsets": [(m.start(), m.end()) for m in matches],
        "text": text,
        "tags": None,
        "line": 0,
    }


loss = losses.logits_loss  # the training loss (`tasks.base.Task.loss`)


def to_text(example: dict, task=None) -> str:
    return example.get("text") or " ".join(example["tokens"])


def encode(tokenizer, examples, label2id, max_length: int, path: Path | str):
    features = encode_words(tokenizer, examples, max_length)
    tags = label_ids(examples, LABEL_KEY, label2id, path)
    if any(t is None for t in tags):
        return features, None
    labels = [first_piece_labels(f["word_ids"], t) for f, t in zip(features, tags, strict=True)]
    return features, labels


def split_windows(tokenizer, examples: list[dict], window: int, stride: int) -> list[list[dict]]:
    return windows.split_words(tokenizer, [e["tokens"] for e in examples], window, stride)


def merge_windows(features: list[dict], logits: list, aggregate: str = "mean") -> tuple:
    return windows.merge_words(features, logits)


def word_predictions(example, feature, logits, id2label) -> tuple[list[str], list[float]]:
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


def report_sections(metrics: dict) -> list[str]:
    if "per_type" not in metrics:
        return []
    rows = [
        [t, v["precision"], v["recall"], v["f1"], v["support"]]
        for t, v in sorted(metrics["per_type"].items())
    ]
    return [table(["entity type", "precision", "recall", "F1", "support"], rows)]
