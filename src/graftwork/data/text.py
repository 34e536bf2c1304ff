"""Plain text files (one item a line), read as UTF-8 with or without a byte-order mark.

For the files that are not data tables: `graft predict --input`, DANN's target text, a
pretraining corpus, distillation's unlabelled texts, vocabulary terms. `text_lines` returns
their lines, or a `DataError` naming the file, the line and the byte that is not UTF-8 (and
saying so when the file looks binary); `iter_text_lines` yields them one at a time, reading
the file as it goes (constant memory: `graft predict --output` over files of any size). Lines
are split at line feeds only (a carriage return before one is dropped), so line numbers are an
editor's.

Left out: per-row skipping (`readers.py`, where `data.on_bad_rows: skip` drops a bad row).
"""

from __future__ import annotations

import codecs
from collections.abc import Iterator
from pathlib import Path

from graftwork.errors import DataError

BINARY_SNIFF = 8192  # bytes looked at for a NUL, the mark of a binary file


def text_lines(
    path: Path, shown: str | None = None, expected: str = "one text a line"
) -> list[str]:
    """The lines of `path` without their line ends; messages name the file as `shown` and
    say what it should hold (`expected`)."""
    return list(iter_text_lines(path, shown, expected))


def iter_text_lines(
    path: Path, shown: str | None = None, expected: str = "one text a line"
) -> Iterator[str]:
    """`text_lines`, one line at a time (the file is read as the lines are taken)."""
    path = Path(path)
    shown = shown or str(path)
    with open(path, "rb") as fh:
        head = fh.read(BINARY_SNIFF)
        fh.seek(0)
        for number, raw in enumerate(fh, start=1):
            start = len(codecs.BOM_UTF8) if number == 1 and raw.startswith(codecs.BOM_UTF8) else 0
            try:
                line = raw[start:].decode("utf-8")
            except UnicodeDecodeError as exc:
                message = _not_utf8(raw, number, start + exc.start, head, shown, expected)
                raise DataError(message) from None
            yield line.removesuffix("\n").removesuffix("\r")


def _not_utf8(raw: bytes, line: int, offset: int, head: bytes, shown: str, expected: str) -> str:
    """The message for byte `offset` of line `line` (`raw`); `head`: the file's first bytes."""
    where = f"{shown}, line {line}: byte 0x{raw[offset]:02x} at column {offset + 1} is not UTF-8"
    if b"\0" in head:
        return (
            f"{where}; it looks like a binary file, not text. Give a UTF-8 text file ({expected})"
        )
    return f"{where}. Re-save the file as UTF-8 ({expected})"
