"""Experiment tracking: a run recorded in MLflow, TensorBoard and/or W&B (recipe `tracking:`).

A tracked run's record spans the outermost function marked `@whole_run` (`graft run` keeps
it open through training, compression and the report): `begin` (called by
`runs.lifecycle.start` once the recipe is read) opens it in the main process, `current(run_dir)`
finds it from anywhere in the run, and the decorator closes it with the run's outcome:

- FINISHED when the function returns;
- FAILED when it raises;
- KILLED on Ctrl-C, on SIGTERM (turned into `SystemExit(143)` for the length of the run, so
  the record is closed on the way out), and when a tuner stops the run (`Stopped`).

A process killed outright (SIGKILL, a power cut) cannot close anything; the run folder's
`.tracking.json` names the open MLflow run, and the next run in that folder marks it KILLED
before opening its own, or continues it when resuming (`--resume`).

Trackers connect with the tracking fields' variables expanded (`Recipe.expanded`), and record
the recipe as written, credentials hidden (`tracker.public_uri`), as messages and logs show
the URI. An MLflow store is probed once before the run opens (`to_mlflow.probe`: no waiting
out MLflow's retries), and a TensorBoard folder that cannot be made is a one-line error.

`group` opens the parent record of several runs (`graft compare`, `graft tune`): its runs nest
under it (MLflow `mlflow.parentRunId`) and share its name (tag graftwork.group, W&B group).
What each tracker records is in `tracker.py`. Stages that train another folder inside a run
(the student of a compression chain) are not recorded separately.
"""

from __future__ import annotations

import functools
import json
import logging
import signal
import threading
from contextlib import contextmanager
from contextvars import ContextVar
from dataclasses import dataclass
from pathlib import Path

from graftwork.bundle import atomic
from graftwork.errors import GraftError
from graftwork.track.tracker import (
    FAILED,
    FINISHED,
    KILLED,
    NOTHING,
    Tracker,
    public_uri,
    recipe_params,
)

log = logging.getLogger("graftwork")

STATE = ".tracking.json"  # in the run folder: the MLflow run this folder's run has open


class Stopped(Exception):  # noqa: N818  (a stop asked for, not an error)
    """Raised (e.g. from an `on_eval` hook) to end a run on purpose before its end, as a tuner
    prunes a trial: the record is closed as KILLED with tag graftwork.stopped, not FAILED."""


@dataclass
class _Span:
    tracker: Tracker | None = None
    run_dir: Path | None = None


_span: ContextVar[_Span | None] = ContextVar("graftwork_track_span", default=None)


def _terminate(signum, frame):
    raise SystemExit(128 + signum)


def whole_run(function):
    """Keep a tracked run's record open during `function` and close it with its outcome
    (only the outermost such function closes it)."""

    @functools.wraps(function)
    def run(*args, **kwargs):
        if _span.get() is not None:
            return function(*args, **kwargs)
        span = _Span()
        token = _span.set(span)
        previous = None
        main_thread = threading.current_thread() is threading.main_thread()
        if main_thread and signal.getsignal(signal.SIGTERM) == signal.SIG_DFL:
            previous = signal.signal(signal.SIGTERM, _terminate)
        status, reason = FAILED, None
        try:
            result = function(*args, **kwargs)
            status = FINISHED
            return result
        except Stopped as exc:
            status, reason = KILLED, str(exc) or "stopped"
            raise
        except (KeyboardInterrupt, SystemExit):
            status = KILLED
            raise
        finally:
            if previous is not None:
                signal.signal(signal.SIGTERM, previous)
            _span.reset(token)
            if span.tracker is not None:
                _close(span, status, reason)

    return run


def _close(span: _Span, status: str, reason: str | None) -> None:
    tracker = span.tracker
    for sink in tracker.sinks:
        if reason is not None and hasattr(sink, "tag"):
            sink.tag("graftwork.stopped", reason)
    tracker.end(status)
    state = span.run_dir / STATE
    if status == FINISHED and state.is_file():
        state.unlink()


def current(run_dir: Path) -> Tracker:
    """The open record of the run writing `run_dir` (a tracker recording nothing if none)."""
    span = _span.get()
    if span is None or span.tracker is None or span.run_dir != Path(run_dir):
        return NOTHING
    return span.tracker


def begin(recipe, main: bool = True, resume: bool = False) -> Tracker:
    """Open the run's record in every tracker its recipe names (main process, inside a
    `@whole_run` function; elsewhere nothing is recorded). Errors opening a tracker (a bad
    URI, a missing package) are raised now, before training."""
    span = _span.get()
    cfg = getattr(recipe, "tracking", None)
    if span is None or not main or cfg is None or not cfg.enabled:
        return NOTHING
    if span.tracker is not None:  # a stage inside the run, in its own folder or not
        return current(recipe.run_dir)
    run_dir = Path(recipe.run_dir)
    run_dir.mkdir(parents=True, exist_ok=True)
    sinks = []
    try:
        sinks = _open_sinks(recipe, run_dir, resume)
    except BaseException:
        for sink in sinks:
            sink.end(FAILED)
        raise
    span.tracker, span.run_dir = Tracker(sinks, run_dir), recipe.run_dir
    return span.tracker


