"""Experiment tracking against real stores: an MLflow SQLite database in tmp_path (read back
with `mlflow.search_runs` and the client), TensorBoard event files (read back with
tensorboard's EventAccumulator), W&B in offline mode where wandb is installed."""

from __future__ import annotations

import json
import os
import signal
import time
from pathlib import Path

import mlflow
import pytest
import yaml
from mlflow import MlflowClient
from mlflow.tracking._tracking_service.utils import _use_tracking_uri

import graftwork
from conftest import tiny_recipe
from graftwork.config.recipe import load_recipe
from graftwork.errors import GraftError, RecipeError
from graftwork.runs import finetune
from graftwork.runs.stages import model_manifest
from graftwork.track import STATE, to_mlflow
from graftwork.track.to_mlflow import recipe_text
from graftwork.track.to_wandb import available as wandb_available
from graftwork.track.tracker import recipe_params
from test_resume_and_parallel import finish, graft, write_recipe
from test_select import graft_main

TRAIN = {"log_every": 5, "eval_every": 10, "threads": 1}


def tracked(tiny_bert, sst2_small, out, uri: str, **over) -> dict:
    tracking = {"mlflow": {"uri": uri, "experiment": "tiny-exp"}, "tensorboard": True}
    return tiny_recipe(tiny_bert, sst2_small, out, train=TRAIN, tracking=tracking, **over)


def runs(uri: str, experiment: str = "tiny-exp"):
    """mlflow.search_runs over the store at `uri` (the global URI is put back after)."""
    with _use_tracking_uri(uri):
        return mlflow.search_runs(experiment_names=[experiment], order_by=["start_time"])


def kill_at_first_checkpoint(proc, run_dir: Path) -> None:
    """SIGKILL `proc` once its run has written a checkpoint (nothing can close its records)."""
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline and proc.poll() is None:
        if any((run_dir / "checkpoints").glob("step-*")):
            os.kill(proc.pid, signal.SIGKILL)
            break
        time.sleep(0.01)
    proc.wait()
    assert proc.returncode == -signal.SIGKILL, "the run ended before it could be killed"


@pytest.fixture(scope="module")
def finished(tiny_bert, sst2_small, tmp_path_factory):
    """One tracked `graft run` (train, bundle, report) of the tiny BERT."""
    out = tmp_path_factory.mktemp("tracked")
    uri = f"sqlite:///{out}/mlruns.db"
    result = finetune.run(tracked(tiny_bert, sst2_small, out, uri))
    return uri, result


def test_mlflow_finds_the_run_with_its_recipe_and_final_metrics(finished):
    uri, result = finished
    found = runs(uri)
    assert len(found) == 1
    run = found.iloc[0]
    assert run["status"] == "FINISHED"
    assert run["tags.mlflow.runName"] == "tiny"
    assert run["params.train.lr"] == "0.001"
    assert run["params.method.type"] == "full"
    assert run["params.data.max_length"] == "64"
    assert run["metrics.eval/accuracy"] == pytest.approx(result.metrics["eval"]["accuracy"])
    train = result.metrics["train"]
    assert run["metrics.system/examples_per_second"] == pytest.approx(train["examples_per_second"])
    assert run["metrics.system/peak_rss_mb"] == pytest.approx(train["memory"]["peak_rss_mb"])
    assert run["metrics.parameters/trainable"] == result.metrics["parameters"]["trainable"]


def test_mlflow_holds_the_loss_and_eval_curves_at_their_steps(finished):
    uri, result = finished
    client = MlflowClient(uri)
    run_id = runs(uri).iloc[0]["run_id"]
    loss = [(m.step, m.value) for m in client.get_metric_history(run_id, "train/loss")]
    assert loss == [
        (step, pytest.approx(value)) for step, value in result.metrics["train"]["loss_history"]
    ]
    curve = [(m.step, m.value) for m in client.get_metric_history(run_id, "eval/accuracy")]
    history = result.metrics["train"]["eval_history"]
    expected = [(step, pytest.approx(m["accuracy"])) for step, m in history]
    assert curve[: len(history)] == expected  # then the final evaluation, at the last step
    lr = client.get_metric_history(run_id, "train/lr")
    assert lr[-1].value < lr[0].value  # linear decay


