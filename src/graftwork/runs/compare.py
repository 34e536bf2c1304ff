"""`graft compare`: one task under several adaptation methods, measured side by side.

Each method trains in its own process (`graft train RECIPE method=M name=NAME-M ...`), so peak
memory is that method's and nothing one run allocated stays behind for the next. The table
holds, per method: the headline metric, trainable parameters (count and %), training
examples/s, peak resident memory during training (and the part training added on top of the
loaded model and data), GPU peak memory when on a GPU, the bundle's size and the size of what
is specific to the task (what a second task on the same backbone adds).

Learning rates: adapters, LoRA and the frozen head need larger ones than full fine-tuning; each
method gets its module's `DEFAULT_LR` unless the recipe's method is that method already (its own lr
is kept) or `--lr METHOD=VALUE` says otherwise. `--budget-minutes` gives every method the same
training time (`train.max_minutes`; the LR schedule is planned for the full run, so a method cut
short has not decayed its LR to zero).

Few-shot learning (`fewshot` in the list): not a method (runs/fewshot.py says why), so it runs
as `graft fewshot NAME-compare/fewshot.yaml` in its own process, on a recipe derived from the
training recipe: its backbone, task and data (the same training examples, after
`data.max_train_examples` with the same seed), seed, batch sizes, warmup, weight decay and
clipping; its own lr (2e-5, or `--lr fewshot=VALUE`) and one pass over its pairs
(`fewshot.iterations` pairs per example and round; `train.epochs` is not carried); overrides
`fewshot.KEY=VALUE` go to it alone (`fewshot.per_class` is refused: it would train few-shot on
other examples than the methods). `--budget-minutes` stops its pair loop the same way. Its row
reads the run's metrics.json: trainable parameters are the tuned encoder's plus the logistic
head's, examples/s counts the texts through the encoder in training (two per pair, one per
example for the head), and the task-specific size is the whole bundle (the encoder is tuned).
With `fewshot.zero_shot` (on by default) a `zero-shot` row follows: the untuned encoder against
the label descriptions, nothing trained, so only the metric applies (the other cells are
empty). A token task (NER), sentence pairs or a multi-task recipe refuse `fewshot` before
anything trains.

With a recipe `tracking:` section, each method's run is recorded (`graftwork.track`) and nested
under one parent run named NAME-compare, which holds each method's headline metric, compare.json
and the report (the few-shot run itself is not tracked; its rows' metrics are, on the parent).

Leaves out: repeated seeds (one run per method; differences under about half a point on SST-2
dev, 872 sentences, are within seed noise) and searching each method's hyper-parameters.
"""

from __future__ import annotations

import json
import logging
import os
import subprocess
import sys
from pathlib import Path

import yaml

from graftwork import registry, track
from graftwork.bundle import atomic
from graftwork.config.recipe import load_recipe
from graftwork.errors import GraftError, RecipeError
from graftwork.machine import describe
from graftwork.methods.base import files_bytes
from graftwork.runs.compare_report import SHORT, write_compare_report
from graftwork.runs.compare_report import cells as cells  # the CLI's table, from the one COLUMNS
from graftwork.runs.compare_report import notes as notes
from graftwork.runs.fewshot import FewshotRecipe, FewshotTrain, load_fewshot_recipe
from graftwork.tasks.base import headline

log = logging.getLogger("graftwork")

FEWSHOT = "fewshot"  # `graft fewshot` (SetFit), run beside the methods
ZERO_SHOT = "zero-shot"  # its zero-shot score, a row of its own
CHOICES = (*registry.trained_methods(), FEWSHOT)  # setfit is the fewshot entry
# the training recipe's train settings the few-shot run takes (not lr, epochs: its own)
FEWSHOT_TRAIN = (
    "seed",
    "batch_size",
    "eval_batch_size",
    "weight_decay",
    "warmup",
    "max_grad_norm",
    "log_every",
    "threads",
    "max_minutes",
)
MEMORY = ("peak_rss_mb", "rss_before_mb", "training_rss_mb", "peak_heap_mb", "training_heap_mb")


def parse_lrs(items: list[str]) -> dict[str, float]:
    out = {}
    for item in items:
        method, sep, value = item.partition("=")
        if not sep or method not in CHOICES:
            raise GraftError(f"--lr {item!r}: write METHOD=VALUE, METHOD one of {list(CHOICES)}")
        try:
            out[method] = float(value)
        except ValueError:
            raise GraftError(f"--lr {item!r}: {value!r} is not a number") from None
    return out


def folder_mb(path: Path) -> float:
    return files_bytes(path) / 2**20


def task_specific_mb(bundle: Path, method: str, metrics: dict) -> float:
    """What this task adds beside a shared backbone (the method's `task_bytes`)."""
    trainable = metrics["parameters"]["trainable"]
    return registry.method(method).task_bytes(bundle, trainable) / 2**20


def _for_fewshot(item: str) -> bool:
    return item.partition("=")[0].strip().split(".")[0] == FEWSHOT


