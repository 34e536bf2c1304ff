"""Extractive question answering (SQuAD-style): the answer is a span of the context.

Data: the official SQuAD JSON (v1.1, or v2.0 with `task.no_answer: true`) or JSON lines of
question/context/answers (`data.squad`). The model is `AutoModelForQuestionAnswering` (a start
and an end logit per token; `tasks.output_logits` stacks them into (tokens, 2) so every path
runs it like a token-level head with labels `start` and `end`).

Windows: a question with its context is one input, `[CLS] question [SEP] context [SEP]`; a
context too long for `data.max_length` is cut into overlapping windows, the question repeated
in each, consecutive windows sharing `task.doc_stride` context tokens (default: the windows'
usual stride, a quarter of a window). The fast tokenizer makes them
(`truncation="only_second"`, `return_overflowing_tokens`, `return_offsets_mapping`); each
window keeps its context tokens' character offsets. Training: a window holding the (first)
answer whole is labelled with the answer's first and last token, any other window (and an
unanswerable question's) with its [CLS] token, as in the Hugging Face and original BERT
recipes. Predicting: in each window the `task.n_best` best starts and ends are paired (end not
before start, at most `task.max_answer_length` tokens, both in the context), scored by the sum
of their logits, and the best span over all windows is answered as the context's characters
between its offsets, so the answer is always a slice of the original context. With
`task.no_answer`, the question is answered "" when the [CLS] score (its lowest over the
windows) beats the best span (SQuAD v2). `score` is the softmax over the candidates found
(with the no-answer score among them when it may be answered).

Metrics: exact match and F1 by the official SQuAD scoring (`tasks.squad_metric`; headline F1).
Left out: tokenizers that pad on the left or put the context first (XLNet-style inputs), and
a tuned no-answer threshold (v2's `na_prob_thresh` search).
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
from pydantic import BaseModel, Field

from graftwork.data import readers, squad, windows
from graftwork.data.encode import model_inputs
from graftwork.errors import DataError, GraftError
from graftwork.tasks import losses, softmax
from graftwork.tasks.html import table
from graftwork.tasks.squad_metric import squad_scores

LABEL_KEY = ""  # no label vocabulary: the gold is each example's answers (labels: start, end)
HEADLINE = "f1"
SHOWN = ("f1", "exact_match")
DEFAULT_FORMAT = "jsonl"
EXAMPLE = json.dumps(
    {
        "question": "Where was the grafting done?",
        "context": "The scion was grafted onto the rootstock in the orchard behind the house.",
    }
)
DEFAULTS = {"doc_stride": None, "max_answer_length": 30, "n_best": 20, "no_answer": False}
OBJECTIVES = ()  # DANN's and EWC's losses and data are written for label heads
# the stages (`methods.base.STAGES`) a QA bundle cannot take, and why ({where}: the bundle)
REFUSES = {
    "distill": "{where} is an extractive-QA model: distillation matches a teacher's label "
    "logits per example or word, not start/end distributions over a context's windows; train "
    "a smaller backbone on the same data instead",
    "prune": "{where} is an extractive-QA model: pruning's head importance and its checks are "
    "written for label heads and have not been tested on span heads",
    "multitask": "recipe {where}: multitask training shares one encoder among classification "
    "and NER heads; an extractive-QA task trains in a recipe of its own",
}


class Span(BaseModel):
    answer: str = Field(..., description="The answer: context[start:end]; '' for no answer.")
    score: float = Field(..., description="Softmax over the candidate spans found.")
    start: int | None = Field(..., description="Offset in the context, in Unicode code points.")
    end: int | None = Field(..., description="Offset in the context (exclusive).")


class QAOutput(Span):
    top_k: list[Span] | None = Field(None, description="Present when top_k > 1.")


Output = QAOutput


def model_class():
    from transformers import AutoModelForQuestionAnswering

    return AutoModelForQuestionAnswering


def options(task=None) -> dict:
    """The QA options of a task section (`TaskConfig`), or the defaults without one."""
    if task is None:
        return dict(DEFAULTS)
    return {key: getattr(task, key) for key in DEFAULTS}


def read(rows, fmt: str, task, data, require_labels: bool) -> None:
    if fmt != "jsonl":
        raise DataError(
            f"{rows.shown}: extractive QA reads SQuAD JSON or JSON lines, not {fmt}; "
            "set data.format: jsonl (or auto for .json/.jsonl files)"
        )
    document = squad.squad_document(rows, task)
    if document is not None:
        squad.read_squad(rows, document, task, require_labels)
    else:
        squad.read_qa_jsonl(rows, readers._json_records(rows), task, require_labels)
    chosen = options(task)
    for example in rows.result.examples:
        example["options"], example["file"] = chosen, rows.shown


def label_set(examples: list[dict], names: dict[str, str] | None = None) -> list[str]:
    return ["start", "end"]  # the head's two outputs per token


def from_text(text, task=None) -> dict:
    """An example from `{"question": ..., "context": ...}` (or that object as JSON text)."""
    if isinstance(text, str):
        try:
            text = json.loads(text)
        except json.JSONDecodeError:
            text = None
    if not isinstance(text, dict):
        raise GraftError(
            'extractive QA answers a question about a context: give {"question": ..., '
            '"context": ...} (graft predict: --question Q --context C)'
        )
    unknown = sorted(set(text) - {"question", "context"})
    for key in ("question", "context"):
        if not isinstance(text.get(key), str) or not text[key].strip():
            raise GraftError(f"a QA input needs a non-empty '{key}' text (got {text.get(key)!r})")
    if unknown:
        raise GraftError(f"a QA input holds question and context only, not {', '.join(unknown)}")
    return {
        "id": "0",
        "question": text["question"].strip(),
        "context": text["context"],
        "answers": None,
        "impossible": False,
        "line": 0,
        "where": "input",
        "options": options(task),
    }


loss = losses.span_loss  # the training loss (`tasks.base.Task.loss`)


def to_text(example: dict, task=None) -> dict:
    return {"question": example["question"], "context": example["context"]}


def _stride(example: dict, stride: int) -> int:
    return (example.get("options") or DEFAULTS)["doc_stride"] or stride


def split_windows(tokenizer, examples: list[dict], window: int, stride: int) -> list[list[dict]]:
    """Per example, its windows: model inputs plus `offsets` (character span of each context
    token, None elsewhere), `cls` (the [CLS] position) and `sample` (the example's index)."""
    out: list[list[dict]] = [[] for _ in examples]
    if not examples:
        return out
    special = tokenizer.num_special_tokens_to_add(pair=True)
    lengths = tokenizer([e["question"] for e in examples], add_special_tokens=False)["input_ids"]
    groups: dict[int, list[int]] = {}
    for i, (example, question) in enumerate(zip(examples, lengths, strict=True)):
        step = _stride(example, stride)
        room = window - special - len(question)
        if step >= room:
            where = ", ".join(filter(None, (example.get("file"), example["where"])))
            raise DataError(
                f"{where}: the question takes {len(question)} tokens, which leaves "
                f"{max(room, 0)} context tokens in a window of {window}, not more than the "
                f"stride ({step}); shorten the question, raise data.max_length or lower "
                "task.doc_stride"
            )
        groups.setdefault(step, []).append(i)
    for step, members in groups.items():
        enc = tokenizer(
            [examples[i]["question"] for i in members],
            [examples[i]["context"] for i in members],
            truncation="only_second",
            max_length=window,
            stride=step,
            return_overflowing_tokens=True,
            return_offsets_mapping=True,
        )
        keys = model_inputs(enc)
        for w, local in enumerate(enc["overflow_to_sample_mapping"]):
            ids = enc["input_ids"][w]
            sequence = enc.sequence_ids(w)
            feature = {k: enc[k][w] for k in keys}
            feature["offsets"] = [
                tuple(o) if s == 1 else None
                for o, s in zip(enc["offset_mapping"][w], sequence, strict=True)
            ]
            cls = tokenizer.cls_token_id
            feature["cls"] = ids.index(cls) if cls is not None and cls in ids else 0
            feature["sample"] = members[local]
            out[members[local]].append(feature)
    return out


def target(feature: dict, example: dict) -> tuple[int, int]:
    """(start, end) token of the example's first answer in this window, or ([CLS], [CLS])
    when the window does not hold it whole (or the question has no answer)."""
    cls = feature["cls"]
    if not example["answers"]:
        return cls, cls
    answer = example["answers"][0]
    first, last = answer["start"], answer["start"] + len(answer["text"])
    offsets = feature["offsets"]
    context = [p for p, o in enumerate(offsets) if o is not None]
    if not context or offsets[context[0]][0] > first or offsets[context[-1]][1] < last:
        return cls, cls
    start = next(p for p in context if offsets[p][1] > first)
    end = next(p for p in reversed(context) if offsets[p][0] < last)
    return (start, end) if start <= end else (cls, cls)


def encode(tokenizer, examples, label2id, max_length: int, path: Path | str):
    """Every window of every example, and its (start, end) target (None without answers)."""
    _, stride = windows.settings(tokenizer, max_length)
    per_example = split_windows(tokenizer, examples, max_length, stride)
    features = [f for group in per_example for f in group]
    if any(e.get("answers") is None for e in examples):
        return features, None
    return features, [target(f, examples[f["sample"]]) for f in features]


def merge_windows(features: list[dict], logits: list, aggregate: str = "mean") -> tuple:
    return {"windows": features}, list(logits)  # the span search reads every window


def _grouped(examples, features, logits) -> list[tuple[list[dict], list]]:
    """Per example, (its windows, their logits): from merged features, or from the windows of
    `encode` (an export's parity check scores those directly)."""
    if features and "windows" in features[0]:
        return [(f["windows"], rows) for f, rows in zip(features, logits, strict=True)]
    out: list[tuple[list, list]] = [([], []) for _ in examples]
    for feature, rows in zip(features, logits, strict=True):
        out[feature["sample"]][0].append(feature)
        out[feature["sample"]][1].append(rows)
    return out


def candidates(windows_: list[dict], logits: list, opts: dict) -> tuple[list, float]:
    """([(score, start char, end char)] best first, one per span, and the no-answer score)."""
    best: dict[tuple[int, int], float] = {}
    null = np.inf
    for feature, rows in zip(windows_, logits, strict=True):
        rows = np.asarray(rows, dtype=np.float64)
        offsets = feature["offsets"][: len(rows)]
        null = min(null, rows[feature["cls"], 0] + rows[feature["cls"], 1])
        inside = np.array([o is not None for o in offsets])
        if not inside.any():
            continue
        starts = np.where(inside, rows[: len(offsets), 0], -np.inf)
        ends = np.where(inside, rows[: len(offsets), 1], -np.inf)
        top = min(opts["n_best"], int(inside.sum()))
        for s in np.argsort(-starts, kind="stable")[:top]:
            for e in np.argsort(-ends, kind="stable")[:top]:
                if e < s or e - s + 1 > opts["max_answer_length"]:
                    continue
                span = (offsets[s][0], offsets[e][1])
                value = float(starts[s] + ends[e])
                if value > best.get(span, -np.inf):
                    best[span] = value
    ranked = sorted(((v, a, b) for (a, b), v in best.items()), key=lambda c: (-c[0], c[1], c[2]))
    return ranked, float(null)


def answer_spans(example, windows_, logits, top_k: int = 1) -> list[dict]:
    """The best answers of one example, best first (`Span` fields)."""
    opts = example.get("options") or DEFAULTS
    ranked, null = candidates(windows_, logits, opts)
    choices = [(v, example["context"][a:b], a, b) for v, a, b in ranked]
    if opts["no_answer"]:
        choices.append((null, "", None, None))
        choices.sort(key=lambda c: -c[0])
    if not choices:
        return [{"answer": "", "score": 0.0, "start": None, "end": None}]
    probs = softmax(np.array([c[0] for c in choices]))
    return [
        {"answer": text, "score": float(p), "start": a, "end": b}
        for (_, text, a, b), p in zip(choices[: max(1, top_k)], probs, strict=False)
    ]


def decode(examples, features, logits, id2label, top_k: int = 1) -> list[dict]:
    out = []
    for example, (group, rows) in zip(examples, _grouped(examples, features, logits), strict=True):
        spans = answer_spans(example, group, rows, top_k)
        answer = dict(spans[0])
        if top_k > 1:
            answer["top_k"] = spans
        out.append(answer)
    return out


def evaluate(examples, features, logits, labels, id2label) -> dict:
    predictions = [a["answer"] for a in decode(examples, features, logits, id2label)]
    references = [[a["text"] for a in e["answers"] or []] for e in examples]
    v2 = any((e.get("options") or DEFAULTS)["no_answer"] for e in examples)
    metrics = squad_scores(predictions, references, v2=v2)
    metrics["windows"] = sum(len(group) for group, _ in _grouped(examples, features, logits))
    return metrics


def report_sections(metrics: dict) -> list[str]:
    if "has_answer_questions" not in metrics:
        return []
    rows = [["all", metrics["exact_match"], metrics["f1"], metrics["questions"]]]
    for name in ("has_answer", "no_answer"):
        if f"{name}_f1" in metrics:
            rows.append(
                [
                    name.replace("_", " "),
                    metrics[f"{name}_exact_match"],
                    metrics[f"{name}_f1"],
                    metrics[f"{name}_questions"],
                ]
            )
    return [table(["questions", "exact match", "F1", "count"], rows)]
