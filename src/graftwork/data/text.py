"""Plain text files (one item a line), read as UTF-8 with or without a byte-order mark.

For the files that are not data tables: `graft predict --input`, DANN's target text, a
pretraining corpus, distillation's unlabelled texts, vocabulary terms. `text_lines` returns
their lines, or a `DataError` naming the file, the line and the byte that is not UTF-8 (and
saying so when the file looks binary). Lines are split at line feeds only (a carriage return
before one is dropped), so line numbers are an editor's.

Left out: per-row skipping (`readers.py`, where `data.on_bad_rows: skip` drops a bad row).
"""

from __future__ import annotations

import codecs
from pathlib import Path

from graftwork.errors import DataError

BINARY_SNIFF = 8192  # bytes looked at for a NUL, the mark of a binary file


def text_lines(
    path: Path, shown: str | None = None, expected: str = "one text a line"
) -> list[str]:
    """The lines of `path` without their line ends; messages name the file as `shown` and
    say what it should hold (`expected`)."""
    path = Path(path)
    shown = shown or str(path)
    content = path.read_bytes()
    start = len(codecs.BOM_UTF8) if content.startswith(codecs.BOM_UTF8) else 0
    try:
        text = content[start:].decode("utf-8")
    except UnicodeDecodeError as exc:
        raise DataError(_not_utf8(content, start + exc.start, shown, expected)) from None
    lines = [line.removesuffix("\r") for line in text.split("\n")]
    return lines[:-1] if lines and not lines[-1] else lines


def _not_utf8(content: bytes, offset: int, shown: str, expected: str) -> str:
    line = content.count(b"\n", 0, offset) + 1
    column = offset - (content.rfind(b"\n", 0, offset) + 1) + 1
    where = f"{shown}, line {line}: byte 0x{content[offset]:02x} at column {column} is not UTF-8"
    if b"\0" in content[:BINARY_SNIFF]:
        return (
            f"{where}; it looks like a binary file, not text. Give a UTF-8 text file ({expected})"
        )
    return f"{where}. Re-save the file as UTF-8 ({expected})"
