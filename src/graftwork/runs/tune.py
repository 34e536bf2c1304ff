"""`graft tune`: hyper-parameter search over a recipe with Optuna.

`tune(RECIPE, SPACE, trials=N)` samples the keys of the search space (`runs.space`) with
Optuna's TPE sampler; each trial is a normal run (`runs.finetune.run`) of the recipe with the
sampled values as overrides, in its own folder OUTPUT_DIR/STUDY/trial-NNNN, and its value is
the eval split's headline metric (`Task.HEADLINE`, maximised; the test split plays no part).

Pruning works on the evaluations during training (`train.eval_every`): each is reported to
the trial at the number of training examples seen so far (optimizer steps × batch × grad_accum,
so trials with different batch sizes compare at the same amount of data), and the pruner
(median: a trial below the median of earlier trials at the same point stops; hyperband; or
none) decides whether the run goes on. A pruned run stops there (`track.Stopped`: its MLflow
record says KILLED, pruned), keeps its train.log and writes no bundle.

A study lives in `storage` (an Optuna RDB URL such as sqlite:///tune.db; default: in memory).
With storage the same command continues an interrupted study until N trials have finished
(complete or pruned) in all, and several processes or machines started on one database share
the work (Optuna's own way of scaling out); a trial whose worker died is found by Optuna's
heartbeat and run again. The budget of N holds across workers: before each trial a worker
counts the study's finished and running trials (all workers') and stops at N, and a trial
asked in the same instant as another's, beyond the N before it, is not run (it is recorded as
failed with user attribute `surplus` and left out of the outputs). The sampler's seed is the
recipe's train.seed plus the number of times the study was opened before, so a resumed study
or a second worker does not replay the first one's points.

Outputs in OUTPUT_DIR/STUDY: tune.json (every trial: state, value, values, seconds, examples
seen, run folder; the best; what pruning saved), best.yaml (the recipe with the best trial's
values) and report.html (`runs.tune_report`), one set per study: each worker writes them when
it stops, atomically, under the study folder's lock and from the storage (which holds every
worker's trials), so the last one written holds them all. With a recipe `tracking:`
section every trial's run is recorded and nested under one parent run per study.
Left out: several objectives at once, and conditional spaces.
"""

from __future__ import annotations

import json
import logging
import time
import warnings
from contextlib import contextmanager
from pathlib import Path

import yaml

from graftwork import locks, registry, track
from graftwork.bundle import atomic
from graftwork.config.base import NAME
from graftwork.config.overrides import merge, parse_overrides
from graftwork.config.recipe import load_recipe
from graftwork.errors import GraftError
from graftwork.runs import finetune
from graftwork.runs.space import override, read_space
from graftwork.runs.tune_report import write_tune_report
from graftwork.train import checkpoint

log = logging.getLogger("graftwork")

PRUNERS = ("median", "hyperband", "none")
SQLITE = "sqlite:///"
HEARTBEAT_SECONDS = 60  # a running trial's heartbeat; one silent for 3 of them is retried
LOCK = ".tune.lock"  # in the study folder: one worker at a time writes the outputs
SURPLUS = "surplus"  # user attribute of a trial asked beyond the budget (not run)


class Pruned(track.Stopped):
    """The pruner stopped this trial's run at an evaluation."""


class Surplus(Exception):  # noqa: N818  (not an error: the trial is not run)
    """A trial asked while the budget was already taken by other workers' trials."""


def make_pruner(name: str):
    import optuna

    if name == "median":  # five trials finish before any is pruned (Optuna's default)
        return optuna.pruners.MedianPruner(n_startup_trials=5)
    if name == "hyperband":
        return optuna.pruners.HyperbandPruner()
    if name == "none":
        return optuna.pruners.NopPruner()
    raise GraftError(f"--pruner {name!r}: choose one of {', '.join(PRUNERS)}")


