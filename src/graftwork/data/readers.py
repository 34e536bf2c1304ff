"""Readers: data files → plain examples, with errors that name the file, line and problem.

Formats: TSV (no quoting: SST-2's sentences contain `"`), CSV (standard quoting), JSON lines,
and CoNLL column files (one token a line, blank line between sentences; token and tag column
configurable, whitespace- or tab-separated). Every file is read as UTF-8, with or without a
byte-order mark. `read_examples` finds the format and hands the file to the task (`Task.read`),
which picks the parser here that makes its examples: texts (`{"text", "text_pair", "label",
"line"}`, by `read_table` or `read_text_jsonl`) or tagged words (`{"tokens", "tags", "line"}`,
by `read_conll` or `read_tagged_jsonl`). Labels follow `data.labels`: JSON label values are
spelled one way, tags are IOB2 (`data.iob: repair` reads conlleval's looser sequences and
counts the tags it rewrote), and `task.label_names` renames labels as they are read. With
`on_bad_rows: skip` a bad row (or a whole bad sentence) is dropped and counted instead of
stopping the run. `drop_entity_types` reads the tags of the named entity types as O (to align
label sets across corpora: CoNLL-2003 without MISC is WikiANN's PER/ORG/LOC). Messages name a
file as the caller shows it (`shown`: a recipe path as written, see `RecipeBase.show_path`).

Left out: tokenization (`encode.py`), and which task wants which parser (the tasks say).
"""

from __future__ import annotations

import codecs
import csv
import json
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

from graftwork import registry
from graftwork.data.labels import LabelKinds, iob2_problem, json_label, repair_iob
from graftwork.errors import DataError

if TYPE_CHECKING:  # attributes only: importing the recipe here would import it with the readers
    from graftwork.config.recipe import DataConfig, TaskConfig

EXTENSIONS = {".tsv": "tsv", ".csv": "csv", ".jsonl": "jsonl", ".json": "jsonl"}


@dataclass
class ReadResult:
    path: Path
    examples: list[dict] = field(default_factory=list)
    skipped: list[str] = field(default_factory=list)  # one message per dropped row, in line order
    shown: str = ""  # the file as messages name it (default: its path)
    repaired: int = 0  # tags rewritten to IOB2 (data.iob: repair)

    def __post_init__(self):
        self.shown = self.shown or str(self.path)


class Rows:
    """Collects examples; raises on a bad row, or records it when skipping."""

    def __init__(self, path: Path, skip: bool, shown: str | None = None):
        self.result = ReadResult(path, shown=shown or "")
        self.skip = skip
        self.bad_lines: list[tuple[int, str]] = []

    @property
    def shown(self) -> str:
        return self.result.shown

    def bad(self, line: int, problem: str, fix: str) -> None:
        message = f"{self.shown}, line {line}: {problem}"
        if not self.skip:
            raise DataError(f"{message}. {fix} (or set data.on_bad_rows: skip to drop such rows)")
        self.bad_lines.append((line, message))

    def finish(self) -> ReadResult:
        self.result.skipped = [message for _, message in sorted(self.bad_lines)]
        return self.result


def _lines(path: Path, rows: Rows) -> Iterator[tuple[int, str]]:
    """(1-based line number, decoded line without its newline), UTF-8 checked per line; a
    byte-order mark at the start of the file is not part of its first line."""
    if path.is_dir():
        raise DataError(f"data file {rows.shown} is a folder; name a file in the recipe's data")
    if not path.is_file():
        raise DataError(
            f"data file {rows.shown} does not exist; check the path in the recipe's data section"
        )
    content = path.read_bytes().removeprefix(codecs.BOM_UTF8)
    for number, raw in enumerate(content.split(b"\n"), start=1):
        raw = raw.removesuffix(b"\r")
        try:
            yield number, raw.decode("utf-8")
        except UnicodeDecodeError as exc:
            rows.bad(
                number,
                f"not valid UTF-8 (byte 0x{raw[exc.start]:02x} at column {exc.start + 1})",
                "Re-save the file as UTF-8",
            )


def detect_format(path: Path, data: DataConfig, default: str) -> str:
    """The recipe's format, else the file extension's, else the task's `default`."""
    if data.format != "auto":
        return data.format
    return EXTENSIONS.get(path.suffix.lower(), default)


def read_examples(
    path: Path,
    task: TaskConfig,
    data: DataConfig,
    require_labels: bool = True,
    shown: str | None = None,
) -> ReadResult:
    """The examples of `path` for `task`, read by the task's parser (`Task.read`); messages
    name the file as `shown` (default: the path)."""
    rows = Rows(Path(path), skip=data.on_bad_rows == "skip", shown=shown)
    kind = registry.task(task.type)
    fmt = detect_format(rows.result.path, data, kind.DEFAULT_FORMAT)
    kind.read(rows, fmt, task, data, require_labels)
    if not rows.result.examples:
        raise DataError(
            f"{rows.shown}: no examples found; is it the right file and format ({fmt})?"
        )
    return rows.finish()


