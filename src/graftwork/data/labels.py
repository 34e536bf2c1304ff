"""Labels as read: one spelling per label, IOB2 checked or repaired, names from the recipe.

- JSON-lines label values: `1`, `"1"` and `1.0` are one label ("1"); every label of a file must
  be of one kind (numbers and their string forms, text, or true/false), since a file mixing
  `true` with `"yes"` has no one reading (`json_label`, `LabelKinds`).
- IOB2 tags: `iob2_problem` finds the first tag that breaks IOB2; `repair_iob` reads a sequence
  as conlleval does (an I-X after O, after another type or at the start begins an entity) and
  writes it in IOB2 (that I-X becomes B-X), for `data.iob: repair`.
- `task.label_names` ({raw label: name}): `name_labels` renames the labels of examples as they are
  read, so every split, the bundle's labels and everything that reads them see the names;
  `check_training_labels` refuses names for labels the training data lacks, and a training set
  with one label only (a classifier that always answers it).

Left out: reading files (`readers.py`) and label ids (`encode.py`).
"""

from __future__ import annotations

import math
import re

from graftwork.errors import DataError

INTEGER = re.compile(r"[+-]?\d+")
REPAIR_HINT = "or set data.iob: repair to read it as conlleval does"


def json_label(value) -> tuple[str, str] | None:
    """(label text, kind) of a JSON label value; None for a value no label can be (an object,
    a list, a non-finite number). Integer-valued numbers and integer strings spell alike."""
    if isinstance(value, bool):
        return str(value), "true/false"
    if isinstance(value, int):
        return str(value), "number"
    if isinstance(value, float):
        if not math.isfinite(value):
            return None
        return (str(int(value)) if value.is_integer() else repr(value)), "number"
    if isinstance(value, str):
        text = value.strip()
        return (str(int(text)), "number") if INTEGER.fullmatch(text) else (text, "text")
    return None


class LabelKinds:
    """The kind of a file's first label; `mismatch` describes a later label of another kind."""

    def __init__(self):
        self.first: tuple[str, str, int] | None = None  # (label, kind, line)

    def mismatch(self, label: str, kind: str, line: int) -> str | None:
        if self.first is None:
            self.first = (label, kind, line)
            return None
        first, first_kind, first_line = self.first
        if kind == first_kind:
            return None
        return (
            f"label {label!r} ({kind}) mixes with label {first!r} ({first_kind}, line "
            f"{first_line}); the two cannot be read as one set of labels"
        )


# ---------------------------------------------------------------- IOB2


def iob2_problem(tags: list[str]) -> tuple[int, str] | None:
    """Index and description of the first tag that breaks IOB2, or None."""
    previous = "O"
    for i, tag in enumerate(tags):
        if tag != "O" and not (tag[:2] in ("B-", "I-") and len(tag) > 2):
            return i, f"tag '{tag}' is not O, B-TYPE or I-TYPE"
        if tag.startswith("I-") and previous[2:] != tag[2:]:
            return i, (
                f"tag '{tag}' follows '{previous}'; IOB2 starts an entity with B-{tag[2:]} "
                f"({REPAIR_HINT})"
            )
        previous = tag
    return None


def repair_iob(tags: list[str]) -> tuple[list[str], int]:
    """(`tags` in IOB2, how many changed): conlleval's reading, where an I-X that does not
    continue an X entity starts one, written B-X. Tags that are not O/B-X/I-X stay as they are
    (`iob2_problem` then names them)."""
    out: list[str] = []
    previous, changed = "O", 0
    for tag in tags:
        if tag.startswith("I-") and len(tag) > 2 and previous[2:] != tag[2:]:
            tag = f"B-{tag[2:]}"
            changed += 1
        out.append(tag)
        previous = tag
    return out, changed


# ---------------------------------------------------------------- names


def name_labels(examples: list[dict], names: dict[str, str], shown: str) -> None:
    """Rename each example's label by `names` (raw → name), in place; a raw label without a
    name keeps its value, unless that value is another label's name (the two would merge)."""
    if not names:
        return
    taken = {name: raw for raw, name in names.items()}
    for example in examples:
        label = example.get("label")
        if label is None:
            continue
        if label in names:
            example["label"] = names[label]
        elif label in taken:
            raise DataError(
                f"{shown}, line {example['line']}: label '{label}' has no name in "
                f"task.label_names, but '{label}' is the name given to label '{taken[label]}'; "
                "the two would become one label. Name this label too, or choose another name"
            )


def check_training_labels(labels: list[str], names: dict[str, str], shown: str) -> None:
    """Refuse label names for labels training lacks, and training data with one label only."""
    unknown = [raw for raw, name in names.items() if name not in labels]
    if unknown:
        found = [label for label in labels if label not in names.values()]
        raw_found = sorted(set(found) | {raw for raw, name in names.items() if name in labels})
        raise DataError(
            f"{shown}: task.label_names names label(s) {', '.join(map(repr, unknown))}, which "
            f"the training data does not have (its labels: {', '.join(raw_found)}); name labels "
            "as the training file spells them"
        )
    if len(labels) < 2:
        raise DataError(
            f"{shown}: the training data has one label only ({', '.join(map(repr, labels))}), so "
            "the model could only ever answer it; give training data with at least two labels "
            "(for NER: sentences with entity tags), or check data.train and "
            "data.max_train_examples"
        )
