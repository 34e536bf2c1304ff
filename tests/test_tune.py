"""`graft tune`: the search space checked against the recipe, trials as normal runs, pruning at
the evaluations during training, resumable and shared studies, the outputs and their grouping
in MLflow. Mechanics on the tiny BERT; one slow study of the real MiniLM on SST-2."""

from __future__ import annotations

import json
import subprocess
import sys

import mlflow
import optuna
import pytest
import yaml
from mlflow.tracking._tracking_service.utils import _use_tracking_uri

from conftest import DATA, head, tiny_recipe
from graftwork.config.recipe import load_recipe
from graftwork.errors import GraftError, RecipeError
from graftwork.runs import tune as tuning
from graftwork.runs.space import read_space
from test_resume_and_parallel import write_recipe
from test_select import graft_main

SPACE = {
    "train.lr": {"low": 1e-3, "high": 3e-2, "log": True},
    "train.batch_size": {"choices": [16, 32]},
}


@pytest.fixture
def files(tiny_bert, sst2_small, tmp_path):
    """A tiny recipe (evaluating every 10 steps) and a space file; their paths."""
    train = {"log_every": 10, "eval_every": 10, "threads": 1}
    recipe = write_recipe(
        tmp_path / "r.yaml", tiny_recipe(tiny_bert, sst2_small, tmp_path, train=train)
    )
    space = tmp_path / "space.yaml"
    space.write_text(yaml.safe_dump(SPACE))
    return recipe, space


def space_error(tmp_path, recipe, space: dict) -> str:
    path = tmp_path / "bad-space.yaml"
    path.write_text(yaml.safe_dump(space))
    with pytest.raises(RecipeError) as caught:
        read_space(path, recipe, [])
    return str(caught.value)


def test_an_unknown_key_is_located_with_a_suggestion(files, tmp_path):
    message = space_error(tmp_path, files[0], {"train.lrr": {"low": 0.1, "high": 0.2}})
    assert "bad-space.yaml, key train.lrr" in message
    assert "Did you mean 'lr'" in message


def test_a_range_the_recipe_refuses_is_located(files, tmp_path):
    message = space_error(tmp_path, files[0], {"train.warmup": {"low": 0.0, "high": 1.5}})
    assert "key train.warmup" in message and "train.warmup=1.5" in message
    assert "less than 1" in message


@pytest.mark.parametrize(
    ("spec", "said"),
    [
        ({"low": 16.0, "high": 64.0}, "whole number"),
        ({"low": 64, "high": 16}, "must be below high"),
        ({"low": 16}, "high: Field required"),
        ({"choices": []}, "choices"),
        ({"low": 8, "high": 64, "log": True, "step": 8}, "either log"),
    ],
)
def test_bad_ranges_are_located(files, tmp_path, spec, said):
    message = space_error(tmp_path, files[0], {"train.batch_size": spec})
    assert "key train.batch_size" in message and said in message


def test_keys_the_tuner_sets_are_refused(files, tmp_path):
    message = space_error(tmp_path, files[0], {"output_dir": {"choices": ["a", "b"]}})
    assert "the tuner sets output_dir" in message


def test_trials_are_runs_and_the_best_recipe_is_written(files, tmp_path):
    recipe, space = files
    uri = f"sqlite:///{tmp_path}/mlruns.db"
    overrides = [f"tracking.mlflow.uri={uri}", "tracking.mlflow.log_model=false"]
    summary = tuning.tune(recipe, space, 3, overrides, pruner="none")
    folder = tmp_path / "tiny-tune"
    assert summary["counts"] == {"complete": 3, "pruned": 0, "failed": 0}
    for row in summary["trials"]:
        run = folder / f"trial-{row['number']:04d}"
        metrics = json.loads((run / "metrics.json").read_text())
        assert metrics["eval"]["accuracy"] == row["value"]  # each trial is a normal run
        assert (run / "bundle").is_dir() and (run / "report.html").is_file()
        assert metrics["train"]["examples_seen"] == 800
    best = max(summary["trials"], key=lambda r: r["value"])
    assert summary["best"]["number"] == best["number"]
    written = load_recipe(folder / "best.yaml")
    assert written.train.lr == best["params"]["train.lr"]
    assert written.train.batch_size == best["params"]["train.batch_size"]
    assert written.train.eval_every == 10 and written.name == "tiny"
    assert json.loads((folder / "tune.json").read_text())["best"] == summary["best"]
    page = (folder / "report.html").read_text()
    assert page.count("<svg") >= 3  # history, intermediate values, importances

    with _use_tracking_uri(uri):
        found = mlflow.search_runs(experiment_names=["tiny"]).set_index("tags.mlflow.runName")
    parent = found.loc["tiny-tune"]
    assert parent["status"] == "FINISHED"
    assert parent["metrics.best/accuracy"] == pytest.approx(summary["best"]["value"])
    for row in summary["trials"]:
        child = found.loc[f"trial-{row['number']:04d}"]
        assert child["tags.mlflow.parentRunId"] == parent["run_id"]
        assert child["tags.optuna_trial"] == str(row["number"])
        assert float(child["params.train.lr"]) == pytest.approx(row["params"]["train.lr"])


