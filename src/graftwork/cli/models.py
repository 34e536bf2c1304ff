"""`graft eval`, `graft predict`, `graft info`: using a trained bundle.

Evaluation and prediction go through the predictor (`graftwork.inference.predictor`), the
same code the Python API and the server call; the eval table shows the task's own metrics
(its `SHOWN`). `graft predict --input FILE --output FILE` streams: constant memory whatever
the file's size, a progress bar on a terminal, and an interrupted output resumes where it
stopped (`graftwork.inference.stream`).
"""

from __future__ import annotations

from pathlib import Path

import typer

from graftwork.bundle import read_manifest
from graftwork.cli import render
from graftwork.cli.inputs import ADAPTER, BACKEND, TASK, THREADS, iter_texts
from graftwork.data.blank import blank_field, blank_message
from graftwork.errors import GraftError
from graftwork.inference.predictor import auto_backend, load
from graftwork.inference.stream import check_output, predict_stream


def evaluate(
    bundle: Path = typer.Argument(..., help="A bundle folder (runs/NAME/bundle)."),
    data: list[Path] = typer.Option(..., "--data", help="Labelled file(s); repeat for several."),
    batch_size: int = typer.Option(64, min=1),
    as_json: bool = typer.Option(False, "--json", help="Print metrics as JSON."),
    backend: str = BACKEND,
    threads: int = THREADS,
    adapter: str = ADAPTER,
    task: str = TASK,
):
    """Evaluate a bundle on labelled files (one row per file, e.g. one per language).

    Cross-lingual zero-shot: train on one language, then
    `graft eval BUNDLE --data wikiann/en/test --data wikiann/de/test`."""
    predictor = load(bundle, backend=backend, threads=threads, adapter=adapter, task=task)
    results = {str(path): predictor.evaluate(path, batch_size=batch_size) for path in data}
    if as_json:
        render.as_json(results)
        return
    first = next(iter(results.values()))
    keys = [k for k in (*predictor.task.SHOWN, "repaired_tags") if k in first]
    render.evaluations(f"{bundle}", results, keys)


def predict(
    bundle: Path = typer.Argument(..., help="A bundle folder."),
    texts: list[str] = typer.Argument(None, help="Texts to label."),
    input: Path = typer.Option(
        None, "--input", help="File: one text a line, or JSON lines with 'text'."
    ),
    output: Path = typer.Option(
        None,
        "--output",
        help="With --input: write the JSON lines here, streaming (constant memory); an "
        "interrupted output is resumed, not restarted.",
    ),
    top_k: int = typer.Option(
        1, min=1, help="Classification: also list the k best labels (QA: the k best answers)."
    ),
    batch_size: int = typer.Option(64, min=1),
    backend: str = BACKEND,
    threads: int = THREADS,
    adapter: str = ADAPTER,
    task: str = TASK,
    question: str = typer.Option(None, "--question", help="Extractive QA: the question."),
    context: str = typer.Option(None, "--context", help="Extractive QA: the text to answer from."),
    ray: bool = typer.Option(
        False,
        "--ray",
        help="With --input and --output: predict on Ray Data workers, on this machine or on the "
        "Ray cluster $RAY_ADDRESS names (the same output; the bundle and input at the same path "
        "on every node).",
    ),
    workers: int = typer.Option(
        None,
        "--workers",
        min=1,
        help="With --ray: workers (default: Ray's CPUs less one, / --threads).",
    ),
):
    """Predict labels (or entities) for texts; one JSON line per input on stdout (or in
    --output: `graft predict BUNDLE --input big.jsonl --output preds.jsonl`). A QA bundle
    answers `--question Q --context C` (or --input lines of {"question", "context"} JSON)."""
    if (question is None) != (context is None) or (question is not None and (texts or input)):
        raise GraftError("extractive QA: give --question and --context together, and no texts")
    if (ray or workers is not None) and (output is None or input is None):
        raise GraftError("--ray predicts an --input file into an --output file: give both")
    if workers is not None and not ray:
        raise GraftError("--workers is the number of Ray Data workers: add --ray")
    if output is not None:
        if input is None or texts:
            raise GraftError("--output streams an --input file: give --input FILE and no texts")
        options = {"backend": backend, "threads": threads, "adapter": adapter, "task": task}
        _stream(bundle, input, output, top_k, batch_size, options, workers if ray else 0)
        return
    # each input with where its user gave it, so that a blank one is refused saying so
    named: list = [(f"text {i}", text) for i, text in enumerate(texts or [], start=1)]
    if question is not None:
        named.append(("", {"question": question, "context": context}))
    if input is not None:
        named += [(f"--input {input}, line {n}", text) for n, text in iter_texts(input)]
    if not named:
        raise GraftError("nothing to predict: give texts as arguments or --input FILE")
    for where, item in named:  # refused before the bundle is loaded
        _refuse_blank(where, item)
    items = [item for _, item in named]
    predictor = load(bundle, backend=backend, threads=threads, adapter=adapter, task=task)
    answers = predictor.predict(items, top_k=top_k, batch_size=batch_size)
    render.json_lines(
        {**(item if isinstance(item, dict) else {"text": item}), **answer}
        for item, answer in zip(items, answers, strict=True)
    )


def _stream(bundle, input, output, top_k, batch_size, options: dict, workers: int | None) -> None:
    """`graft predict --input --output`: check every text first (a bad line is refused before
    the bundle loads), then answer them chunk by chunk into `output` (on Ray Data workers
    unless `workers` is 0; None: as many as Ray's CPUs allow)."""
    total = 0
    for number, text in iter_texts(input):
        _refuse_blank(f"--input {input}, line {number}", text)
        total += 1
    check_output(output, input)
    if workers != 0:
        try:
            from graftwork.runs import ray_predict  # optional
        except ImportError as exc:
            raise GraftError(
                f"--ray needs Ray Data ({exc}); install it: pip install 'graftwork[ray]'"
            ) from None
        with render.counter("predict", total) as advance:
            done = ray_predict.predict_on_ray(
                bundle,
                iter_texts(input),
                input,
                output,
                total,
                workers,
                top_k,
                batch_size,
                on_progress=advance,
                **options,
            )
        render.streamed(output, done)
        return
    predictor = load(bundle, **options)
    with render.counter("predict", total) as advance:
        done = predict_stream(
            predictor,
            iter_texts(input),
            output,
            f"--input {input}",
            top_k=top_k,
            batch_size=batch_size,
            on_progress=advance,
        )
    render.streamed(output, done)


def _refuse_blank(where: str, item) -> None:
    """A blank input, named as given: "text 2", "--context", "--input F, line 3: the question"
    (`where` is "" for the --question/--context pair)."""
    field = blank_field(item)
    if field is None:
        return
    if not where:
        where = f"--{field}"
    elif field != "text" or where.startswith("--input"):
        where = f"{where}: the {field}"
    raise GraftError(blank_message(where, field))


def info(bundle: Path = typer.Argument(..., help="A bundle folder.")):
    """Show what a bundle holds: task, labels, method, metrics, artifacts, files, and the
    backend `auto` serves it with (and why the faster ones are passed over)."""
    manifest = read_manifest(bundle)
    render.manifest(manifest)
    render.served_by(*auto_backend(manifest))