def drop_entity_types(examples: list[dict], types: set[str]) -> None:
    """Read the tags of entity `types` as O (B-MISC, I-MISC → O for types {MISC}), in place."""
    for example in examples:
        if example.get("tags") is not None:
            example["tags"] = ["O" if tag[2:] in types else tag for tag in example["tags"]]


# ---------------------------------------------------------------- texts


def _column(spec: str, header: list[str] | None, shown: str, role: str) -> int:
    if header is not None and spec in header:
        return header.index(spec)
    if spec.isdigit():
        return int(spec)
    known = f"columns in the header: {', '.join(header)}" if header else "a 0-based column number"
    raise DataError(
        f"{shown}: no column '{spec}' for the {role} (task.{role}); use one of the {known}"
    )


def table(rows: Rows, data: DataConfig, fmt: str) -> tuple[list[str] | None, list, int]:
    """(header, [(line number, fields)], width) of a table file: TSV (tabs, no quoting), else
    CSV-style commas (quoted only for `csv`); blank lines are passed over."""
    delimiter, quoted = ("\t" if fmt == "tsv" else ","), fmt == "csv"
    numbered = [(n, line) for n, line in _lines(rows.result.path, rows) if line.strip()]
    if quoted:
        reader = csv.reader((line for _, line in numbered), delimiter=delimiter)
        records = [(numbered[i][0], rec) for i, rec in enumerate(reader)]
    else:
        records = [(n, line.split(delimiter)) for n, line in numbered]
    if not records:
        raise DataError(f"{rows.shown}: the file is empty")
    header = None
    if data.header:
        header = [h.strip() for h in records[0][1]]
        records = records[1:]
    return header, records, len(header) if header else len(records[0][1])


def table_rows(rows: Rows, header: list[str] | None, records: list, width: int) -> Iterator:
    """(line number, fields) of each record with `width` fields; others are reported bad."""
    names = f" ({', '.join(header)})" if header else ""
    for number, fields in records:
        if len(fields) != width:
            rows.bad(
                number,
                f"expected {width} columns{names}, found {len(fields)}",
                "Fix the row; a TSV field must not contain a tab",
            )
            continue
        yield number, fields


def read_table(rows: Rows, task: TaskConfig, data: DataConfig, fmt: str, require_labels: bool):
    """Texts and labels from a table (`table`); columns by header name or 0-based number
    (`task.text`, `task.label`)."""
    shown = rows.shown
    header, records, width = table(rows, data, fmt)
    text_col = _column(task.text, header, shown, "text")
    pair_col = _column(task.text_pair, header, shown, "text_pair") if task.text_pair else None
    label_col = None
    if require_labels or (header is not None and task.label in header):
        label_col = _column(task.label, header, shown, "label")
    elif header is None and task.label.isdigit() and int(task.label) < width:
        label_col = int(task.label)
    for number, fields in table_rows(rows, header, records, width):
        text = fields[text_col].strip()
        pair = fields[pair_col].strip() if pair_col is not None else None
        if not text or (pair_col is not None and not pair):
            rows.bad(number, "empty text", "Remove the row or fill in the text")
            continue
        label = fields[label_col].strip() if label_col is not None else None
        if label_col is not None and not label:
            rows.bad(number, "empty label", "Fill in the label")
            continue
        rows.result.examples.append(
            {"text": text, "text_pair": pair, "label": label, "line": number}
        )


def read_text_jsonl(rows: Rows, task: TaskConfig, require_labels: bool):
    """Texts and labels from JSON lines, one object each (fields named by `task`); label values
    spelled one way (`labels.json_label`), and all of one kind when labels are required."""
    kinds = LabelKinds()
    for number, record in _json_records(rows):
        text = record.get(task.text)
        pair = record.get(task.text_pair) if task.text_pair else None
        if not isinstance(text, str) or not text.strip():
            rows.bad(
                number, f"field '{task.text}' is missing, empty or not a string", "Fix the record"
            )
            continue
        value = record.get(task.label)
        label = None if value is None else json_label(value)
        if require_labels:
            problem = _label_problem(task.label, value, label, kinds, number)
            if problem:
                rows.bad(number, *problem)
                continue
        rows.result.examples.append(
            {
                "text": text.strip(),
                "text_pair": pair,
                "label": None if label is None else label[0],
                "line": number,
            }
        )


def _label_problem(name: str, value, label, kinds: LabelKinds, number: int):
    """(problem, fix) of a required JSON label, or None when it is fine."""
    if value is None:
        return f"field '{name}' (the label) is missing", "Add the label"
    if label is None:
        return (
            f"field '{name}' (the label) is {json.dumps(value)[:40]}",
            "Give a label as text, a number or true/false",
        )
    if not label[0]:
        return "empty label", "Fill in the label"
    mixed = kinds.mismatch(label[0], label[1], number)
    if mixed:
        return mixed, "Give every label in one form: all numbers, all text, or all true/false"
    return None