def test_a_pruned_trial_stops_at_its_evaluation(files, tmp_path, monkeypatch):
    recipe, space = files
    # a pruner that stops every trial at its first evaluation: the mechanics, deterministic
    monkeypatch.setattr(tuning, "make_pruner", lambda name: optuna.pruners.ThresholdPruner(lower=2))
    uri = f"sqlite:///{tmp_path}/mlruns.db"
    summary = tuning.tune(recipe, space, 2, [f"tracking.mlflow.uri={uri}"])
    assert summary["counts"] == {"complete": 0, "pruned": 2, "failed": 0}
    assert summary["best"] is None
    for row in summary["trials"]:
        batch = row["params"]["train.batch_size"]
        assert row["examples_seen"] == 10 * batch  # stopped at step 10, the first evaluation
        run = tmp_path / "tiny-tune" / f"trial-{row['number']:04d}"
        assert not (run / "bundle").exists() and not (run / "checkpoints").exists()
        assert "step 10: eval accuracy" in (run / "train.log").read_text()
    assert not (tmp_path / "tiny-tune" / "best.yaml").exists()
    with _use_tracking_uri(uri):
        found = mlflow.search_runs(experiment_names=["tiny"])
    trials = found[found["tags.mlflow.runName"].str.startswith("trial-")]
    assert set(trials["status"]) == {"KILLED"}
    assert all(trials["tags.graftwork.stopped"].str.startswith("pruned by the tuner at step 10"))


def test_a_study_in_storage_resumes_up_to_its_trials(files, tmp_path):
    recipe, space = files
    storage = f"sqlite:///{tmp_path}/tune.db"
    tuning.tune(recipe, space, 2, storage=storage, pruner="none")
    summary = tuning.tune(recipe, space, 3, storage=storage, pruner="none")
    assert [r["number"] for r in summary["trials"]] == [0, 1, 2]
    again = tuning.tune(recipe, space, 3, storage=storage, pruner="none")  # nothing left to do
    assert again["trials"] == summary["trials"]


def test_a_stored_study_refuses_another_space(files, tmp_path):
    recipe, space = files
    storage = f"sqlite:///{tmp_path}/tune.db"
    tuning.tune(recipe, space, 1, storage=storage, pruner="none")
    other = tmp_path / "other.yaml"
    other.write_text(yaml.safe_dump({"train.lr": {"low": 1e-3, "high": 1e-2}}))
    with pytest.raises(Exception, match="another search space"):
        tuning.tune(recipe, other, 2, storage=storage, pruner="none")


def test_two_workers_share_one_study(files, tmp_path):
    recipe, space = files
    storage = f"sqlite:///{tmp_path}/tune.db"
    command = [sys.executable, "-m", "graftwork.cli", "tune", recipe, "--space", str(space)]
    command += ["--trials", "4", "--storage", storage, "--pruner", "none"]
    command += ["data.max_train_examples=160"]  # 10 steps or 5: the sharing is the point here
    workers = [
        subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
        for _ in range(2)
    ]
    outputs = [w.communicate(timeout=300)[0] for w in workers]
    assert all(w.returncode == 0 for w in workers), outputs
    study = optuna.load_study(study_name="tiny-tune", storage=storage)
    numbers = [t.number for t in study.trials if t.state == optuna.trial.TrialState.COMPLETE]
    assert len(numbers) == 4  # the budget holds across workers
    written = json.loads((tmp_path / "tiny-tune" / "tune.json").read_text())
    assert written["counts"]["complete"] == 4  # the last report holds every worker's trials
    ran = {
        line.split()[1]
        for out in outputs
        for line in out.splitlines()
        if line.startswith("tune: trial-") and "eval" not in line
    }
    assert len(ran) == len(numbers)  # each trial ran in one worker only


def test_trials_running_in_another_worker_take_their_place_in_the_budget(files, tmp_path):
    recipe, space = files
    storage = f"sqlite:///{tmp_path}/tune.db"
    tuning.tune(recipe, space, 2, storage=storage, pruner="none")
    elsewhere = optuna.load_study(study_name="tiny-tune", storage=storage).ask()  # running
    summary = tuning.tune(recipe, space, 3, storage=storage, pruner="none")
    assert [(r["number"], r["state"]) for r in summary["trials"]] == [
        (0, "complete"),
        (1, "complete"),
        (elsewhere.number, "running"),
    ]
    assert not (tmp_path / "tiny-tune" / "trial-0003").exists()


