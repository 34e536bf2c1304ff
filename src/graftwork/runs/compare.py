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

With a recipe `tracking:` section, each method's run is recorded (`graftwork.track`) and nested
under one parent run named NAME-compare, which holds each method's headline metric, compare.json
and the report.

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

from graftwork import registry, track
from graftwork.bundle import atomic
from graftwork.config.recipe import load_recipe
from graftwork.errors import GraftError
from graftwork.machine import describe
from graftwork.methods.base import files_bytes
from graftwork.registry import METHODS
from graftwork.runs.report import write_compare_report
from graftwork.tasks.base import headline

log = logging.getLogger("graftwork")


def parse_lrs(items: list[str]) -> dict[str, float]:
    out = {}
    for item in items:
        method, sep, value = item.partition("=")
        if not sep or method not in METHODS:
            raise GraftError(f"--lr {item!r}: write METHOD=VALUE, METHOD one of {list(METHODS)}")
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


def row(method: str, run_dir: Path, task: str) -> dict:
    metrics = json.loads((run_dir / "metrics.json").read_text(encoding="utf-8"))
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
        "task_specific_mb": task_specific_mb(run_dir / "bundle", method, metrics),
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
    unknown = [m for m in methods if m not in METHODS]
    if unknown or not methods:
        raise GraftError(f"--methods {','.join(methods)}: choose from {', '.join(METHODS)}")
    recipe = load_recipe(recipe_path, overrides)  # fail on a bad recipe before any training
    out_dir = recipe.run_dir.with_name(f"{recipe.name}-compare")
    out_dir.mkdir(parents=True, exist_ok=True)
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
        cmd = [sys.executable, "-m", "graftwork.cli", "train", str(recipe_path), *overrides]
        cmd += [*extra, "--overwrite"]
        log.info("compare: %s", " ".join(cmd[3:]))
        done = subprocess.run(cmd, env=os.environ.copy())
        if done.returncode != 0:
            raise GraftError(
                f"compare: method {method} failed (exit {done.returncode}); its log is in "
                f"{recipe.run_dir.with_name(name) / 'train.log'}"
            )
        rows.append(row(method, recipe.run_dir.with_name(name), recipe.task.type))
    return rows


def write_outputs(out_dir: Path, name: str, rows: list[dict]) -> None:
    data = {"name": name, "machine": describe(), "rows": rows}
    atomic.write_json(out_dir / "compare.json", data)
    write_compare_report(out_dir / "report.html", name, rows, data["machine"])


COLUMNS = (
    ("method", "method"),
    ("value", "metric"),
    ("trainable", "trainable"),
    ("trainable_pct", "%"),
    ("examples_per_second", "ex/s"),
    ("peak_rss_mb", "peak RSS MB"),
    ("training_rss_mb", "+training MB"),
    ("peak_heap_mb", "heap MB"),
    ("task_specific_mb", "task MB"),
)


def cells(row: dict) -> list[str]:
    """A row as the CLI table shows it."""
    return [
        row["method"],
        f"{row['value']:.4f}",
        f"{row['trainable']:,}",
        f"{row['trainable_pct']:.2f}",
        f"{row['examples_per_second']:.1f}",
        f"{row['peak_rss_mb']:.0f}",
        f"{row['training_rss_mb']:.0f}",
        "-" if row.get("peak_heap_mb") is None else f"{row['peak_heap_mb']:.0f}",
        f"{row['task_specific_mb']:.2f}",
    ]
