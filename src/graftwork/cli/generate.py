"""`graft generate`: text from a causal_lm bundle or a decoder backbone (`smollm2-135m`).

One prompt streams its answer to the terminal as it is generated; `--input` (one prompt a
line, or JSON lines with a "prompt" string) generates in length-sorted batches with a
progress bar and writes JSON lines to stdout or to `--output`. Every prompt and the output
path are checked before the model loads; `--output` is written a batch at a time (flushed) and
resumes like `graft predict --output` (`inference.stream`): a rerun after a kill answers only
the prompts left, and an output written from another input is refused. The work is
`inference.generate`'s; the flags change the bundle's `generation` settings.
"""

from __future__ import annotations

import sys
from collections.abc import Iterator
from pathlib import Path

import typer

from graftwork.cli import render
from graftwork.cli.inputs import THREADS, iter_texts
from graftwork.data.blank import blank_message, is_blank
from graftwork.errors import GraftError
from graftwork.inference.generate import check_temperature, load_generator
from graftwork.inference.stream import check_output, stream_answers


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
    check_temperature(temperature)
    if output is not None:
        check_output(output, input)
    prompts = [prompt] if input is None else read_prompts(input)
    generator = load_generator(source, threads=threads)
    settings = generator.settings_with(max_new_tokens, temperature, top_p, greedy)
    if input is None:
        for piece in generator.stream(prompt, settings):
            sys.stdout.write(piece)
            sys.stdout.flush()
        sys.stdout.write("\n")
        return
    if output is None:
        with render.counter("generate", len(prompts)) as advance:
            answers = generator.generate(prompts, settings, batch_size, on_batch=advance)
        render.json_lines({"prompt": p, **a} for p, a in zip(prompts, answers, strict=True))
        return
    with render.counter("generate", len(prompts)) as advance:
        done = stream_answers(
            lambda batch: generator.generate(batch, settings, batch_size),
            numbered_prompts(input),
            output,
            f"--input {input}",
            key="prompt",
            chunk=batch_size,
            on_progress=advance,
        )
    resumed = f" ({done['resumed']:,} from an earlier run)" if done["resumed"] else ""
    render.lines([f"{done['resumed'] + done['written']:,} answers in {output}{resumed}"])


def numbered_prompts(path: Path) -> Iterator[tuple[int, str]]:
    """(line number, prompt) of an --input file (`inputs.iter_texts` with the "prompt" key),
    a blank prompt refused with its line."""
    for number, text in iter_texts(path, "prompt"):
        if is_blank(text):
            raise GraftError(blank_message(f"--input {path}, line {number}: the prompt", "prompt"))
        yield number, text


def read_prompts(path: Path) -> list[str]:
    """The prompts of an --input file, none blank (`numbered_prompts`)."""
    prompts = [text for _, text in numbered_prompts(path)]
    if not prompts:
        raise GraftError(f"--input {path} holds no prompts")
    return prompts