def _anchored(recipe, raw: str | None) -> str | None:
    """A data path of the training recipe as the derived few-shot recipe (written elsewhere)
    must name it: a relative path without variables made absolute where the training recipe
    finds it (beside itself, else the current folder); others as written."""
    if raw is None or "$" in raw or "~" in raw or Path(raw).is_absolute():
        return raw
    return str(recipe.resolve_path(raw).absolute())


def fewshot_recipe(
    recipe_path, recipe, overrides: list[str], budget_minutes, lr: float | None
) -> FewshotRecipe:
    """The recipe `graft fewshot` runs for compare's `fewshot` entry (module docstring), or a
    RecipeError that says why the training recipe cannot have one."""
    where = f"graft compare {recipe_path}: --methods lists {FEWSHOT}"
    task = recipe.task
    kind = (
        "a multi-task recipe"
        if recipe.multitask is not None
        else f"task.type {task.type}"
        if task.type != "classification"
        else "a sentence-pair task (task.text_pair)"
        if task.text_pair is not None
        else None
    )
    if kind:
        raise RecipeError(
            f"{where}, but the recipe is {kind}; few-shot learning (SetFit, graft fewshot) "
            "classifies single texts (task.type classification without text_pair) and has no "
            "answer for token tasks. Remove fewshot from --methods (for example --methods "
            "full,lora), or compare a single-text classification recipe"
        )
    train = {key: getattr(recipe.train, key) for key in FEWSHOT_TRAIN}
    train["lr"] = lr if lr is not None else FewshotTrain.model_fields["lr"].default
    if budget_minutes:
        train["max_minutes"] = budget_minutes
    data = recipe.data.model_dump(mode="json")
    for split in ("train", "eval", "test"):
        data[split] = _anchored(recipe, data[split])
    raw = {
        "name": f"{recipe.name}-{FEWSHOT}",
        "backbone": recipe.backbone.model_dump(mode="json"),
        "output_dir": recipe.output_dir,
        "task": task.model_dump(mode="json"),
        "data": data,
        "train": train,
    }
    try:
        derived = load_fewshot_recipe(raw, overrides)
    except RecipeError as err:
        raise RecipeError(
            f"{where}; the few-shot recipe made from it is not valid: {err}"
        ) from None
    if derived.fewshot.per_class is not None:
        raise RecipeError(
            f"{where} with fewshot.per_class={derived.fewshot.per_class}: compare trains every "
            "method on the same examples (data.train), and per_class would train few-shot alone "
            "on a subset. Remove fewshot.per_class; put the few examples in data.train (or set "
            "data.max_train_examples) so every method gets them"
        )
    if recipe.objective is not None:
        log.warning("compare: %s runs without the recipe's objective", FEWSHOT)
    return derived


def fewshot_rows(run_dir: Path, task: str) -> list[dict]:
    """The few-shot run's row (`row`'s, with what the task adds and a note) and, when it scored
    zero-shot, the zero-shot row."""
    metrics = _metrics(run_dir)
    params, bundle = metrics["parameters"], run_dir / "bundle"
    tuned = params["trainable"] > params["head"]  # the encoder was tuned, so it is the task's
    head_file = bundle / registry.method("setfit").HEAD_FILE  # the logistic head alone
    specific = folder_mb(bundle) if tuned else files_bytes(head_file) / 2**20
    note = (
        "graft fewshot (SetFit) on the same examples: trainable = encoder + logistic head; "
        "ex/s = texts through the encoder (2 per pair, 1 per example for the head)"
    )
    rows = [{**row(FEWSHOT, run_dir, task, specific), "note": note}]
    split, metric = rows[0]["split"], rows[0]["metric"]
    if split in metrics.get("zero_shot", {}):
        empty = dict.fromkeys((*MEMORY, "gpu_peak_mb", "examples_per_second", "seconds"))
        rows.append(
            {
                "method": ZERO_SHOT,
                "metric": metric,
                "split": split,
                "value": metrics["zero_shot"][split][metric],
                "trainable": 0,
                "trainable_pct": 0.0,
                "examples_seen": 0,
                **empty,
                "bundle_mb": None,
                "task_specific_mb": None,
                "run_dir": str(run_dir),
                "note": "the untuned encoder against the label descriptions (fewshot.template): "
                "nothing trained, no bundle",
            }
        )
    return rows


def _metrics(run_dir: Path) -> dict:
    return json.loads((run_dir / "metrics.json").read_text(encoding="utf-8"))


def row(method: str, run_dir: Path, task: str, specific: float | None = None) -> dict:
    """A trained method's row, from its run's metrics.json; `specific`: the MB the task adds
    beside a shared backbone (default: the method's `task_bytes`)."""
    metrics = _metrics(run_dir)
    split = "test" if "test" in metrics else "eval"
    metric = headline(task)
    train, params = metrics["train"], metrics["parameters"]
    return {
        "method": method,
        "metric": metric,
        "split": split,
        "value": metrics[split][metric],
        "trainable": params["trainable"],
        "trainable_pct": params["trainable_pct"],
        "examples_per_second": train["examples_per_second"],
        "examples_seen": train.get("examples_seen"),
        "seconds": train["seconds"],
        **train["memory"],
        "bundle_mb": folder_mb(run_dir / "bundle"),
        "task_specific_mb": (
            task_specific_mb(run_dir / "bundle", method, metrics) if specific is None else specific
        ),
        "run_dir": str(run_dir),
    }


