"""What verbs take in: the options several verbs share, and the texts of `--input`.

Each shared option is declared once here and named by the verbs that take it. The backend
names come from the registry (through the server's settings, which accept the same names).
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import typer

from graftwork.data.text import iter_text_lines
from graftwork.errors import GraftError
from graftwork.serve.config import BACKEND_HELP

OVERRIDES = typer.Argument(None, help="Recipe overrides as KEY=VALUE, e.g. train.epochs=2.")
RESUME = typer.Option(False, "--resume", help="Continue from the run's last checkpoint.")
OVERWRITE = typer.Option(False, "--overwrite", help="Discard an unfinished run's checkpoint.")
NPROC = typer.Option(1, "--nproc", min=1, help="Data-parallel processes (CPU: gloo; GPU: NCCL).")
BACKEND = typer.Option("auto", "--backend", help=BACKEND_HELP)
THREADS = typer.Option(None, "--threads", min=1, help="CPU threads for inference.")
ADAPTER = typer.Option(
    None, "--adapter", help="Adapter bundles: which adapter to use (default: the trained one)."
)
TASK = typer.Option(None, "--task", help="Multi-task bundles: which task (default: the first).")


def read_texts(path: Path) -> list[str | dict]:
    """The texts of an --input file: one a line, or JSON lines with a 'text' string (UTF-8,
    with or without a byte-order mark); for extractive QA, JSON lines of question and context
    give {question, context} objects."""
    return [text for _, text in iter_texts(path)]


def iter_texts(path: Path) -> Iterator[tuple[int, str | dict]]:
    """`read_texts` one at a time, with each text's line number (blank lines are passed over);
    the file is read as they are taken."""
    if path.is_dir():
        raise GraftError(f"--input {path} is a folder; give a file with one text a line")
    if not path.is_file():
        raise GraftError(f"--input {path} does not exist")
    jsonl = path.suffix in (".jsonl", ".json")
    expected = 'JSON lines with a "text" string' if jsonl else "one text a line"
    for number, line in enumerate(iter_text_lines(path, f"--input {path}", expected), start=1):
        if not line.strip():
            continue
        if jsonl:
            try:
                record = json.loads(line)
                text = record.get("text")
            except (json.JSONDecodeError, AttributeError):
                record, text = None, None
            if text is None and isinstance(record, dict) and {"question", "context"} <= set(record):
                text = {"question": record["question"], "context": record["context"]}  # QA
            if not isinstance(text, (str, dict)):
                raise GraftError(
                    f"{path}, line {number}: expected a JSON object with a 'text' string (for "
                    "extractive QA: 'question' and 'context')"
                )
            yield number, text
        else:
            yield number, line