def open_study(study_name: str, storage: str | None, pruner: str, space: dict, seed: int):
    """The study `study_name` in `storage`, created if new, with a TPE sampler seeded with
    `seed` plus the number of times the study was opened before (so a second worker or a
    resumed study does not replay the first one's points); one made with another search space
    is refused (its trials would not be comparable)."""
    import optuna
    from optuna.storages import InMemoryStorage, RDBStorage, RetryHeartbeatStaleTrialCallback

    with _first_opener(storage), warnings.catch_warnings():
        warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
        backend = InMemoryStorage()
        try:
            if storage:
                backend = RDBStorage(
                    storage,
                    heartbeat_interval=HEARTBEAT_SECONDS,
                    grace_period=3 * HEARTBEAT_SECONDS,
                    heartbeat_stale_trial_callback=RetryHeartbeatStaleTrialCallback(max_retry=1),
                )
        except Exception as exc:
            raise GraftError(
                f"--storage {storage!r}: Optuna cannot open it ({type(exc).__name__}: {exc}); "
                "give a database URL such as sqlite:///tune.db"
            ) from None
        try:
            attrs = backend.get_study_user_attrs(backend.get_study_id_from_name(study_name))
        except KeyError:  # a new study
            attrs = {}
        opened = attrs.get("opened", 0)
        study = optuna.create_study(
            study_name=study_name,
            storage=backend,
            sampler=optuna.samplers.TPESampler(seed=seed + opened),
            direction="maximize",
            pruner=make_pruner(pruner),
            load_if_exists=True,
        )
        study.set_user_attr("opened", opened + 1)
        described = json.loads(json.dumps({k: spec.model_dump() for k, spec in space.items()}))
        stored = attrs.get("space")
        if stored is None:
            study.set_user_attr("space", described)
        elif stored != described:
            raise GraftError(
                f"study {study_name!r} in {storage} was made with another search space "
                f"({sorted(stored)}); give --study a new name to search this one"
            )
    return study


@contextmanager
def _first_opener(storage: str | None):
    """For a SQLite file, one process at a time creates its tables (two workers started
    together on a new file would both try, and one would fail)."""
    if not storage or not storage.startswith(SQLITE):
        yield
        return
    path = Path(storage[len(SQLITE) :])
    lock = path.with_name(path.name + ".lock")
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        fd = locks.take(lock)
    except OSError as exc:
        raise GraftError(
            f"--storage {storage!r}: cannot write {lock} beside the database "
            f"({exc.strerror or exc}); give a SQLite file in a writable folder, e.g. "
            "sqlite:///tune.db"
        ) from None
    try:
        yield
    finally:
        locks.release(fd)


def finished(study) -> list:
    from optuna.trial import TrialState

    return [t for t in study.trials if t.state in (TrialState.COMPLETE, TrialState.PRUNED)]


def budgeted(study, before: int | None = None) -> list:
    """The trials that take a place in the budget: finished (complete, pruned) or running, in
    every worker; with `before`, only those numbered below it."""
    from optuna.trial import TrialState

    states = (TrialState.COMPLETE, TrialState.PRUNED, TrialState.RUNNING)
    found = study.get_trials(deepcopy=False, states=states)
    return [t for t in found if before is None or t.number < before]


