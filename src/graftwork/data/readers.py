"""Readers: data files → plain examples, with errors that name the file, line and problem.

Formats: TSV (no quoting: SST-2's sentences contain `"`), CSV (standard quoting), JSON lines,
and CoNLL column files (one token a line, blank line between sentences; token and tag column
configurable, whitespace- or tab-separated). `read_examples` finds the format and hands the
file to the task (`Task.read`), which picks the parser here that makes its examples: texts
(`{"text", "text_pair", "label", "line"}`, by `read_table` or `read_text_jsonl`) or tagged
words (`{"tokens", "tags", "line"}`, by `read_conll` or `read_tagged_jsonl`). With
`on_bad_rows: skip` a bad row (or a whole bad sentence) is dropped and counted instead of
stopping the run. `drop_entity_types` reads the tags of the named entity types as O (to align
label sets across corpora: CoNLL-2003 without MISC is WikiANN's PER/ORG/LOC).

Left out: tokenization (`encode.py`), and which task wants which parser (the tasks say).
"""

from __future__ import annotations

import csv
import json
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

from graftwork import registry
from graftwork.config.recipe import DataConfig, TaskConfig
from graftwork.errors import DataError

EXTENSIONS = {".tsv": "tsv", ".csv": "csv", ".jsonl": "jsonl", ".json": "jsonl"}


@dataclass
class ReadResult:
    path: Path
    examples: list[dict] = field(default_factory=list)
    skipped: list[str] = field(default_factory=list)  # one message per dropped row, in line order


class Rows:
    """Collects examples; raises on a bad row, or records it when skipping."""

    def __init__(self, path: Path, skip: bool):
        self.result = ReadResult(path)
        self.skip = skip
        self.bad_lines: list[tuple[int, str]] = []

    def bad(self, line: int, problem: str, fix: str) -> None:
        message = f"{self.result.path}, line {line}: {problem}"
        if not self.skip:
            raise DataError(f"{message}. {fix} (or set data.on_bad_rows: skip to drop such rows)")
        self.bad_lines.append((line, message))

    def finish(self) -> ReadResult:
        self.result.skipped = [message for _, message in sorted(self.bad_lines)]
        return self.result


def _lines(path: Path, rows: Rows) -> Iterator[tuple[int, str]]:
    """(1-based line number, decoded line without its newline), UTF-8 checked per line."""
    if not path.is_file():
        raise DataError(
            f"data file {path} does not exist; check the path in the recipe's data section"
        )
    for number, raw in enumerate(path.read_bytes().split(b"\n"), start=1):
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
    path: Path, task: TaskConfig, data: DataConfig, require_labels: bool = True
) -> ReadResult:
    """The examples of `path` for `task`, read by the task's parser (`Task.read`)."""
    rows = Rows(Path(path), skip=data.on_bad_rows == "skip")
    kind = registry.task(task.type)
    fmt = detect_format(rows.result.path, data, kind.DEFAULT_FORMAT)
    kind.read(rows, fmt, task, data, require_labels)
    if not rows.result.examples:
        raise DataError(f"{path}: no examples found; is it the right file and format ({fmt})?")
    return rows.finish()


def drop_entity_types(examples: list[dict], types: set[str]) -> None:
    """Read the tags of entity `types` as O (B-MISC, I-MISC → O for types {MISC}), in place."""
    for example in examples:
        if example.get("tags") is not None:
            example["tags"] = ["O" if tag[2:] in types else tag for tag in example["tags"]]


# ---------------------------------------------------------------- texts


def _column(spec: str, header: list[str] | None, path: Path, role: str) -> int:
    if header is not None and spec in header:
        return header.index(spec)
    if spec.isdigit():
        return int(spec)
    known = f"columns in the header: {', '.join(header)}" if header else "a 0-based column number"
    raise DataError(
        f"{path}: no column '{spec}' for the {role} (task.{role}); use one of the {known}"
    )