def test_a_trial_asked_together_with_another_workers_last_one_is_not_run(
    files, tmp_path, monkeypatch
):
    recipe, space = files
    storage = f"sqlite:///{tmp_path}/tune.db"
    ask = optuna.study.Study.ask
    other = []

    def together(study, *args, **kwargs):  # another worker asks the same instant, first
        if not other:
            other.append(ask(optuna.load_study(study_name="tiny-tune", storage=storage)))
        return ask(study, *args, **kwargs)

    monkeypatch.setattr(optuna.study.Study, "ask", together)
    summary = tuning.tune(recipe, space, 1, storage=storage, pruner="none")
    assert [(r["number"], r["state"]) for r in summary["trials"]] == [(0, "running")]
    assert not (tmp_path / "tiny-tune" / "trial-0001").exists()
    stored = optuna.load_study(study_name="tiny-tune", storage=storage).trials
    assert stored[1].user_attrs["surplus"] and not stored[1].params


def test_a_storage_that_cannot_be_written_is_one_line(files, monkeypatch, capsys):
    recipe, space = files
    args = ["tune", str(recipe), "--space", str(space), "--trials", "1"]
    status, said = graft_main(monkeypatch, capsys, *args, "--storage", "sqlite:////proc/x.db")
    assert status == 2 and "Traceback" not in said
    assert "--storage 'sqlite:////proc/x.db'" in said
    with pytest.raises(GraftError, match="writable folder"):
        tuning.tune(recipe, space, 1, storage="sqlite:////proc/x.db")


@pytest.mark.slow
def test_tune_minilm_on_sst2(tmp_path):
    """The real model on 400 SST-2 sentences: a study of 3 trials learns the task (its seeded
    sampler draws lr 1.4e-4, 2.2e-5 and 1.7e-4 here: 0.785, 0.505 and 0.81 on 2 Zen 3 cores;
    the search's job is to find the good ones)."""
    (tmp_path / "train.tsv").write_text("".join(head(DATA / "sst2" / "train.tsv", 401)))
    (tmp_path / "dev.tsv").write_text("".join(head(DATA / "sst2" / "dev.tsv", 201)))
    recipe = {
        "name": "sst2",
        "backbone": "minilm-l6",
        "task": {"type": "classification"},
        "data": {
            "train": str(tmp_path / "train.tsv"),
            "eval": str(tmp_path / "dev.tsv"),
            "max_length": 64,
        },
        "train": {"epochs": 1, "batch_size": 16, "eval_every": 5, "log_every": 5},
        "output_dir": str(tmp_path),
    }
    space = tmp_path / "space.yaml"
    space.write_text(yaml.safe_dump({"train.lr": {"low": 1e-5, "high": 3e-4, "log": True}}))
    summary = tuning.tune(write_recipe(tmp_path / "r.yaml", recipe), space, 3)
    assert sum(summary["counts"].values()) == 3 and summary["counts"]["failed"] == 0
    assert summary["best"]["value"] > 0.7  # a constant answer scores about 0.5


def test_the_time_pruning_saved_is_extrapolated_from_the_complete_trials():
    from optuna.distributions import IntDistribution
    from optuna.trial import TrialState, create_trial

    study = optuna.create_study(direction="maximize")
    epochs = {"train.epochs": IntDistribution(1, 3)}
    for state, value, n_epochs, seen, seconds in [
        (TrialState.COMPLETE, 0.8, 1, 800, 10.0),
        (TrialState.COMPLETE, 0.9, 2, 1600, 20.0),
        (TrialState.PRUNED, None, 2, 400, 5.0),  # a quarter of its 1,600 examples
    ]:
        attrs = {"examples_seen": seen, "seconds": seconds}
        trial = create_trial(
            state=state,
            value=value,
            params={"train.epochs": n_epochs},
            distributions=epochs,
            user_attrs=attrs,
            intermediate_values={seen: 0.5} if value is None else {},
        )
        study.add_trial(trial)
    summary = tuning.summarise(study, "accuracy", 3, epochs=1.0)
    assert summary["counts"] == {"complete": 2, "pruned": 1, "failed": 0}
    assert summary["pruning_saved_seconds"] == pytest.approx(5.0 * (1600 / 400 - 1))
    assert summary["best"] == {"number": 1, "value": 0.9, "params": {"train.epochs": 2}}