def tune(
    recipe_path: str | Path,
    space_path: str | Path,
    trials: int,
    overrides: list[str] | None = None,
    storage: str | None = None,
    study_name: str | None = None,
    pruner: str = "median",
) -> dict:
    """Run the study up to `trials` finished trials; write tune.json, best.yaml, report.html.
    Returns the summary written to tune.json."""
    import optuna

    overrides = list(overrides or [])
    recipe = load_recipe(recipe_path, overrides)
    space = read_space(Path(space_path), Path(recipe_path), overrides)
    if recipe.data.eval is None:
        raise GraftError(
            f"recipe {recipe.name}: tuning ranks trials on the eval split; give data.eval a file"
        )
    study_name = study_name or f"{recipe.name}-tune"
    if not NAME.fullmatch(study_name):
        raise GraftError(
            f"--study {study_name!r}: the study's folder name must match {NAME.pattern}"
        )
    if pruner != "none" and not recipe.train.eval_every:
        log.warning(
            "tune: the recipe does not evaluate during training (train.eval_every), so there is "
            "nothing to prune on; every trial runs to its end"
        )
    study_dir = Path(recipe.output_dir) / study_name
    study_dir.mkdir(parents=True, exist_ok=True)
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    study = open_study(study_name, storage, pruner, space, recipe.train.seed)
    headline = registry.task(recipe.task.type).HEADLINE
    if storage:  # a trial of a worker that died is failed (and retried) before counting
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
            optuna.storages.fail_stale_trials(study)
    todo = trials - len(budgeted(study))
    if todo <= 0 < trials - len(finished(study)):
        log.info(
            "tune: study %s: its other trials run in other workers (or in one that died "
            "in the last %d s: run again later to retry it)",
            study_name,
            3 * HEARTBEAT_SECONDS,
        )
    params = {
        "tune.trials": trials,
        "tune.pruner": pruner,
        "tune.space": json.dumps(study.user_attrs["space"]),
    }
    parent = study.user_attrs.get("mlflow_parent_run")
    with track.group(recipe, study_name, "tune", params, run_id=parent) as grouped:
        if grouped.run_id and parent is None:
            study.set_user_attr("mlflow_parent_run", grouped.run_id)
        if todo > 0:
            log.info("tune: study %s, %d trial(s) to run (%d asked)", study_name, todo, trials)
            objective = _objective(
                recipe_path, overrides, space, study_dir, headline, grouped, trials
            )
            study.optimize(
                objective,
                n_trials=todo,
                catch=(Surplus,),
                callbacks=[optuna.study.MaxTrialsCallback(trials, states=_counted())],
            )
        summary = _write_outputs(
            study, study_dir, (headline, trials, recipe.train.epochs), recipe_path, overrides
        )
        if summary["best"] is not None:
            grouped.tracker.metrics(
                {
                    f"best/{headline}": summary["best"]["value"],
                    "trials/complete": summary["counts"]["complete"],
                    "trials/pruned": summary["counts"]["pruned"],
                },
                len(study.trials),
            )
        for name in ("tune.json", "best.yaml", "report.html"):
            grouped.tracker.artifact(study_dir / name)
    return summary


def _counted():
    """The states MaxTrialsCallback counts: a worker stops when the finished trials and those
    still running elsewhere fill the budget."""
    from optuna.trial import TrialState

    return (TrialState.COMPLETE, TrialState.PRUNED, TrialState.RUNNING)


def _objective(recipe_path, overrides, space, study_dir: Path, headline: str, grouped, trials):
    """Optuna's objective: one run per trial, pruned at its evaluations; a trial beyond the
    `trials` numbered before it (asked together with another worker's) is not run."""
    import optuna

    base = load_recipe(recipe_path, overrides)

    def objective(trial) -> float:
        if len(budgeted(trial.study, before=trial.number)) >= trials:
            trial.set_user_attr(SURPLUS, True)
            trial.study.stop()
            raise Surplus(f"trial {trial.number}: the {trials} trials are taken; not run")
        values = {key: spec.suggest(trial, key) for key, spec in space.items()}
        name = f"trial-{trial.number:04d}"
        extra = [override(k, v) for k, v in values.items()]
        extra += [f"name={name}", f"output_dir={study_dir}", *grouped.overrides()]
        if base.tracking.mlflow is not None:
            extra += [f"tracking.mlflow.tags.optuna_trial={trial.number}"]
        recipe = load_recipe(recipe_path, [*overrides, *extra])
        examples_per_step = recipe.train.batch_size * recipe.train.grad_accum
        trial.set_user_attr("run_dir", str(recipe.run_dir))
        seen = {"examples": 0}

        def on_eval(step: int, metrics: dict) -> None:
            seen["examples"] = step * examples_per_step
            trial.report(float(metrics[headline]), seen["examples"])
            if trial.should_prune():
                raise Pruned(f"pruned by the tuner at step {step}")

        log.info("tune: %s %s", name, " ".join(extra[: len(values)]))
        started = time.perf_counter()
        try:
            result = finetune.run(recipe, overwrite=True, on_eval=on_eval)
        except Pruned:
            checkpoint.remove_all(recipe.run_dir)  # nothing will resume it
            trial.set_user_attr("seconds", time.perf_counter() - started)
            trial.set_user_attr("examples_seen", seen["examples"])
            log.info("tune: %s pruned after %d examples", name, seen["examples"])
            raise optuna.TrialPruned() from None
        train = result.metrics["train"]
        trial.set_user_attr("seconds", time.perf_counter() - started)
        trial.set_user_attr("examples_seen", train["examples_seen"])
        value = float(result.metrics["eval"][headline])
        log.info("tune: %s eval %s %.4f", name, headline, value)
        return value

    return objective


