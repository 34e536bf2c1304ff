"""A run in MLflow, through `MlflowClient` (no global active run, so runs nest and tests are
isolated): the experiment (created if new), the recipe as parameters and as recipe.yaml,
metrics with their steps, files as artifacts, the bundle as a logged pyfunc model
(`mlflow_model.py`, "models from code") linked to the run, and the end status.

The default store is a SQLite file (`sqlite:///mlruns.db`); an experiment created here keeps
its artifacts in `mlartifacts/` beside that file unless `tracking.mlflow.artifacts` says
otherwise (MLflow's own default would be a folder in whatever the current directory is).

Before a run opens, `probe` tries the store once, with a short timeout and no retries: a
server that does not answer (or answers 5xx) and a SQLite file that cannot be opened are one
error at once, where MLflow would retry for minutes first. Left out of the probe: other
database stores (PostgreSQL, MySQL), which MLflow's own retries cover.
Left out: MLflow's system-metrics sampler (the run records its own measured speed and
memory) and the model registry (register a logged model with `mlflow.register_model`).
"""

from __future__ import annotations

import logging
import os
import sqlite3
import time
import warnings
from pathlib import Path

import yaml

from graftwork.errors import GraftError
from graftwork.track.tracker import public_uri, recipe_record

log = logging.getLogger("graftwork")

SQLITE = "sqlite:///"
MODEL_CODE = Path(__file__).with_name("mlflow_model.py")
BAR = "MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR"
PROBE_SECONDS = 5  # how long `probe` waits for a tracking server
SEARCH = "/api/2.0/mlflow/experiments/search"  # what `probe` asks a server


def probe(uri: str) -> None:
    """Try the store at `uri` once (see the module docstring); a GraftError saying what failed."""
    shown = public_uri(uri)
    if uri.startswith(("http://", "https://")):
        import requests

        try:
            answer = requests.get(
                uri.rstrip("/") + SEARCH, params={"max_results": 1}, timeout=PROBE_SECONDS
            )
        except requests.exceptions.SSLError:
            return  # it answered; MLflow's own TLS settings (MLFLOW_TRACKING_*) decide the rest
        except requests.RequestException as exc:
            raise GraftError(
                f"tracking.mlflow.uri {shown!r}: no MLflow server answered within "
                f"{PROBE_SECONDS} s ({type(exc).__name__}); start the server, fix the URI, or "
                "remove tracking.mlflow"
            ) from None
        if answer.status_code >= 500:
            raise GraftError(
                f"tracking.mlflow.uri {shown!r}: the MLflow server answered {answer.status_code}"
                "; check the server, or remove tracking.mlflow"
            )
    elif uri.startswith(SQLITE) and uri[len(SQLITE) :].split("?")[0] not in ("", ":memory:"):
        path = Path(uri[len(SQLITE) :].split("?")[0])
        try:
            path.parent.mkdir(parents=True, exist_ok=True)  # as MLflow does
            db = sqlite3.connect(path, timeout=PROBE_SECONDS)
            try:
                db.execute("select count(*) from sqlite_master").fetchall()
            finally:
                db.close()
        except (OSError, sqlite3.Error) as exc:
            raise GraftError(
                f"tracking.mlflow.uri {shown!r}: cannot open the SQLite file {path} ({exc}); "
                "give a file in a writable folder, e.g. sqlite:///mlruns.db"
            ) from None


def client(uri: str):
    from mlflow import MlflowClient

    return MlflowClient(tracking_uri=uri)


def artifact_root(uri: str, given: str | None) -> str | None:
    """Where a new experiment keeps artifacts: as given, else mlartifacts/ beside a SQLite
    database (None: the store's own default)."""
    if given:
        return given if "://" in given else Path(given).resolve().as_uri()
    if uri.startswith(SQLITE):
        return (Path(uri[len(SQLITE) :]).resolve().parent / "mlartifacts").as_uri()
    return None


def experiment_id(mlflow_client, name: str, artifacts: str | None) -> str:
    found = mlflow_client.get_experiment_by_name(name)
    if found is None:
        return mlflow_client.create_experiment(name, artifact_location=artifacts)
    if found.lifecycle_stage == "deleted":
        raise GraftError(
            f"tracking.mlflow.experiment {name!r} is deleted in the MLflow store; restore it "
            "(mlflow experiments restore) or choose another name"
        )
    return found.experiment_id


