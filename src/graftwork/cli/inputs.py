"""What verbs take in: the options several verbs share, and the texts (or prompts) of `--input`.

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

OVERRIDES = typer.Argument(
    None,
    help="Recipe overrides as KEY=VALUE, e.g. train.epochs=2; KEY=null removes a mapping (its "
    "default applies), e.g. task.label_names=null.",
)
RESUME = typer.Option(False, "--resume", help="Continue from the run's last checkpoint.")
OVERWRITE = typer.Option(False, "--overwrite", help="Discard an unfinished run's checkpoint.")
NPROC = typer.Option(1, "--nproc", min=1, help="Data-parallel processes (CPU: gloo; GPU: NCCL).")
BACKEND = typer.Option("auto", "--backend", help=BACKEND_HELP)
THREADS = typer.Option(None, "--threads", min=1, help="CPU threads for inference.")
ADAPTER = typer.Option(
    None, "--adapter", help="Adapter bundles: which adapter to use (default: the trained one)."
)
TASK = typer.Option(None, "--task", help="Multi-task bundles: which task (default: the first).")


def iter_texts(path: Path, key: str = "text") -> Iterator[tuple[int, str | dict]]:
    """The texts of an --input file, each with its line number (blank lines are passed over),
    read as they are taken: one a line, or JSON lines with a `key` string ("text"; `graft
    generate` reads "prompt"), UTF-8 with or without a byte-order mark; only "text" lines may
    instead hold a question and context (extractive QA: {question, context} objects)."""
    if path.is_dir():
        raise GraftError(f"--input {path} is a folder; give a file with one {key} a line")
    if not path.is_file():
        raise GraftError(f"--input {path} does not exist")
    jsonl = path.suffix in (".jsonl", ".json")
    qa = key == "text"  # predict's texts may be extractive-QA objects; prompts are strings
    expected = f'JSON lines with a "{key}" string' if jsonl else f"one {key} a line"
    for number, line in enumerate(iter_text_lines(path, f"--input {path}", expected), start=1):
        if not line.strip():
            continue
        if not jsonl:
            yield number, line
            continue
        try:
            record = json.loads(line)
        except json.JSONDecodeError as exc:
            raise GraftError(
                f"{path}, line {number}: not valid JSON ({exc.msg}); expected {expected}"
            ) from None
        fields = record if isinstance(record, dict) else {}
        text = fields.get(key)
        if qa and text is None and {"question", "context"} <= set(fields):
            text = {"question": fields["question"], "context": fields["context"]}
        if not isinstance(text, (str, dict) if qa else str):
            raise GraftError(f"{path}, line {number}: {expected_object(key)}")
        yield number, text


def expected_object(key: str) -> str:
    """What a JSON line of an --input file must be, for messages."""
    qa = " (for extractive QA: 'question' and 'context')" if key == "text" else ""
    return f'expected a JSON object with a non-empty "{key}" string{qa}'
