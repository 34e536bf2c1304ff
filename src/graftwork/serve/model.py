"""One served bundle: its `Predictor`, its window settings, its batcher, and its answers.

`ServedModel.predict(texts)` splits each text into windows (`data.windows.split`, as
`graft predict` does), sends the windows through the model's batcher, and joins each text's
windows into the answer `graft predict` gives (`inference.forward.answers`), plus the number
of windows used. The window and stride follow `graft predict`'s unless `--window`/`--stride`
say otherwise (`data.windows.settings`). Requests of up to `INLINE_CHARS`
characters are tokenized and decoded on the event loop (a thread hop would cost more than the
work); larger ones in a text thread, with its own copy of the tokenizer (a fast tokenizer must
not be used by two threads at once; copied when the first such request comes, since a copy
of a large vocabulary's tokenizer holds megabytes), so a long document does not hold up the
event loop.
A request whose windows are more than `--max-request-windows` (or the whole `--max-queue`) is
refused before any of them is queued (`TooManyWindows`): alone in an empty queue it would
otherwise be taken, and hold the model past its timeout.

`forward` is the one place a batch meets the model: `inference.forward.logits_for` over the
predictor's backend (`Predictor.forward`: PyTorch, ONNX or INT8 ONNX, whichever the bundle
and `--backend` choose), the same forward passes as `graft predict` and `graft eval`.

A multi-task bundle is served as one model per task (`bundle.tasks.expand`), each with its own
batcher, all on the bundle's one encoder in memory (`inference.multitask` hands every task of a
bundle the same encoder module).
Adapter bundles (LoRA, DoRA, IA3, bottleneck) of one backbone served on PyTorch are loaded on
one copy of it (`serve.shared_backbone`), each still a model of its own with its own batcher.

Left out: HTTP (app.py) and batching policy (batcher.py).
"""

from __future__ import annotations

import asyncio
import copy
import json
import os
import re
from concurrent.futures import ThreadPoolExecutor

import numpy as np

from graftwork.bundle.tasks import expand, parse_spec
from graftwork.data import windows
from graftwork.errors import GraftError
from graftwork.inference.forward import answers, logits_for
from graftwork.inference.predictor import load
from graftwork.serve.batcher import Batcher, OnBatch
from graftwork.serve.config import ServeConfig
from graftwork.serve.schemas import takes_objects
from graftwork.serve.shared_backbone import load_shared

NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$")
INLINE_CHARS = 20_000  # requests up to this size are tokenized on the event loop


class TooManyWindows(Exception):
    """A request splits into more windows than one request may have (refused, not queued)."""

    def __init__(self, count: int, limit: int):
        super().__init__(f"{count} windows, limit {limit}")
        self.count, self.limit = count, limit


