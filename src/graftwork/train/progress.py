"""Progress: a live bar on a terminal, plain periodic log lines otherwise (CI, files, pipes).

Both show loss, examples/s and ETA; every line also goes to the run's log through `logging`.
"""

from __future__ import annotations

import logging
import sys
import time

log = logging.getLogger("graftwork")


def _clock(seconds: float) -> str:
    seconds = int(max(0, seconds))
    return f"{seconds // 3600}:{seconds % 3600 // 60:02d}:{seconds % 60:02d}"


class Progress:
    def __init__(
        self, total_steps: int, start_step: int, start_examples: int, log_every: int, enabled: bool
    ):
        self.total = total_steps
        self.start_step = start_step
        self.start_examples = start_examples
        self.log_every = log_every
        self.enabled = enabled
        self.started = time.perf_counter()
        self.examples = start_examples
        self.bar = None
        if enabled and sys.stdout.isatty():
            from rich.progress import BarColumn, TextColumn, TimeRemainingColumn
            from rich.progress import Progress as RichProgress

            self.bar = RichProgress(
                TextColumn("train"),
                BarColumn(),
                TextColumn("{task.completed}/{task.total}"),
                TextColumn("{task.fields[info]}"),
                TimeRemainingColumn(),
            )
            self.task = self.bar.add_task("train", total=total_steps, completed=start_step, info="")
            self.bar.start()

    @property
    def rate(self) -> float:
        return (self.examples - self.start_examples) / max(1e-9, time.perf_counter() - self.started)

    def update(self, step: int, examples: int, loss: float | None) -> None:
        """`examples`: the total seen so far; `loss`: given on logging steps only."""
        self.examples = examples
        if not self.enabled:
            return
        done = step - self.start_step
        eta = (time.perf_counter() - self.started) / max(1, done) * (self.total - step)
        info = f"loss {loss:.4f}  {self.rate:.1f} ex/s" if loss is not None else ""
        if self.bar is not None:
            self.bar.update(self.task, completed=step, info=info)
        if loss is not None and (step % self.log_every == 0 or step == self.total):
            line = f"step {step}/{self.total}  {info}  eta {_clock(eta)}"
            (log.debug if self.bar is not None else log.info)(line)

    def close(self) -> None:
        if self.bar is not None:
            self.bar.stop()