class MlflowSink:
    NAME = "MLflow"

    def __init__(self, uri: str, run_id: str, log_model: bool = True):
        self.uri = uri
        self.run_id = run_id
        self.log_model = log_model
        self.client = client(uri)

    @classmethod
    def create(
        cls,
        cfg,
        experiment: str,
        run_name: str,
        params: dict[str, str],
        tags: dict[str, str],
        recipe_yaml: str | None = None,
    ) -> MlflowSink:
        """A new run in `experiment` holding `params`, `tags` and the recipe as recipe.yaml."""
        from mlflow.entities import Param
        from mlflow.utils.validation import MAX_PARAM_VAL_LENGTH, MAX_PARAMS_TAGS_PER_BATCH

        mlflow_client = client(cfg.uri)
        exp = experiment_id(mlflow_client, experiment, artifact_root(cfg.uri, cfg.artifacts))
        tags = {**tags, **cfg.tags}
        if cfg.parent_run:
            tags["mlflow.parentRunId"] = cfg.parent_run
        run = mlflow_client.create_run(exp, run_name=run_name, tags=tags)
        sink = cls(cfg.uri, run.info.run_id, cfg.log_model)
        items = [Param(k, v[:MAX_PARAM_VAL_LENGTH]) for k, v in params.items()]
        for start in range(0, len(items), MAX_PARAMS_TAGS_PER_BATCH):
            chunk = items[start : start + MAX_PARAMS_TAGS_PER_BATCH]
            mlflow_client.log_batch(sink.run_id, params=chunk, tags=[])
        if recipe_yaml is not None:
            mlflow_client.log_text(sink.run_id, recipe_yaml, "recipe.yaml")
        return sink

    @classmethod
    def reopen(cls, uri: str, run_id: str, log_model: bool = True) -> MlflowSink:
        """Continue an earlier run (a resumed training run)."""
        sink = cls(uri, run_id, log_model)
        sink.client.update_run(run_id, status="RUNNING")
        return sink

    def status(self) -> str:
        return self.client.get_run(self.run_id).info.status

    def metrics(self, values: dict[str, float], step: int) -> None:
        from mlflow.entities import Metric

        now = int(time.time() * 1000)
        items = [Metric(key, value, now, step) for key, value in values.items()]
        for start in range(0, len(items), 1000):
            self.client.log_batch(self.run_id, metrics=items[start : start + 1000])

    def tag(self, key: str, value: str) -> None:
        self.client.set_tag(self.run_id, key, value)

    def artifact(self, path: Path) -> None:
        if path.is_dir():
            self.client.log_artifacts(self.run_id, str(path), path.name)
        else:
            self.client.log_artifact(self.run_id, str(path))

    def model(self, bundle: Path) -> None:
        """The bundle as a pyfunc model linked to this run (its `models:/` URI is the run's tag
        graftwork.model_uri): `mlflow.pyfunc.load_model(URI).predict(texts)` gives
        `graftwork.load`'s answers (graftwork must be installed where it is loaded). Nothing
        with `tracking.mlflow.log_model: false`."""
        if not self.log_model:
            return
        log.info("tracking: logging the bundle %s as an MLflow model", bundle)
        import mlflow
        from mlflow.tracking._tracking_service.utils import _use_tracking_uri

        run = self.client.get_run(self.run_id)
        # models are logged through the fluent API: point it at this store for the call only
        # (and leave no MLFLOW_TRACKING_URI behind, which set_tracking_uri would); no run is
        # made active, so the run's status stays ours to set
        progress_bar = os.environ.get(BAR)
        os.environ[BAR] = "false"  # nor its progress bar over the files it reads back
        try:
            with _use_tracking_uri(self.uri), warnings.catch_warnings():
                # MLflow's own notes about the model (type hints, pickling) are not the user's
                # business; its logging resets the filters, so they are dropped unseen
                warnings.showwarning = lambda *args, **kwargs: None
                logged = mlflow.initialize_logged_model(
                    name="model", source_run_id=self.run_id, experiment_id=run.info.experiment_id
                )
                info = mlflow.pyfunc.log_model(
                    name="model",
                    python_model=str(MODEL_CODE),
                    artifacts={"bundle": str(bundle)},
                    pip_requirements=["graftwork"],
                    model_id=logged.model_id,
                )
        finally:
            if progress_bar is None:
                os.environ.pop(BAR, None)
            else:
                os.environ[BAR] = progress_bar
        self.tag("graftwork.model_uri", info.model_uri)

    def end(self, status: str) -> None:
        self.client.set_terminated(self.run_id, status)


def recipe_text(recipe) -> str:
    """The recipe as recipe.yaml records it: as written, credentials left out."""
    return yaml.safe_dump(recipe_record(recipe), sort_keys=False, allow_unicode=True)