def test_mlflow_keeps_the_run_files_and_the_bundle_as_a_model(finished):
    uri, result = finished
    client = MlflowClient(uri)
    run_id = runs(uri).iloc[0]["run_id"]
    names = {f.path for f in client.list_artifacts(run_id)}
    assert {"metrics.json", "report.html", "train.log", "recipe.yaml"} <= names
    text = Path(client.download_artifacts(run_id, "recipe.yaml")).read_text(encoding="utf-8")
    assert yaml.safe_load(text)["train"]["eval_every"] == 10
    model_uri = client.get_run(run_id).data.tags["graftwork.model_uri"]
    texts = ["a gripping , funny film", "dull and far too long"]
    with _use_tracking_uri(uri):
        experiment = client.get_run(run_id).info.experiment_id
        models = mlflow.search_logged_models(experiment_ids=[experiment], output_format="list")
        answers = mlflow.pyfunc.load_model(model_uri).predict(texts)
    assert [m.source_run_id for m in models] == [run_id]
    assert answers == graftwork.load(result.bundle).predict(texts)
    assert not (result.run_dir / STATE).exists()  # the run was closed


def test_tensorboard_events_hold_the_curves(finished):
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    _, result = finished
    events = EventAccumulator(str(result.run_dir / "tensorboard"))
    events.Reload()
    scalars = events.Tags()["scalars"]
    assert {"train/loss", "train/lr", "eval/accuracy", "system/examples_per_second"} <= set(scalars)
    loss = [(e.step, e.value) for e in events.Scalars("train/loss")]
    history = result.metrics["train"]["loss_history"]
    assert loss == [(step, pytest.approx(value, rel=1e-6)) for step, value in history]
    assert "recipe/text_summary" in events.Tags()["tensors"]


def test_a_run_that_fails_is_marked_failed_with_its_log(tiny_bert, sst2_small, tmp_path):
    uri = f"sqlite:///{tmp_path}/mlruns.db"
    bad = tmp_path / "dev.tsv"  # a label training never saw: the run fails after it started
    bad.write_text("sentence\tlabel\na fine film\t7\n", encoding="utf-8")
    recipe = tracked(tiny_bert, sst2_small, tmp_path, uri)
    recipe["data"]["eval"] = str(bad)
    with pytest.raises(GraftError):
        finetune.run(recipe)
    run = runs(uri).iloc[0]
    assert run["status"] == "FAILED"
    names = {f.path for f in MlflowClient(uri).list_artifacts(run["run_id"])}
    assert "train.log" in names


def test_a_run_stopped_by_sigterm_is_marked_killed(tiny_bert, sst2_small, tmp_path):
    uri = f"sqlite:///{tmp_path}/mlruns.db"
    recipe = tracked(tiny_bert, sst2_small, tmp_path, uri)
    recipe["train"] = {**recipe["train"], "epochs": 20, "eval_every": 0}
    proc = graft("train", write_recipe(tmp_path / "r.yaml", recipe))
    log = tmp_path / "tiny" / "train.log"
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline and proc.poll() is None:
        if log.is_file() and "step 10/" in log.read_text(encoding="utf-8"):
            proc.send_signal(signal.SIGTERM)
            break
        time.sleep(0.05)
    output, _ = proc.communicate(timeout=120)
    assert proc.returncode == 128 + signal.SIGTERM, output
    run = runs(uri).iloc[0]
    assert run["status"] == "KILLED"
    assert run["metrics.train/loss"] > 0


def test_a_run_killed_outright_is_closed_by_the_next_run_in_its_folder(
    tiny_bert, sst2_small, tmp_path
):
    uri = f"sqlite:///{tmp_path}/mlruns.db"
    recipe = tracked(tiny_bert, sst2_small, tmp_path, uri)
    recipe["train"] = {**recipe["train"], "epochs": 20, "checkpoint_every": 5, "eval_every": 0}
    path = write_recipe(tmp_path / "r.yaml", recipe)
    kill_at_first_checkpoint(graft("train", path), tmp_path / "tiny")
    first = runs(uri).iloc[0]["run_id"]
    assert runs(uri).iloc[0]["status"] == "RUNNING"  # nobody could close it

    recipe["train"]["epochs"] = 1  # a fresh run (--overwrite) in the same folder
    finetune.train(recipe, overwrite=True)
    found = runs(uri).set_index("run_id")
    assert found.loc[first, "status"] == "KILLED"
    assert found.loc[first, "tags.graftwork.end"].startswith("its process ended")
    assert len(found) == 2 and (found["status"] == "FINISHED").sum() == 1


