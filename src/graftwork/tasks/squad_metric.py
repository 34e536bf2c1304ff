"""Exact match and F1 by the official SQuAD evaluation scripts (v1.1 and v2.0).

Written out here because the field's packaged version cannot be had offline: `evaluate`'s
`squad` and `squad_v2` metrics are scripts fetched from the Hugging Face Hub at
`evaluate.load` time (checked: with no network it raises FileNotFoundError, "Couldn't find a
module script ... squad.py"). The functions below are the official scripts' logic
(`evaluate-v1.1.py`, `evaluate-v2.0.py`, also what `evaluate`'s metrics wrap), unchanged in
behaviour: answers are normalised (lower case, punctuation and the articles a/an/the removed,
whitespace collapsed), F1 is over the bag of normalised tokens, and each question scores the
maximum over its reference answers. Scores are fractions (0–1), not the scripts' percentages.

v1.1 and v2.0 differ only where an answer normalises to nothing: v2.0 scores an unanswerable
question (no reference answers) 1 when the prediction is empty and 0 otherwise, and drops
references that normalise to nothing; v1.1 has no unanswerable questions.

Left out: v2.0's no-answer probability threshold search (`na_prob_file`): predictions here
already are "" or a span.
"""

from __future__ import annotations

import re
import string
from collections import Counter

ARTICLES = re.compile(r"\b(a|an|the)\b", re.UNICODE)
PUNCTUATION = frozenset(string.punctuation)


def normalize_answer(text: str) -> str:
    """Lower case, no punctuation, no articles, single spaces (the official scripts')."""
    text = "".join(ch for ch in text.lower() if ch not in PUNCTUATION)
    return " ".join(ARTICLES.sub(" ", text).split())


def exact(prediction: str, truth: str) -> int:
    return int(normalize_answer(prediction) == normalize_answer(truth))


def f1_v1(prediction: str, truth: str) -> float:
    """evaluate-v1.1.py's f1_score."""
    pred, gold = normalize_answer(prediction).split(), normalize_answer(truth).split()
    same = sum((Counter(pred) & Counter(gold)).values())
    if same == 0:
        return 0.0
    precision, recall = same / len(pred), same / len(gold)
    return 2 * precision * recall / (precision + recall)


def f1_v2(prediction: str, truth: str) -> float:
    """evaluate-v2.0.py's compute_f1: an empty answer on either side scores 1 only if both are."""
    pred, gold = normalize_answer(prediction).split(), normalize_answer(truth).split()
    if not pred or not gold:
        return float(pred == gold)
    return f1_v1(prediction, truth)


def score(prediction: str, answers: list[str], v2: bool) -> tuple[float, float]:
    """(exact match, F1) of one prediction: the maximum over the reference answers."""
    if v2:
        answers = [a for a in answers if normalize_answer(a)] or [""]
        return max(exact(prediction, a) for a in answers), max(
            f1_v2(prediction, a) for a in answers
        )
    return max(exact(prediction, a) for a in answers), max(f1_v1(prediction, a) for a in answers)


def squad_scores(predictions: list[str], references: list[list[str]], v2: bool = False) -> dict:
    """`exact_match` and `f1` (fractions) over questions; with `v2`, also split by whether the
    question has an answer (`has_answer_*`, `no_answer_*`, as evaluate-v2.0.py reports)."""
    rows = [score(p, r, v2) for p, r in zip(predictions, references, strict=True)]
    out = {
        "exact_match": sum(r[0] for r in rows) / max(1, len(rows)),
        "f1": sum(r[1] for r in rows) / max(1, len(rows)),
        "questions": len(rows),
    }
    if v2:
        for name, keep in (("has_answer", True), ("no_answer", False)):
            part = [r for r, refs in zip(rows, references, strict=True) if bool(refs) == keep]
            out[f"{name}_questions"] = len(part)
            if part:
                out[f"{name}_exact_match"] = sum(r[0] for r in part) / len(part)
                out[f"{name}_f1"] = sum(r[1] for r in part) / len(part)
    return out
