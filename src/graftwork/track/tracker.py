"""One run's record in every tracker the recipe names (MLflow, TensorBoard, W&B).

A `Tracker` fans each record out to its sinks (`to_mlflow`, `to_tensorboard`, `to_wandb`),
which all take the same five calls: `metrics(values, step)`, `artifact(path)`,
`model(bundle)`, `end(status)` and, where they keep it, the recipe as parameters when they
open. What is recorded, under which names:

- parameters: the recipe flattened to its dotted keys (`train.lr`, `method.type`), as written
  (a `${VAR}` stays as it is) and without credentials: in every value holding a URI, the
  password of `user:password@` (or a lone token before `@`) and query parameters named like a
  secret (token, key, password, signature, …) read `***`; the same for recipe.yaml;
- per logging step: `train/loss`, `train/lr`, `train/examples_per_second`;
- per evaluation during training (`train.eval_every`): `eval/<metric>` at its step;
- at the end: every number of the run's metrics.json, flattened (`eval/accuracy`,
  `parameters/trainable`), the system figures under `system/` (examples/s, seconds, peak
  resident and heap memory, GPU peak), and the files metrics.json, report.html and train.log
  of the run folder (those this run wrote; train.log also when the run failed);
- the bundle, as a model (MLflow: a pyfunc model; W&B: a model artifact).

A sink that fails after the run started (a tracking server gone away) is reported once in the
log and dropped: tracking never ends a training run. Opening a sink fails loudly instead
(`graftwork.track.begin`), before any training.
"""

from __future__ import annotations

import json
import logging
import math
import re
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

log = logging.getLogger("graftwork")

# numbers of metrics.json["train"] that are system figures rather than results
SYSTEM = ("examples_per_second", "seconds")
# run-folder files recorded at the end of a run (when this run wrote them)
FILES = ("metrics.json", "report.html", "train.log")
# end states, as MLflow names them
FINISHED, FAILED, KILLED = "FINISHED", "FAILED", "KILLED"
# query parameters of a URI whose values are secrets
SECRET = re.compile(r"token|key|secret|passw|pwd|auth|signature|sig$|credential", re.IGNORECASE)
HIDDEN = "***"
QUERY_PAIR = re.compile(r"(?P<lead>[?&;])(?P<key>[^=&;#]+)=(?P<value>[^&;#]*)")


def flatten(value: Any, prefix: str = "", sep: str = ".") -> dict[str, Any]:
    """Nested mappings as one level of `sep`-joined keys; other values as they are."""
    if not isinstance(value, dict):
        return {prefix: value} if prefix else {}
    out: dict[str, Any] = {}
    for key, item in value.items():
        out.update(flatten(item, f"{prefix}{sep}{key}" if prefix else str(key), sep))
    return out


def public_uri(text: str) -> str:
    """`text` with the credentials of a URI in it hidden (`user:***@`, `***@`, `token=***`);
    other text as it is."""
    scheme, sep, rest = text.partition("://")
    if not sep:
        return text
    end = min([i for i in (rest.find(c) for c in "/?#") if i >= 0], default=len(rest))
    authority, rest = rest[:end], rest[end:]
    if "@" in authority:
        userinfo, host = authority.rsplit("@", 1)
        user, colon, _ = userinfo.partition(":")
        authority = f"{user}:{HIDDEN}@{host}" if colon else f"{HIDDEN}@{host}"
    rest = QUERY_PAIR.sub(
        lambda m: m[0] if not SECRET.search(m["key"]) else f"{m['lead']}{m['key']}={HIDDEN}", rest
    )
    return f"{scheme}://{authority}{rest}"