def _open_sinks(recipe, run_dir: Path, resume: bool) -> list:
    from graftwork.track.to_mlflow import recipe_text  # optional: mlflow

    cfg, params, text = recipe.expanded("tracking"), recipe_params(recipe), recipe_text(recipe)
    sinks = []
    if cfg.mlflow is not None:
        sinks.append(_mlflow_sink(recipe, cfg, run_dir, params, text, resume))
    if cfg.tensorboard is not None:
        from graftwork.track.to_tensorboard import TensorBoardSink  # optional: tensorboard

        log_dir = cfg.tensorboard.log_dir
        folder = recipe.resolve_path(log_dir) if log_dir else run_dir / "tensorboard"
        try:
            sinks.append(TensorBoardSink(folder, params, text))
        except OSError as exc:
            given = recipe.tracking.tensorboard.log_dir
            where = f"tracking.tensorboard.log_dir {given!r}" if given else "tracking.tensorboard"
            raise GraftError(
                f"{where}: cannot write event files in {folder} ({exc.strerror or exc}); give "
                "a writable folder (tracking.tensorboard.log_dir=…)"
            ) from None
    if cfg.wandb is not None:
        from graftwork.track.to_wandb import WandbSink  # optional: wandb

        sinks.append(WandbSink(cfg.wandb, run_dir, recipe.name, params, cfg.group))
    return sinks


def _mlflow_sink(recipe, tracking, run_dir: Path, params: dict, text: str, resume: bool):
    """A new MLflow run, or the folder's open one continued (`--resume`); an open one left
    by a killed process is marked KILLED first. `tracking`: the section, variables expanded."""
    from graftwork.track.to_mlflow import MlflowSink, probe  # optional: mlflow

    cfg, shown = tracking.mlflow, public_uri(recipe.tracking.mlflow.uri)
    probe(cfg.uri)
    state_file = run_dir / STATE
    try:
        earlier = json.loads(state_file.read_text(encoding="utf-8")) if state_file.is_file() else {}
        if earlier.get("uri") == shown and earlier.get("run_id"):
            old = MlflowSink(cfg.uri, earlier["run_id"])
            if resume:
                log.info("tracking: continuing MLflow run %s", old.run_id)
                return old.reopen(cfg.uri, old.run_id, cfg.log_model)
            if old.status() == "RUNNING":
                old.tag("graftwork.end", "its process ended without closing the run")
                old.end(KILLED)
        tags = {
            "mlflow.source.name": "graft",
            "graftwork.run_dir": str(run_dir.resolve()),
            **({"graftwork.group": tracking.group} if tracking.group else {}),
            **({"graftwork.recipe_file": recipe.source} if recipe.source else {}),
        }
        experiment = cfg.experiment or recipe.name
        sink = MlflowSink.create(cfg, experiment, recipe.name, params, tags, text)
    except GraftError:
        raise
    except Exception as exc:
        raise GraftError(
            f"tracking.mlflow: MLflow could not record the run at {shown!r} "
            f"({type(exc).__name__}: {exc}); fix tracking.mlflow.uri or remove tracking.mlflow"
        ) from None
    atomic.write_json(state_file, {"uri": shown, "run_id": sink.run_id})
    log.info("tracking: MLflow run %s in experiment %r (%s)", sink.run_id, experiment, shown)
    return sink


class Group:
    """The parent record of several runs (graft compare, graft tune)."""

    def __init__(self, sink, name: str, experiment: str | None = None):
        self.sink, self.name, self.experiment = sink, name, experiment
        self.tracker = Tracker([sink] if sink is not None else [])

    @property
    def run_id(self) -> str | None:
        return None if self.sink is None else self.sink.run_id

    def overrides(self) -> list[str]:
        """Recipe overrides that put a run into this group (and its MLflow experiment)."""
        found = [f"tracking.group={self.name}"]
        if self.sink is not None:
            found.append(f"tracking.mlflow.parent_run={self.sink.run_id}")
            found.append(f"tracking.mlflow.experiment={json.dumps(self.experiment)}")
        return found


@contextmanager
def group(recipe, name: str, kind: str, params: dict | None = None, run_id: str | None = None):
    """A parent MLflow run named `name` for the runs of a `kind` ("compare", "tune") of
    `recipe` (continued when `run_id` is given): yields a `Group`, closed with the outcome."""
    cfg = recipe.expanded("tracking")
    sink, experiment = None, None
    if cfg.mlflow is not None:
        experiment = cfg.mlflow.experiment or recipe.name
        from graftwork.track.to_mlflow import MlflowSink, probe  # optional: mlflow

        probe(cfg.mlflow.uri)
        try:
            if run_id is not None:
                sink = MlflowSink.reopen(cfg.mlflow.uri, run_id)
            else:
                tags = {"graftwork.kind": kind, "graftwork.group": name}
                flat = {**recipe_params(recipe), **{k: str(v) for k, v in (params or {}).items()}}
                sink = MlflowSink.create(cfg.mlflow, experiment, name, flat, tags)
        except Exception as exc:
            raise GraftError(
                f"tracking.mlflow: MLflow could not record the {kind} at "
                f"{public_uri(recipe.tracking.mlflow.uri)!r} "
                f"({type(exc).__name__}: {exc}); fix tracking.mlflow.uri or remove it"
            ) from None
    found = Group(sink, name, experiment)
    status = FAILED
    try:
        yield found
        status = FINISHED
    except (KeyboardInterrupt, SystemExit):
        status = KILLED
        raise
    finally:
        found.tracker.end(status)
