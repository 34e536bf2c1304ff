"""Prediction over files of any size: constant memory, and an output that resumes.

`predict_stream` takes the texts as an iterator and answers them `chunk` at a time (each chunk
goes through `Predictor.predict`, so batching by length, the token budget and long-text windows
are the same as for a list), appending one JSON line per text to the output and flushing after
each chunk. Memory is that of one chunk, whatever the file's size.

The output resumes: line i answers text i, so the complete lines of an existing output are the
texts already answered. A killed run can leave a partial last line (a chunk half written);
`resume_point` cuts it off and counts the complete ones, and the texts they answer are checked
against the input (the `text` of each line) and skipped. An output written from another input is
refused instead of being extended. So an interrupted then resumed output is the uninterrupted
one, line for line: the same texts and labels, and the same scores up to the backend's batch
invariance (bit for bit with ONNX INT8; within 1e-5 with PyTorch and ONNX FP32, whose float32
rounding depends on the batch shape, and a resumed chunk batches texts with other neighbours).
This is written here because no library resumes a line-per-record output. `stream_answers`
is the same for any answering function (`graft generate --output` streams its answers to
prompts with it, keyed by "prompt"), and `check_output` refuses, before a model is loaded, an
output that cannot be written or that is the input itself.

Left out: the atomic temp-then-rename of other outputs (an output that resumes must be
appended in place), and several writers on one output.
"""

from __future__ import annotations

import json
import os
from collections.abc import Callable, Iterable, Iterator
from itertools import islice
from pathlib import Path

from graftwork.errors import GraftError

CHUNK = 4096  # texts per Predictor.predict call: enough for batches sorted by length


def resume_point(output: Path) -> int:
    """The complete lines of `output` (0 if it does not exist); a partial last line, which a
    killed run leaves, is cut off the file."""
    output = Path(output)
    if not output.exists():
        return 0
    if not output.is_file():
        raise GraftError(f"--output {output} is not a file; give a file path for the predictions")
    complete, end, size = 0, 0, 0
    with open(output, "rb") as fh:
        for line in fh:
            size += len(line)
            if line.endswith(b"\n"):
                complete, end = complete + 1, size
    if end < size:
        os.truncate(output, end)
    return complete


def check_output(output: Path, input: Path) -> None:
    """Refuse an --output that is the --input itself (the same path, or a link to it: resuming
    would take the inputs for answers), a folder, or a path whose folder does not exist."""
    output, input = Path(output), Path(input)
    same = output.resolve() == input.resolve()
    if not same and output.exists() and input.exists():
        same = os.path.samefile(output, input)
    if same:
        raise GraftError(
            f"--output {output} is the --input file: the answers would replace the inputs; "
            "give another --output"
        )
    if output.is_dir():
        raise GraftError(f"--output {output} is a folder; give a file path for the answers")
    parent = output.parent
    if not parent.is_dir():
        what = "is not a folder" if parent.exists() else "does not exist"
        raise GraftError(
            f"--output {output}: its folder {parent} {what}; create it or give another --output"
        )


def _skip_answered(texts: Iterator, output: Path, done: int, where: str, key: str) -> None:
    """Take the `done` texts the output answers from `texts`, checking each against its line
    (its `key` field: the text, or the prompt)."""
    with open(output, encoding="utf-8") as previous:
        for index, line in enumerate(islice(previous, done)):
            item = next(texts, None)
            if item is None:
                raise GraftError(
                    f"--output {output} holds {done} answers but {where} has only {index} "
                    f"{key}s: it was written from another input. Give another --output, or "
                    "delete it to start again"
                )
            number, text = item
            try:
                answered = json.loads(line).get(key)
            except (json.JSONDecodeError, AttributeError):
                answered = None
            if answered != text:
                raise GraftError(
                    f"--output {output}, line {index + 1} does not answer {where} line {number} "
                    f"(its '{key}' differs): the output was written from another input. Give "
                    "another --output, or delete it to start again"
                )


def predict_stream(
    predictor,
    texts: Iterable[tuple[int, str]],
    output: Path,
    where: str,
    top_k: int = 1,
    batch_size: int = 64,
    chunk: int = CHUNK,
    on_progress: Callable[[int], None] | None = None,
) -> dict:
    """Answer `texts` ((line number, text) pairs, e.g. `cli.inputs.iter_texts`) into `output`,
    one JSON line each (`{"text": …, **answer}`), resuming what an earlier run wrote there.
    `where` names the input in messages; `on_progress(n)` is called with each chunk's size
    (also once with the resumed count). Returns {"resumed": n, "written": n}."""
    Path(output).parent.mkdir(parents=True, exist_ok=True)
    return stream_answers(
        lambda batch: predictor.predict(batch, top_k=top_k, batch_size=batch_size),
        texts,
        output,
        where,
        chunk=chunk,
        on_progress=on_progress,
    )


def stream_answers(
    answer: Callable[[list], list[dict]],
    texts: Iterable[tuple[int, str]],
    output: Path,
    where: str,
    key: str = "text",
    chunk: int = CHUNK,
    on_progress: Callable[[int], None] | None = None,
) -> dict:
    """`answer` each chunk of `texts` into `output`, one JSON line per text (`{key: text,
    **answer}`), appended and flushed per chunk, after skipping (and checking) the texts an
    earlier run answered there. Returns {"resumed": n, "written": n}."""
    output = Path(output)
    done = resume_point(output)
    texts = iter(texts)
    if done:
        _skip_answered(texts, output, done, where, key)
        if on_progress is not None:
            on_progress(done)
    written = 0
    with open(output, "a", encoding="utf-8") as out:
        while batch := list(islice(texts, chunk)):
            answers = answer([t for _, t in batch])
            out.write(
                "".join(
                    json.dumps({key: text, **reply}, ensure_ascii=False) + "\n"
                    for (_, text), reply in zip(batch, answers, strict=True)
                )
            )
            out.flush()
            written += len(batch)
            if on_progress is not None:
                on_progress(len(batch))
    return {"resumed": done, "written": written}