def _public(value: Any) -> Any:
    if isinstance(value, str):
        return public_uri(value)
    if isinstance(value, dict):
        return {k: _public(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_public(v) for v in value]
    return value


def recipe_record(recipe) -> dict:
    """The recipe as trackers record it: as written, the credentials of URIs hidden."""
    return _public(recipe.model_dump(mode="json"))


def recipe_params(recipe) -> dict[str, str]:
    """The recipe as tracker parameters: dotted keys, values as text (lists as JSON)."""
    flat = flatten(recipe_record(recipe))
    return {k: v if isinstance(v, str) else json.dumps(v) for k, v in flat.items()}


def final_metrics(metrics: dict) -> dict[str, float]:
    """metrics.json's numbers as `section/key` metrics; training speed and memory as
    `system/...`. Lists (histories, confusion matrices) and text are left out."""
    metrics = dict(metrics)
    train = dict(metrics.pop("train", {}) or {})
    system = {key: train.pop(key, None) for key in SYSTEM}
    system.update(train.pop("memory", {}) or {})
    train.pop("machine", None)
    flat = flatten({**metrics, "train": train, "system": system}, sep="/")
    return {key: float(v) for key, v in flat.items() if _number(v)}


def _number(value: Any) -> bool:
    return (
        isinstance(value, (int, float))
        and not isinstance(value, bool)
        and math.isfinite(float(value))
    )


def metric_name(key: str) -> str:
    """A metric key every tracker accepts (letters, digits, `_-./ `)."""
    return re.sub(r"[^\w\-./ ]", "_", key)


class Tracker:
    """The sinks of one run (none: a tracker that records nothing)."""

    def __init__(self, sinks: list | None = None, run_dir: Path | None = None):
        self.sinks = list(sinks or [])
        self.run_dir = Path(run_dir) if run_dir is not None else None
        self.started = time.time()
        self.last_step = 0
        self.ended = False

    @property
    def active(self) -> bool:
        return bool(self.sinks)

    def _each(self, action: str, call: Callable[[object], None]) -> None:
        for sink in list(self.sinks):
            try:
                call(sink)
            except Exception as exc:  # noqa: BLE001  (tracking must not end a training run)
                log.warning(
                    "tracking: %s could not %s (%s: %s); it records nothing more for this run",
                    sink.NAME,
                    action,
                    type(exc).__name__,
                    exc,
                )
                self.sinks.remove(sink)

    def metrics(self, values: dict[str, float], step: int) -> None:
        values = {metric_name(k): float(v) for k, v in values.items() if _number(v)}
        if values and self.sinks:
            self.last_step = max(self.last_step, step)
            self._each("record metrics", lambda sink: sink.metrics(values, step))

    def on_log(self, step: int, values: dict[str, float]) -> None:
        """The training loop's logging steps: loss, learning rate, examples/s."""
        self.metrics({f"train/{k}": v for k, v in values.items()}, step)

    def on_eval(self, step: int, metrics: dict) -> None:
        """An evaluation during training: the eval split's metrics at `step`."""
        self.metrics({f"eval/{k}": v for k, v in flatten(metrics, sep="/").items()}, step)

    def chain(self, on_eval: Callable[[int, dict], object] | None):
        """`on_eval` for the training loop: this tracker's, then the caller's (which may
        raise to stop the run, after the evaluation is recorded); None when neither records."""
        if not self.sinks:
            return on_eval

        def both(step: int, metrics: dict) -> None:
            self.on_eval(step, metrics)
            if on_eval is not None:
                on_eval(step, metrics)

        return both

    def artifact(self, path: Path) -> None:
        if self.sinks and Path(path).exists():
            self._each(f"store {Path(path).name}", lambda sink: sink.artifact(Path(path)))

    def model(self, bundle: Path) -> None:
        """The run's bundle, as each tracker keeps models."""
        if self.sinks:
            self._each("store the bundle", lambda sink: sink.model(Path(bundle)))

    def end(self, status: str) -> None:
        """Record the run folder's results and files (those written since the run began),
        then close every sink with `status` (FINISHED, FAILED or KILLED)."""
        if self.ended:
            return
        self.ended = True
        if self.run_dir is not None and self.sinks:
            written = {
                name: self.run_dir / name
                for name in FILES
                if (self.run_dir / name).is_file()
                and (self.run_dir / name).stat().st_mtime >= self.started - 1
            }
            if "metrics.json" in written:
                data = json.loads(written["metrics.json"].read_text(encoding="utf-8"))
                self.metrics(final_metrics(data), self.last_step)
            for path in written.values():
                self.artifact(path)
        self._each("close the run", lambda sink: sink.end(status))
        if status != FINISHED and self.sinks:
            log.info("tracking: run recorded as %s", status)


NOTHING = Tracker()  # what `current` returns where nothing is tracked
