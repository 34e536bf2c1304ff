"""Dynamic batching: concurrent requests' windows gathered into batches, run once, scattered back.

Requests add their windows (features) to one queue per model and await a future per window.
A batching task on the event loop waits until a batch is full (`max_batch_size` windows, or
`max_batch_tokens` padded tokens) or the oldest window has waited `max_wait_ms`; then it takes
everything queued, sorts it by length (short first, so similar lengths share a batch and
padding is small), cuts it into batches within both limits, and runs each batch in a worker
thread, so the event loop keeps accepting requests while the model runs. While a batch runs,
new windows queue up, so under load batches fill by themselves.

A batch that raises fails only the windows in it (their requests get the error); windows whose
request went away (timeout, disconnect) are skipped. `close()` finishes everything queued
before it returns, which is how the server drains on SIGTERM.

Left out: what the model is (the `forward` callable given to the batcher is the one place
that runs it) and request-level limits (the HTTP layer's job, except the queue's capacity).
"""

from __future__ import annotations

import asyncio
import time
from collections import deque
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field

import numpy as np

Forward = Callable[[list[dict]], list[np.ndarray]]
OnBatch = Callable[[int, int, float], None]  # windows, padded tokens, seconds


class QueueFull(Exception):
    """The queue holds too many windows to take this request now."""


@dataclass
class _Item:
    feature: dict
    length: int
    future: asyncio.Future
    queued: float = field(default_factory=time.monotonic)


class Batcher:
    def __init__(
        self,
        forward: Forward,
        max_batch_size: int = 32,
        max_wait_ms: float = 0.0,
        max_batch_tokens: int = 16384,
        max_queue: int = 2048,
        on_batch: OnBatch | None = None,
        name: str = "model",
    ):
        self.forward = forward
        self.max_batch_size = max_batch_size
        self.max_wait = max_wait_ms / 1000
        self.max_batch_tokens = max_batch_tokens
        self.max_queue = max_queue
        self.on_batch = on_batch
        self.depth = 0  # windows submitted and not yet answered
        self._pending: deque[_Item] = deque()
        self._wakeup: asyncio.Event | None = None
        self._task: asyncio.Task | None = None
        self._closing = False
        self._executor = ThreadPoolExecutor(1, thread_name_prefix=f"graft-{name}")

    def start(self) -> None:
        """Start the batching task on the running event loop."""
        self._wakeup = asyncio.Event()
        self._task = asyncio.get_running_loop().create_task(self._run())

    async def close(self) -> None:
        """Finish every queued window, then stop the task and the worker thread."""
        self._closing = True
        if self._wakeup is not None:
            self._wakeup.set()
        if self._task is not None:
            await self._task
        self._executor.shutdown(wait=True)

    async def submit(self, features: list[dict]) -> list[np.ndarray]:
        """The logits of each feature, in order. Raises `QueueFull`, or the batch's error."""
        if self._task is None or self._closing:
            raise RuntimeError("the batcher is not running")
        if self.depth and self.depth + len(features) > self.max_queue:
            raise QueueFull(f"{self.depth} windows queued, limit {self.max_queue}")
        loop = asyncio.get_running_loop()
        items = [_Item(f, len(f["input_ids"]), loop.create_future()) for f in features]
        self._pending.extend(items)
        self.depth += len(items)
        self._wakeup.set()
        try:
            return list(await asyncio.gather(*(item.future for item in items)))
        except BaseException:  # failed, timed out or gone: the batcher skips what is left
            for item in items:
                item.future.cancel()
            raise

    # The batching task --------------------------------------------------------------------

    def _full(self) -> bool:
        longest = max(item.length for item in self._pending)
        return (
            len(self._pending) >= self.max_batch_size
            or longest * len(self._pending) >= self.max_batch_tokens
        )

    async def _gather(self) -> None:
        """Return when the queue holds a full batch or its oldest window has waited enough."""
        deadline = self._pending[0].queued + self.max_wait
        while not self._closing and not self._full():
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                return
            self._wakeup.clear()
            try:
                await asyncio.wait_for(self._wakeup.wait(), remaining)
            except asyncio.TimeoutError:
                return

    def _take(self) -> list[list[_Item]]:
        """Everything queued and still wanted, by length, cut into batches within the limits."""
        items = [item for item in self._pending if not item.future.done()]
        self.depth -= len(self._pending) - len(items)
        self._pending.clear()
        items.sort(key=lambda item: item.length)
        batches: list[list[_Item]] = []
        for item in items:
            batch = batches[-1] if batches else None
            if (
                batch is not None
                and len(batch) < self.max_batch_size
                and item.length * (len(batch) + 1) <= self.max_batch_tokens
            ):
                batch.append(item)
            else:
                batches.append([item])
        return batches

    async def _run(self) -> None:
        loop = asyncio.get_running_loop()
        while True:
            if not self._pending:
                if self._closing:
                    return
                self._wakeup.clear()
                await self._wakeup.wait()
                continue
            await self._gather()
            for batch in self._take():
                live = [item for item in batch if not item.future.done()]
                self.depth -= len(batch) - len(live)
                if live:
                    await self._run_batch(loop, live)

    async def _run_batch(self, loop, batch: list[_Item]) -> None:
        start = time.perf_counter()
        try:
            logits = await loop.run_in_executor(
                self._executor, self.forward, [item.feature for item in batch]
            )
        except Exception as exc:  # the batch's requests get the error; the others go on
            for item in batch:
                if not item.future.done():
                    item.future.set_exception(exc)
        else:
            for item, row in zip(batch, logits, strict=True):
                if not item.future.done():
                    item.future.set_result(row)
        finally:
            self.depth -= len(batch)
        if self.on_batch is not None:
            tokens = max(item.length for item in batch) * len(batch)
            self.on_batch(len(batch), tokens, time.perf_counter() - start)
