"""`graft generate`: text from a causal_lm bundle or a decoder backbone (`smollm2-135m`).

One prompt streams its answer to the terminal as it is generated; `--input` (one prompt a
line, or JSON lines with a "prompt" string) generates in length-sorted batches with a
progress bar and writes JSON lines to stdout or, atomically, to `--output`. The work is
`inference.generate`'s; the flags change the bundle's `generation` settings.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

import typer

from graftwork.bundle import atomic
from graftwork.cli import render
from graftwork.cli.inputs import THREADS, expected_object, iter_texts
from graftwork.errors import GraftError
from graftwork.inference.generate import load_generator


def generate(
    source: str = typer.Argument(..., help="A causal_lm bundle, or a backbone: smollm2-135m."),
    prompt: str = typer.Argument(None, help="The prompt (its answer streams to the terminal)."),
    input: Path = typer.Option(
        None, "--input", help='File: one prompt a line, or JSON lines with a "prompt" string.'
    ),
    output: Path = typer.Option(None, "--output", help="With --input: write JSON lines here."),
    max_new_tokens: int = typer.Option(None, "--max-new-tokens", min=1),
    temperature: float = typer.Option(None, "--temperature", help="Sample at this temperature."),
    top_p: float = typer.Option(None, "--top-p", help="Sample from this nucleus mass."),
    greedy: bool = typer.Option(
        None, "--greedy/--sample", help="Greedy decoding (default), or sampling."
    ),
    batch_size: int = typer.Option(16, "--batch-size", min=1),
    threads: int = THREADS,
):
    """Generate text: `graft generate smollm2-135m "What is the capital of France?"`, or
    `graft generate BUNDLE --input prompts.jsonl --output answers.jsonl`."""
    if (prompt is None) == (input is None):
        raise GraftError("give one prompt, or --input FILE (not both)")
    if output is not None and input is None:
        raise GraftError("--output writes the answers to an --input file; give --input FILE")
    prompts = [prompt] if input is None else read_prompts(input)
    generator = load_generator(source, threads=threads)
    settings = generator.settings_with(max_new_tokens, temperature, top_p, greedy)
    if input is None:
        for piece in generator.stream(prompt, settings):
            sys.stdout.write(piece)
            sys.stdout.flush()
        sys.stdout.write("\n")
        return
    with render.counter("generate", len(prompts)) as advance:
        answers = generator.generate(prompts, settings, batch_size, on_batch=advance)
    records = [{"prompt": p, **a} for p, a in zip(prompts, answers, strict=True)]
    if output is None:
        render.json_lines(records)
        return
    atomic.write_text(output, "".join(json.dumps(r, ensure_ascii=False) + "\n" for r in records))
    render.lines([f"{len(records):,} answers in {output}"])


def read_prompts(path: Path) -> list[str]:
    """The prompts of an --input file (`inputs.iter_texts` with the "prompt" key), none blank."""
    prompts = []
    for number, text in iter_texts(path, "prompt"):
        if not text.strip():
            raise GraftError(f"{path}, line {number}: {expected_object('prompt')}")
        prompts.append(text)
    if not prompts:
        raise GraftError(f"--input {path} holds no prompts")
    return prompts