def compare(
    recipe_path: str | Path,
    methods: list[str],
    overrides: list[str] | None = None,
    budget_minutes: float | None = None,
    lrs: dict[str, float] | None = None,
) -> tuple[list[dict], Path]:
    """Train the recipe once per method; return the rows and the comparison folder."""
    overrides = list(overrides or [])
    unknown = [m for m in methods if m not in CHOICES]
    if unknown or not methods:
        raise GraftError(f"--methods {','.join(methods)}: choose from {', '.join(CHOICES)}")
    own = [item for item in overrides if _for_fewshot(item)]
    overrides = [item for item in overrides if not _for_fewshot(item)]
    if own and FEWSHOT not in methods:
        raise GraftError(
            f"override {own[0]!r}: fewshot.* settings are for the fewshot entry, and --methods "
            f"{','.join(methods)} has none; add fewshot to --methods or drop the override"
        )
    recipe = load_recipe(recipe_path, overrides)  # fail on a bad recipe before any training
    derived = None
    if FEWSHOT in methods:  # a recipe that cannot run few-shot fails here, before training
        lr = (lrs or {}).get(FEWSHOT)
        derived = fewshot_recipe(recipe_path, recipe, own, budget_minutes, lr)
    out_dir = recipe.run_dir.with_name(f"{recipe.name}-compare")
    out_dir.mkdir(parents=True, exist_ok=True)
    if derived is not None:
        dumped = derived.model_dump(mode="json")
        atomic.write_text(out_dir / "fewshot.yaml", yaml.safe_dump(dumped, sort_keys=False))
    with track.group(
        recipe, out_dir.name, "compare", {"compare.methods": ",".join(methods)}
    ) as grouped:
        rows = _compare(
            recipe_path, recipe, methods, overrides + grouped.overrides(), budget_minutes, lrs
        )
        write_outputs(out_dir, recipe.name, rows)
        for index, found in enumerate(rows):
            grouped.tracker.metrics({f"{found['method']}/{found['metric']}": found["value"]}, index)
        grouped.tracker.artifact(out_dir / "compare.json")
        grouped.tracker.artifact(out_dir / "report.html")
    return rows, out_dir


def _compare(recipe_path, recipe, methods, overrides, budget_minutes, lrs) -> list[dict]:
    """Train the recipe once per method, each in its own process; the rows."""
    rows = []
    for method in methods:
        name = f"{recipe.name}-{method}"
        if method == FEWSHOT:
            rows.extend(_fewshot(recipe, name))
            continue
        extra = [f"name={name}", f"output_dir={recipe.output_dir}"]
        if recipe.method.type != method:
            extra.append(f"method={method}")
        lr = (lrs or {}).get(method)
        if lr is None and recipe.method.type != method:
            lr = registry.method(method).DEFAULT_LR
        if lr is not None:
            extra.append(f"train.lr={lr}")
        if budget_minutes:
            extra.append(f"train.max_minutes={budget_minutes}")
        run_dir = recipe.run_dir.with_name(name)
        args = ["train", str(recipe_path), *overrides, *extra, "--overwrite"]
        _graft(args, f"method {method}", run_dir)
        rows.append(row(method, run_dir, recipe.task.type))
    return rows


def _graft(args: list[str], what: str, run_dir: Path, also: str = "") -> None:
    """`graft ARGS` in its own process (so peak memory is its own); a GraftError naming `what`
    and its run's train.log (then `also`) when it fails."""
    cmd = [sys.executable, "-m", "graftwork.cli", *args]
    log.info("compare: %s", " ".join(cmd[3:]))
    done = subprocess.run(cmd, env=os.environ.copy())
    if done.returncode != 0:
        raise GraftError(
            f"compare: {what} failed (exit {done.returncode}); its log is in "
            f"{run_dir / 'train.log'}{also}"
        )


def _fewshot(recipe, name: str) -> list[dict]:
    """`graft fewshot NAME-compare/fewshot.yaml` in its own process; its rows."""
    derived = recipe.run_dir.with_name(f"{recipe.name}-compare") / "fewshot.yaml"
    run_dir = recipe.run_dir.with_name(name)
    _graft([FEWSHOT, str(derived)], FEWSHOT, run_dir, f" (recipe: {derived})")
    return fewshot_rows(run_dir, recipe.task.type)


def write_outputs(out_dir: Path, name: str, rows: list[dict]) -> None:
    data = {"name": name, "machine": describe(), "rows": rows}
    atomic.write_json(out_dir / "compare.json", data)
    write_compare_report(out_dir / "report.html", name, rows, data["machine"])


COLUMNS = tuple((c.key, c.short) for c in SHORT)  # the terminal table's (key, header) pairs