def test_a_resumed_run_continues_its_mlflow_run(tiny_bert, sst2_small, tmp_path):
    uri = f"sqlite:///{tmp_path}/mlruns.db"
    recipe = tracked(tiny_bert, sst2_small, tmp_path, uri)
    recipe["train"] = {**recipe["train"], "epochs": 2, "checkpoint_every": 20, "eval_every": 0}
    path = write_recipe(tmp_path / "r.yaml", recipe)
    kill_at_first_checkpoint(graft("train", path), tmp_path / "tiny")
    finish(graft("train", path, "--resume"))
    found = runs(uri)
    assert len(found) == 1 and found.iloc[0]["status"] == "FINISHED"
    loss = MlflowClient(uri).get_metric_history(found.iloc[0]["run_id"], "train/loss")
    assert max(m.step for m in loss) == 100  # 800 examples / 16 per batch x 2 epochs


def test_a_bad_tracking_uri_is_refused_before_training(tiny_bert, sst2_small, tmp_path):
    recipe = tracked(tiny_bert, sst2_small, tmp_path, "nosuchscheme://x")
    with pytest.raises(GraftError, match="tracking.mlflow"):
        finetune.train(recipe)
    assert not (tmp_path / "tiny" / "bundle").exists()


def test_tracking_keys_are_overridable_and_checked(tmp_path):
    recipe = load_recipe(
        "recipes/quickstart.yaml",
        ["tracking.mlflow.experiment=sst2", "tracking.tensorboard=true", "tracking.wandb=false"],
    )
    assert recipe.tracking.mlflow.experiment == "sst2"
    assert recipe.tracking.mlflow.uri == "sqlite:///mlruns.db"
    assert recipe.tracking.tensorboard is not None and recipe.tracking.wandb is None
    assert not load_recipe("recipes/quickstart.yaml").tracking.enabled
    with pytest.raises(RecipeError, match="tracking.mlflow.experimnt'. Did you mean 'experiment'"):
        load_recipe("recipes/quickstart.yaml", ["tracking.mlflow.experimnt=x"])


@pytest.mark.skipif(wandb_available(), reason="checks the message shown when wandb is missing")
def test_wandb_without_the_package_is_refused_before_training(tiny_bert, sst2_small, tmp_path):
    recipe = tiny_recipe(tiny_bert, sst2_small, tmp_path, tracking={"wandb": True})
    with pytest.raises(GraftError, match="pip install wandb"):
        finetune.train(recipe)


@pytest.mark.skipif(not wandb_available(), reason="wandb is not installed here (optional)")
def test_wandb_offline_writes_the_run_to_the_run_folder(tiny_bert, sst2_small, tmp_path):
    recipe = tiny_recipe(tiny_bert, sst2_small, tmp_path, train=TRAIN, tracking={"wandb": True})
    finetune.train(recipe)
    assert list((tmp_path / "tiny" / "wandb").glob("offline-run-*"))


def test_compare_nests_each_method_under_one_parent_run(tiny_bert, sst2_small, tmp_path):
    from graftwork.runs.compare import compare

    uri = f"sqlite:///{tmp_path}/mlruns.db"
    recipe = tracked(tiny_bert, sst2_small, tmp_path, uri)
    recipe["tracking"]["tensorboard"] = False
    recipe["tracking"]["mlflow"]["log_model"] = False
    rows, _ = compare(write_recipe(tmp_path / "r.yaml", recipe), ["full", "frozen"])
    found = runs(uri).set_index("tags.mlflow.runName")
    parent = found.loc["tiny-compare"]
    assert parent["status"] == "FINISHED"
    for method, row in zip(("full", "frozen"), rows, strict=True):
        child = found.loc[f"tiny-{method}"]
        assert child["tags.mlflow.parentRunId"] == parent["run_id"]
        assert child["tags.graftwork.group"] == "tiny-compare"
        assert parent[f"metrics.{method}/accuracy"] == pytest.approx(row["value"])


def mlflow_is_not_asked(*args, **kwargs):
    raise AssertionError("MLflow was asked (its retries take minutes)")


