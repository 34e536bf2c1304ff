"""Readers for sequence-to-sequence data: (source, target) text pairs.

Three layouts, each giving examples `{"source", "target", "line"}` (`target` None when the file
has no targets and none are required):

- **parallel**: two line-aligned plain-text files, one sentence a line, named by a common stem
  and a suffix each: `task.source: en`, `task.target: de` read `train.en` and `train.de` for
  `data.train: …/train` (a path already ending in `.en` is taken as that file). Both files must
  have the same number of lines; a mismatch is an error naming both counts.
- **tsv / csv**: a table with a source and a target column (`task.source`/`task.target`: header
  names or 0-based numbers).
- **jsonl**: one object a line with a source and a target field (DialogSum: `source: dialogue`,
  `target: summary`).

An empty source or target is a located error (or a skipped row with `data.on_bad_rows: skip`):
a model cannot learn to produce nothing, and an empty reference scores every output alike.
The row machinery (line numbers, UTF-8 checks, skipping) is `readers.Rows`'s.

Left out: multi-reference evaluation sets (one reference per source here).
"""

from __future__ import annotations

from pathlib import Path

from graftwork.data.readers import Rows, _column, _json_records, _lines, table, table_rows
from graftwork.errors import DataError


def parallel_paths(path: Path, task) -> tuple[Path, Path]:
    """(source file, target file) of a parallel split named by `path` (a stem, or the source
    file itself)."""
    stem = path.with_suffix("") if path.suffix == f".{task.source}" else path
    source, target = (stem.with_name(f"{stem.name}.{s}") for s in (task.source, task.target))
    return source, target


def read_parallel(rows: Rows, task, require_targets: bool) -> None:
    source_path, target_path = parallel_paths(rows.result.path, task)
    shown = rows.shown
    base = shown[: -len(f".{task.source}")] if shown.endswith(f".{task.source}") else shown
    source = [line for _, line in _lines(source_path, _renamed(rows, f"{base}.{task.source}"))]
    if not target_path.is_file() and not require_targets:
        target = [None] * len(source)
    else:
        target = [line for _, line in _lines(target_path, _renamed(rows, f"{base}.{task.target}"))]
    for lines in (source, target):  # a final line feed ends the last line; it starts no other
        if lines and lines[-1] == "":
            lines.pop()
    if len(source) != len(target):
        raise DataError(
            f"{base}.{task.source} has {len(source)} lines but {base}.{task.target} has "
            f"{len(target)}; parallel files must be line-aligned (line n of one translates line "
            "n of the other). Check that both files belong to the same split"
        )
    files = (f"{base}.{task.source}", f"{base}.{task.target}")
    for number, (src, tgt) in enumerate(zip(source, target, strict=True), start=1):
        _add(rows, number, src, tgt, require_targets, files)


def _renamed(rows: Rows, shown: str) -> Rows:
    """A view of `rows` whose messages name another file (the source or the target file)."""
    view = Rows(rows.result.path, rows.skip, shown)
    view.bad_lines = rows.bad_lines
    return view


def read_table(rows: Rows, task, data, fmt: str, require_targets: bool) -> None:
    header, records, width = table(rows, data, fmt)
    source_col = _column(task.source, header, rows.shown, "source")
    target_col = None
    if require_targets or (header is not None and task.target in header):
        target_col = _column(task.target, header, rows.shown, "target")
    for number, fields in table_rows(rows, header, records, width):
        target = fields[target_col] if target_col is not None else None
        _add(rows, number, fields[source_col], target, require_targets)


def read_jsonl(rows: Rows, task, require_targets: bool) -> None:
    for number, record in _json_records(rows):
        source, target = record.get(task.source), record.get(task.target)
        for name, value in ((task.source, source), (task.target, target)):
            if value is not None and not isinstance(value, str):
                rows.bad(number, f"field '{name}' is not a string", "Fix the record")
                break
        else:
            if source is None:
                rows.bad(
                    number, f"field '{task.source}' (task.source) is missing", "Fix the record"
                )
                continue
            if target is None and require_targets:
                rows.bad(
                    number, f"field '{task.target}' (task.target) is missing", "Fix the record"
                )
                continue
            _add(rows, number, source, target, require_targets)


def _add(rows: Rows, number: int, source, target, required: bool, files=None) -> None:
    where = files or (None, None)
    if not source.strip():
        _bad(rows, where[0], number, "empty source text", "Remove the pair or fill in the source")
        return
    if target is not None and not target.strip():
        _bad(rows, where[1], number, "empty target text", "Remove the pair or fill in the target")
        return
    if target is None and required:
        _bad(rows, where[1], number, "no target text", "Give every source its target")
        return
    rows.result.examples.append(
        {
            "source": source.strip(),
            "target": None if target is None else target.strip(),
            "line": number,
        }
    )


def _bad(rows: Rows, file: str | None, number: int, problem: str, fix: str) -> None:
    (rows if file is None else _renamed(rows, file)).bad(number, problem, fix)