def summarise(study, headline: str, asked: int, epochs: float) -> dict:
    """tune.json: every trial, the best, the counts, and the time pruning saved, estimated per
    pruned trial as its time × (planned examples ÷ examples seen − 1); planned examples are
    its epochs (`epochs` unless sampled) × the examples per epoch the complete trials saw."""
    from optuna.trial import TrialState

    rows = []
    for t in study.trials:
        if t.user_attrs.get(SURPLUS):
            continue
        rows.append(
            {
                "number": t.number,
                "state": t.state.name.lower(),
                "value": t.value,
                "params": t.params,
                "seconds": t.user_attrs.get("seconds"),
                "examples_seen": t.user_attrs.get("examples_seen"),
                "run_dir": t.user_attrs.get("run_dir"),
            }
        )
    complete = [r for r in rows if r["state"] == "complete"]
    pruned = [r for r in rows if r["state"] == "pruned"]

    def epochs_of(row: dict) -> float:
        return float(row["params"].get("train.epochs", epochs))

    per_epoch = max((r["examples_seen"] / epochs_of(r) for r in complete), default=0.0)
    saved = 0.0
    for r in pruned:
        if r["seconds"] and r["examples_seen"]:
            planned = per_epoch * epochs_of(r)
            saved += r["seconds"] * max(0.0, planned / r["examples_seen"] - 1)
    best = None
    if any(t.state == TrialState.COMPLETE for t in study.trials):
        best_trial = study.best_trial
        best = {"number": best_trial.number, "value": best_trial.value, "params": best_trial.params}
    return {
        "study": study.study_name,
        "metric": headline,
        "asked": asked,
        "counts": {
            "complete": len(complete),
            "pruned": len(pruned),
            "failed": sum(r["state"] == "fail" for r in rows),
        },
        "best": best,
        "seconds": sum(r["seconds"] or 0 for r in rows),
        "pruning_saved_seconds": saved,
        "trials": rows,
    }


def best_recipe(recipe_path: Path, overrides: list[str], summary: dict) -> str:
    """The recipe file's YAML with the command-line overrides and the best trial's values."""
    data = yaml.safe_load(Path(recipe_path).read_text(encoding="utf-8-sig")) or {}
    best = summary["best"]
    chosen = [override(k, v) for k, v in best["params"].items()]
    data = merge(data, parse_overrides([*overrides, *chosen]))
    head = (
        f"# graft tune: the best of study {summary['study']} (trial {best['number']}, eval "
        f"{summary['metric']} {best['value']:.4f})\n# from {recipe_path}"
        + (f" with {' '.join(overrides)}" if overrides else "")
        + "\n"
    )
    return head + yaml.safe_dump(data, sort_keys=False, allow_unicode=True)


def _write_outputs(study, study_dir: Path, asked: tuple, recipe_path, overrides) -> dict:
    """tune.json, best.yaml and report.html of the study as its storage holds it now, written
    under the study folder's lock (so the last worker to write has read every trial); the
    summary. `asked`: the headline metric, the trials asked for, the recipe's epochs."""
    with locks.held(study_dir / LOCK):
        summary = summarise(study, *asked)
        summary["folder"] = str(study_dir)
        atomic.write_json(study_dir / "tune.json", summary)
        if summary["best"] is not None:
            atomic.write_text(
                study_dir / "best.yaml", best_recipe(Path(recipe_path), overrides, summary)
            )
        write_tune_report(study_dir / "report.html", study, summary)
    return summary