@pytest.mark.parametrize(
    ("uri", "said"),
    [
        ("http://127.0.0.1:1", "no MLflow server answered within 5 s"),
        ("sqlite:////proc/graft-x.db", "cannot open the SQLite file /proc/graft-x.db"),
    ],
)
def test_a_store_that_cannot_record_is_refused_at_once_before_training(
    tiny_bert, sst2_small, tmp_path, monkeypatch, uri, said
):
    monkeypatch.setattr(to_mlflow, "client", mlflow_is_not_asked)
    recipe = tracked(tiny_bert, sst2_small, tmp_path, uri)
    with pytest.raises(GraftError, match=f"tracking.mlflow.uri '{uri}': {said}"):
        finetune.train(recipe)
    assert not (tmp_path / "tiny" / "bundle").exists()


def test_graft_train_with_an_unreachable_server_is_one_line(
    tiny_bert, sst2_small, tmp_path, monkeypatch, capsys
):
    monkeypatch.setattr(to_mlflow, "client", mlflow_is_not_asked)
    path = write_recipe(tmp_path / "r.yaml", tiny_recipe(tiny_bert, sst2_small, tmp_path))
    over = "tracking.mlflow.uri=http://127.0.0.1:1"
    status, said = graft_main(monkeypatch, capsys, "train", str(path), over)
    assert status == 2 and "Traceback" not in said
    assert "tracking.mlflow.uri 'http://127.0.0.1:1': no MLflow server answered" in said


def test_a_tensorboard_folder_that_cannot_be_made_is_one_line(
    tiny_bert, sst2_small, tmp_path, monkeypatch, capsys
):
    path = write_recipe(tmp_path / "r.yaml", tiny_recipe(tiny_bert, sst2_small, tmp_path))
    over = "tracking.tensorboard.log_dir=/proc/tb"
    status, said = graft_main(monkeypatch, capsys, "train", str(path), over)
    assert status == 2 and "Traceback" not in said
    assert "tracking.tensorboard.log_dir '/proc/tb': cannot write event files" in said


def test_the_tracking_uri_is_recorded_without_its_credentials(tmp_path):
    uri = "https://alice:s3cret@mlflow.example:5000/?token=abc123&region=eu"
    recipe = load_recipe("recipes/quickstart.yaml", [f"tracking.mlflow.uri={uri}"])
    recorded = recipe_params(recipe)["tracking.mlflow.uri"]
    assert recorded == "https://alice:***@mlflow.example:5000/?token=***&region=eu"
    assert "s3cret" not in recipe_text(recipe) and "abc123" not in recipe_text(recipe)
    manifest = json.dumps(model_manifest(recipe, ["negative", "positive"]))
    assert "s3cret" not in manifest and "abc123" not in manifest  # the bundle keeps none either
    bare = load_recipe("recipes/quickstart.yaml", ["tracking.mlflow.uri=https://tok3n@host"])
    assert recipe_params(bare)["tracking.mlflow.uri"] == "https://***@host"


def test_a_variable_in_the_uri_is_used_expanded_and_recorded_as_written(
    tiny_bert, sst2_small, tmp_path, monkeypatch
):
    monkeypatch.setenv("GRAFT_TEST_DB_X", str(tmp_path / "mlruns.db"))
    recipe = tracked(tiny_bert, sst2_small, tmp_path, "sqlite:///${GRAFT_TEST_DB_X}")
    recipe["tracking"]["tensorboard"] = False
    recipe["tracking"]["mlflow"]["log_model"] = False
    recipe["train"]["epochs"] = 0.25
    finetune.train(recipe)
    found = runs(f"sqlite:///{tmp_path}/mlruns.db")
    assert found.iloc[0]["params.tracking.mlflow.uri"] == "sqlite:///${GRAFT_TEST_DB_X}"


@pytest.fixture
def server():
    """A local HTTP server answering every request with the status in `server.status`."""
    import threading
    from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

    class Answer(BaseHTTPRequestHandler):
        def do_GET(self):  # noqa: N802 (the handler's name)
            self.send_response(httpd.status)
            self.end_headers()

        def log_message(self, *args):
            pass

    httpd = ThreadingHTTPServer(("127.0.0.1", 0), Answer)
    threading.Thread(target=httpd.serve_forever, daemon=True).start()
    yield httpd
    httpd.shutdown()


def test_a_server_that_answers_passes_the_probe_unless_it_fails(server):
    uri = f"http://127.0.0.1:{server.server_address[1]}"
    server.status = 401  # it answers (MLflow's credentials are its own business)
    to_mlflow.probe(uri)
    server.status = 503
    with pytest.raises(GraftError, match="the MLflow server answered 503"):
        to_mlflow.probe(uri)