class ServedModel:
    def __init__(self, name: str, predictor, config: ServeConfig):
        self.name = name
        self.predictor = predictor
        self.config = config
        self.task_name = predictor.task_config.type
        self.window, self.stride = window_settings(predictor, config)
        self.batcher: Batcher | None = None
        self.ready = False
        self._text_thread: ThreadPoolExecutor | None = None
        self._text_tokenizer = None  # the text thread's own copy, made for the first large request

    def forward(self, features: list[dict]) -> list[np.ndarray]:
        """Logits for one batch of windows, in order: the only code that runs the model."""
        p = self.predictor
        return logits_for(p.forward, features, len(features), p.tokenizer.pad_token_id)

    def describe(self) -> dict:
        manifest = self.predictor.manifest
        return {
            "name": self.name,
            "task": self.task_name,
            "labels": [self.predictor.id2label[i] for i in sorted(self.predictor.id2label)],
            "max_length": self.predictor.max_length,
            "window": self.window,
            "stride": self.stride,
            "ready": self.ready,
            "artifact": {
                "path": str(getattr(self.predictor, "path", "")),
                "backend": getattr(self.predictor, "backend", "torch"),
                "format": manifest.format,
                "backbone": manifest.backbone,
                "method": manifest.method,
                "created": manifest.created,
            },
        }

    # Life cycle (called by the app's lifespan) ---------------------------------------------

    def start(self, on_batch: OnBatch | None = None) -> None:
        cfg = self.config
        self._text_thread = ThreadPoolExecutor(1, thread_name_prefix=f"graft-{self.name}-text")
        self.batcher = Batcher(
            lambda features: self.forward(features),
            max_batch_size=cfg.max_batch_size,
            max_wait_ms=cfg.max_wait_ms,
            max_batch_tokens=cfg.max_batch_tokens,
            max_queue=cfg.max_queue,
            on_batch=on_batch,
            name=self.name,
        )
        self.batcher.start()

    async def warm_up(self) -> None:
        """One short and one multi-window text through the whole path; then the model is ready."""
        example = self.predictor.task.EXAMPLE
        if takes_objects(self.predictor.task):  # QA: an object with a question and a context
            short = json.loads(example)
            inputs = [short, {**short, "context": "warm " * self.window}]
        else:
            inputs = ["warm up", "warm " * self.window]
        await self.predict(inputs, capped=False)
        self.ready = True

    async def close(self) -> None:
        """Answer everything queued, then stop the threads."""
        if self.batcher is not None:
            await self.batcher.close()
        if self._text_thread is not None:
            self._text_thread.shutdown(wait=True)

    # Answers -------------------------------------------------------------------------------

    @property
    def max_windows(self) -> int:
        """Windows one request may have: a bigger one could never be answered in time."""
        return min(self.config.max_request_windows, self.config.max_queue)

    async def predict(
        self, texts: list[str], top_k: int = 1, aggregate: str = "mean", capped: bool = True
    ) -> list[dict]:
        """One answer per text; raises `TooManyWindows` (unless not `capped`: the warm-up),
        `QueueFull` or the model's error for its batch."""
        if sum(len(t) if isinstance(t, str) else len(t["context"]) for t in texts) <= INLINE_CHARS:
            docs = self._split(texts, self.predictor.tokenizer)
            logits = await self.batcher.submit(self._windows(docs, capped))
            return self._answers(docs, logits, top_k, aggregate)
        loop = asyncio.get_running_loop()
        thread = self._text_thread
        if self._text_tokenizer is None:  # copied here, on the thread that uses the original
            self._text_tokenizer = copy.deepcopy(self.predictor.tokenizer)
        docs = await loop.run_in_executor(thread, self._split, texts, self._text_tokenizer)
        logits = await self.batcher.submit(self._windows(docs, capped))
        return await loop.run_in_executor(thread, self._answers, docs, logits, top_k, aggregate)

    def _windows(self, docs: list[windows.Document], capped: bool) -> list[dict]:
        features = [f for doc in docs for f in doc.windows]
        if capped and len(features) > self.max_windows:
            raise TooManyWindows(len(features), self.max_windows)
        return features

    def _split(self, texts: list[str], tokenizer) -> list[windows.Document]:
        task = self.predictor.task
        examples = [task.from_text(t, self.predictor.task_config) for t in texts]
        return windows.split(task, tokenizer, examples, self.window, self.stride)

    def _answers(self, docs, logits, top_k: int, aggregate: str) -> list[dict]:
        p = self.predictor
        out = answers(p.task, docs, logits, p.id2label, top_k, aggregate)
        for answer, doc in zip(out, docs, strict=True):
            answer["windows"] = len(doc.windows)
        return out


def window_settings(predictor, config: ServeConfig) -> tuple[int, int]:
    """(window, stride) in tokens, checked against the model's positions and special tokens."""
    tokenizer = predictor.tokenizer
    if not getattr(tokenizer, "is_fast", False):
        raise GraftError(
            f"bundle {predictor.path}: graft serve needs a fast (Rust) tokenizer for windows; "
            "save the bundle's tokenizer with tokenizer.json"
        )
    limit = windows.model_limit(tokenizer, getattr(predictor, "path", ""))
    window = config.window or predictor.max_length
    return windows.settings(tokenizer, window, config.stride, limit)


def serving_threads() -> int:
    """Model threads by default: torch's default, less one core for HTTP and tokenizing.

    On a busy machine, intra-op threads that share cores with the event loop stall at every
    parallel region (measured: a tiny model's batch took 300+ ms instead of 2 ms on 2 cores).
    """
    import torch

    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()
    return max(1, min(torch.get_num_threads(), (cores or 1) - 1))


def load_models(specs: list[str], config: ServeConfig) -> list[ServedModel]:
    """Load each bundle, named NAME=, else by its manifest's name, else by its folder; each
    task of a multi-task bundle as a model of its own, the tasks on one shared encoder."""
    models: list[ServedModel] = []
    threads = config.threads or serving_threads()
    specs = expand(specs)  # a multi-task bundle serves each task
    # adapter bundles of one backbone: the backbone once, each adapter and head beside it
    shared = load_shared(specs, config.backend, threads) if config.share_backbone else {}
    for index, spec in enumerate(specs):
        name, path = parse_spec(spec)
        predictor = shared.get(index) or load(path, threads=threads, backend=config.backend)
        name = name or predictor.manifest.name or path.resolve().name
        if not NAME.match(name):
            raise GraftError(
                f"bundle {path}: '{name}' cannot be a model name in a URL; choose one with "
                "NAME=PATH (letters, digits, '.', '_', '-')"
            )
        if any(m.name == name for m in models):
            raise GraftError(
                f"two bundles are named '{name}'; name them apart with NAME=PATH "
                f"(e.g. {name}-2={path})"
            )
        models.append(ServedModel(name, predictor, config))
    if not models:
        raise GraftError("no bundle to serve: give one or more bundle folders")
    return models
