"""`graft predict BUNDLE --input FILE --output FILE --ray`: batch prediction on Ray Data.

    done = predict_on_ray(bundle, iter_texts(path), path, output, total, workers=2)

Ray Data reads the input (`read_binary_files`) and splits it into texts as `graft predict`
reads them (`cli.inputs.iter_texts`: lines split at line feeds only, a byte-order mark and
blank lines dropped, JSON lines' "text" or question and context; Ray's `read_text` splits at
every Unicode line break, which would cut some texts in two); the texts are cut into blocks
of a few hundred and `map_batches` hands the blocks to a pool of `workers` actors
(`Answerer`), each of which loads the bundle once (`graftwork.load`) and answers its blocks
with `Predictor.predict`, the same call `graft predict` makes. The answers come back to this
process in input order (Ray Data's `preserve_order`) and are written by
`inference.stream.stream_answers`, so the output is the file `graft predict --output` writes,
line for line (scores up to the backend's batch invariance: blocks batch texts with other
neighbours), and it resumes the same way: the complete lines of an existing output are checked
against the input and skipped, and only the rest goes to Ray; an output of another input, or
the input itself, is refused.

Ray starts on this machine, or joins the cluster $RAY_ADDRESS names
(`serve.ray_serve.start_ray`). Left out: reading one file in parallel (one task reads a file,
as Ray's own text readers do; the prediction is what spreads over the workers) and inputs
away from this machine: the input is read here too (checked, and for the `text` of each output
line), so on a cluster it and the bundle must be at the same path on every node.
"""

from __future__ import annotations

import codecs
import json
import math
from collections.abc import Callable, Iterable
from pathlib import Path

import numpy as np
import ray

from graftwork.errors import GraftError
from graftwork.inference.predictor import load
from graftwork.inference.stream import CHUNK, resume_point, stream_answers
from graftwork.serve.ray_serve import start_ray

BLOCKS_PER_WORKER = 4  # enough blocks that a slow one does not leave the other workers idle


def texts_of(row: dict, jsonl: bool, skip: int) -> list[dict]:
    """The texts of one file's bytes as `graft predict` reads them, the first `skip` left
    out; each as {"item": its JSON}. The file was checked line by line before (iter_texts)."""
    data = bytes(row["bytes"])
    data = data.removeprefix(codecs.BOM_UTF8)
    items = []
    for raw in data.split(b"\n"):
        line = raw.decode("utf-8").removesuffix("\r")
        if not line.strip():
            continue
        text = line
        if jsonl:
            fields = json.loads(line)
            text = fields.get("text")
            if text is None:
                text = {"question": fields["question"], "context": fields["context"]}
        items.append(text)
    return [{"item": json.dumps(text, ensure_ascii=False)} for text in items[skip:]]


class Answerer:
    """A Ray Data worker: the bundle loaded once, then `Predictor.predict` per block."""

    def __init__(self, bundle: str, top_k: int, batch_size: int, **load_options):
        self.predictor = load(bundle, **load_options)
        self.top_k, self.batch_size = top_k, batch_size

    def __call__(self, batch: dict) -> dict:
        texts = [json.loads(item) for item in batch["item"]]
        replies = self.predictor.predict(texts, top_k=self.top_k, batch_size=self.batch_size)
        answers = [json.dumps(reply, ensure_ascii=False) for reply in replies]
        return {"item": batch["item"], "answer": np.array(answers, dtype=object)}


def dataset(path: Path, bundle: Path, workers: int, rows: int, skip: int, options: dict):
    """The Ray Data pipeline: the texts of `path` after the first `skip`, answered by
    `workers` `Answerer`s (`options`: its keyword arguments)."""
    threads = options.get("threads") or 1
    return (
        ray.data.read_binary_files(str(path.resolve()))
        .flat_map(texts_of, fn_kwargs={"jsonl": path.suffix in (".jsonl", ".json"), "skip": skip})
        .repartition(target_num_rows_per_block=rows)
        .map_batches(
            Answerer,
            fn_constructor_args=(str(bundle.resolve()),),
            fn_constructor_kwargs={**options, "threads": threads},
            batch_size=rows,
            compute=ray.data.ActorPoolStrategy(size=workers),
            num_cpus=threads,
        )
    )


def predict_on_ray(
    bundle: Path,
    texts: Iterable[tuple[int, str | dict]],
    path: Path,
    output: Path,
    total: int,
    workers: int | None = None,
    top_k: int = 1,
    batch_size: int = 64,
    on_progress: Callable[[int], None] | None = None,
    **load_options,
) -> dict:
    """Answer the `total` texts of input file `path` (`texts`: its (line number, text) pairs)
    into `output` on `workers` Ray Data workers (None: Ray's CPUs / threads); `load_options`
    go to `graftwork.load` (backend, threads, adapter, task). Returns {"resumed": n,
    "written": n}."""
    where = f"--input {path}"
    done = resume_point(output)
    started, answered = False, None

    def answer(chunk: list) -> list[dict]:
        nonlocal started, answered
        if answered is None:  # Ray only once there is something to answer
            started = start_ray()
            threads = load_options.get("threads") or 1
            cpus = int(ray.cluster_resources().get("CPU", 1))
            pool = workers or max(1, (cpus - 1) // threads)
            if pool * threads + 1 > cpus:  # the reading tasks need a CPU beside the workers
                raise GraftError(
                    f"--workers {pool} x --threads {threads} take {pool * threads} of Ray's "
                    f"{cpus} CPUs, leaving none to read the input; give fewer --workers"
                )
            rows = math.ceil(max(total - done, 1) / (pool * BLOCKS_PER_WORKER))
            rows = min(CHUNK, rows)
            context = ray.data.DataContext.get_current()
            context.execution_options.preserve_order = True
            context.enable_progress_bars = False
            options = {**load_options, "top_k": top_k, "batch_size": batch_size}
            pipeline = dataset(path, bundle, pool, rows, done, options)
            answered = iter(pipeline.iter_rows())
        replies = []
        for text in chunk:
            try:
                row = next(answered)
            except ray.exceptions.RayError as exc:
                raise GraftError(f"prediction on Ray failed: {_cause(exc)}") from None
            if json.loads(row["item"]) != text:  # the order Ray Data keeps, checked
                raise GraftError(f"{where}: Ray Data returned the answers out of order")
            replies.append(json.loads(row["answer"]))
        return replies

    try:
        return stream_answers(answer, texts, output, where, on_progress=on_progress)
    finally:
        if started:
            ray.shutdown()


def _cause(exc: Exception) -> str:
    """The error a Ray worker raised, without Ray's traceback around it."""
    cause = getattr(exc, "cause", None)
    if isinstance(cause, Exception):
        return f"{type(cause).__name__}: {cause}"
    return str(exc).strip().splitlines()[-1]