def _json_records(rows: Rows) -> Iterator[tuple[int, dict]]:
    """(line number, object) for each JSON line of the file; blank lines are passed over, and
    a line that is not a JSON object is reported as bad."""
    for number, line in _lines(rows.result.path, rows):
        if not line.strip():
            continue
        try:
            record = json.loads(line)
        except json.JSONDecodeError as exc:
            rows.bad(number, f"not valid JSON ({exc.msg} at column {exc.colno})", "Fix the record")
            continue
        if not isinstance(record, dict):
            rows.bad(number, "a JSON line must be an object", "Write one {...} object per line")
            continue
        yield number, record


# ---------------------------------------------------------------- tagged words


def _iob2(rows: Rows, tags: list[str], iob: str, where: list[int] | int) -> list[str] | None:
    """`tags` in IOB2 (repaired first with `data.iob: repair`, and counted once kept), or None
    after reporting the first bad tag at its line (`where`: each tag's line, or the record's)."""
    repaired = 0
    if iob == "repair":
        tags, repaired = repair_iob(tags)
    problem = iob2_problem(tags)
    if problem:
        index, text = problem
        if isinstance(where, int):
            rows.bad(where, f"token {index}: {text}", "Fix the tag")
        else:
            rows.bad(where[index], text, "Fix the tag")
        return None
    rows.result.repaired += repaired
    return tags


def _at(column: int, width: int) -> int | None:
    """A column number (negative: from the end) as an index into `width` fields, if there."""
    return column % width if -width <= column < width else None


def read_conll(rows: Rows, data: DataConfig, require_labels: bool):
    """Tagged sentences from a CoNLL column file. When labels are required, every line needs
    its tag column (a line of one column has no tag, whatever its token says) and the tags are
    IOB2 (checked, or repaired with `data.iob: repair`)."""
    tokens: list[str] = []
    tags: list[str] = []
    lines: list[int] = []

    def flush():
        if tokens:
            checked = _iob2(rows, list(tags), data.iob, lines) if require_labels else list(tags)
            if checked is not None:
                rows.result.examples.append(
                    {"tokens": list(tokens), "tags": checked, "line": lines[0]}
                )
        tokens.clear()
        tags.clear()
        lines.clear()

    broken = False
    for number, line in _lines(rows.result.path, rows):
        if not line.strip():
            flush()
            broken = False
            continue
        if line.startswith("-DOCSTART-"):
            continue
        fields = line.split("\t") if "\t" in line else line.split()
        problem = _conll_problem(fields, data, require_labels)
        if problem:
            rows.bad(number, problem, "Fix the line, or set data.token_column / data.tag_column")
            broken = True
            continue
        if broken:  # the rest of a sentence with a dropped line is dropped too
            continue
        token_at, tag_at = _at(data.token_column, len(fields)), _at(data.tag_column, len(fields))
        tokens.append(fields[token_at].strip())
        tags.append(fields[tag_at].strip() if tag_at not in (None, token_at) else "O")
        lines.append(number)
    flush()


def _conll_problem(fields: list[str], data: DataConfig, require_labels: bool) -> str | None:
    token_at, tag_at = _at(data.token_column, len(fields)), _at(data.tag_column, len(fields))
    expected = f"a token in column {data.token_column} and a tag in column {data.tag_column}"
    if token_at is None:
        return f"expected {expected}, found {len(fields)} column(s)"
    if require_labels and tag_at == token_at:
        return (
            f"no tag: the line has {len(fields)} column(s), so data.tag_column "
            f"({data.tag_column}) is the token's own column; expected {expected}"
        )
    if require_labels and tag_at is None:
        return (
            f"no tag in data.tag_column ({data.tag_column}): the line has {len(fields)} column(s)"
        )
    return None


def read_tagged_jsonl(rows: Rows, data: DataConfig, require_labels: bool):
    """Tagged sentences from JSON lines: `{"tokens": [...], "tags": [...]}` each."""
    for number, record in _json_records(rows):
        tokens, tags = record.get("tokens"), record.get("tags")
        if not isinstance(tokens, list) or not tokens:
            rows.bad(number, "field 'tokens' must be a non-empty list", "Fix the record")
            continue
        if tags is None and not require_labels:
            tags = ["O"] * len(tokens)
        if not isinstance(tags, list) or len(tags) != len(tokens):
            rows.bad(number, "field 'tags' must be a list as long as 'tokens'", "Fix the record")
            continue
        checked = _iob2(rows, [str(t) for t in tags], data.iob, number)
        if checked is None:
            continue
        rows.result.examples.append(
            {"tokens": [str(t) for t in tokens], "tags": checked, "line": number}
        )