def read_table(rows: Rows, task: TaskConfig, data: DataConfig, fmt: str, require_labels: bool):
    """Texts and labels from a table: TSV (tabs, no quoting), else CSV-style commas (quoted
    only for `csv`); columns by header name or 0-based number (`task.text`, `task.label`)."""
    delimiter, quoted = ("\t" if fmt == "tsv" else ","), fmt == "csv"
    path = rows.result.path
    numbered = [(n, line) for n, line in _lines(path, rows) if line.strip()]
    if quoted:
        reader = csv.reader((line for _, line in numbered), delimiter=delimiter)
        records = [(numbered[i][0], rec) for i, rec in enumerate(reader)]
    else:
        records = [(n, line.split(delimiter)) for n, line in numbered]
    if not records:
        raise DataError(f"{path}: the file is empty")
    header = None
    if data.header:
        header = [h.strip() for h in records[0][1]]
        records = records[1:]
    width = len(header) if header else len(records[0][1])
    text_col = _column(task.text, header, path, "text")
    pair_col = _column(task.text_pair, header, path, "text_pair") if task.text_pair else None
    label_col = None
    if require_labels or (header is not None and task.label in header):
        label_col = _column(task.label, header, path, "label")
    elif header is None and task.label.isdigit() and int(task.label) < width:
        label_col = int(task.label)
    names = f" ({', '.join(header)})" if header else ""
    for number, fields in records:
        if len(fields) != width:
            rows.bad(
                number,
                f"expected {width} columns{names}, found {len(fields)}",
                "Fix the row; a TSV field must not contain a tab",
            )
            continue
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
    """Texts and labels from JSON lines, one object each (fields named by `task`)."""
    for number, line in _lines(rows.result.path, rows):
        if not line.strip():
            continue
        record = _json_record(rows, number, line)
        if record is None:
            continue
        text = record.get(task.text)
        pair = record.get(task.text_pair) if task.text_pair else None
        if not isinstance(text, str) or not text.strip():
            rows.bad(
                number, f"field '{task.text}' is missing, empty or not a string", "Fix the record"
            )
            continue
        label = record.get(task.label)
        if label is None and require_labels:
            rows.bad(number, f"field '{task.label}' (the label) is missing", "Add the label")
            continue
        rows.result.examples.append(
            {
                "text": text.strip(),
                "text_pair": pair,
                "label": None if label is None else str(label),
                "line": number,
            }
        )


def _json_record(rows: Rows, number: int, line: str) -> dict | None:
    try:
        record = json.loads(line)
    except json.JSONDecodeError as exc:
        rows.bad(number, f"not valid JSON ({exc.msg} at column {exc.colno})", "Fix the record")
        return None
    if not isinstance(record, dict):
        rows.bad(number, "a JSON line must be an object", "Write one {...} object per line")
        return None
    return record


# ---------------------------------------------------------------- tagged words


def iob2_problem(tags: list[str]) -> tuple[int, str] | None:
    """Index and description of the first tag that breaks IOB2, or None."""
    previous = "O"
    for i, tag in enumerate(tags):
        if tag != "O" and not (tag[:2] in ("B-", "I-") and len(tag) > 2):
            return i, f"tag '{tag}' is not O, B-TYPE or I-TYPE"
        if tag.startswith("I-") and previous[2:] != tag[2:]:
            return i, f"tag '{tag}' follows '{previous}'; IOB2 starts an entity with B-{tag[2:]}"
        previous = tag
    return None


def read_conll(rows: Rows, data: DataConfig, require_labels: bool):
    """Tagged sentences from a CoNLL column file (IOB2 checked when labels are required)."""
    tokens: list[str] = []
    tags: list[str] = []
    lines: list[int] = []

    def flush():
        if tokens:
            problem = iob2_problem(tags) if require_labels else None
            if problem:
                index, text = problem
                rows.bad(lines[index], text, "Fix the tag")
            else:
                rows.result.examples.append(
                    {"tokens": list(tokens), "tags": list(tags), "line": lines[0]}
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
        try:
            token = fields[data.token_column]
            tag = fields[data.tag_column] if require_labels or len(fields) > 1 else "O"
        except IndexError:
            rows.bad(
                number,
                f"expected a token in column {data.token_column} and a tag in column "
                f"{data.tag_column}, found {len(fields)} column(s)",
                "Fix the line, or set data.token_column / data.tag_column",
            )
            broken = True
            continue
        if broken:  # the rest of a sentence with a dropped line is dropped too
            continue
        tokens.append(token.strip())
        tags.append(tag.strip())
        lines.append(number)
    flush()


def read_tagged_jsonl(rows: Rows, require_labels: bool):
    """Tagged sentences from JSON lines: `{"tokens": [...], "tags": [...]}` each."""
    for number, line in _lines(rows.result.path, rows):
        if not line.strip():
            continue
        record = _json_record(rows, number, line)
        if record is None:
            continue
        tokens, tags = record.get("tokens"), record.get("tags")
        if not isinstance(tokens, list) or not tokens:
            rows.bad(number, "field 'tokens' must be a non-empty list", "Fix the record")
            continue
        if tags is None and not require_labels:
            tags = ["O"] * len(tokens)
        if not isinstance(tags, list) or len(tags) != len(tokens):
            rows.bad(number, "field 'tags' must be a list as long as 'tokens'", "Fix the record")
            continue
        problem = iob2_problem(tags)
        if problem:
            rows.bad(number, f"token {problem[0]}: {problem[1]}", "Fix the tag")
            continue
        rows.result.examples.append(
            {"tokens": [str(t) for t in tokens], "tags": [str(t) for t in tags], "line": number}
        )
