"""What every run does around its work: start, the run folder, logging, the lock, the record.

`whole_run` marks the function that is one whole run (`graft train`, `graft run`, `graft
distill`, `graft pretrain`, `graft fewshot`): for as long as it runs, the run folder's lock
(`runs.lock`) is held and the run's tracking record (`track`, the recipe's `tracking:`) stays
open, and both end with it, however it ends. `start` is the first thing such a function does
with its recipe: it validates it, makes the accelerator, takes the folder's lock, removes what
killed writes left there, sets up the log, opens the tracking record, and sets threads and seed.

Leaves out: what the run reads, trains and writes (`runs.stages` and the runs above it).
"""

from __future__ import annotations

import logging
import os
import sys
from pathlib import Path

import torch

from graftwork import track
from graftwork.backbones.quiet import quiet_libraries
from graftwork.bundle import atomic
from graftwork.config.recipe import load_recipe
from graftwork.errors import GraftError
from graftwork.runs import lock
from graftwork.train import checkpoint
from graftwork.train.loop import make_accelerator

log = logging.getLogger("graftwork")


def whole_run(function):
    """Hold the run folder's lock and keep the tracking record open while `function` runs
    (only the outermost such function releases the one and closes the other)."""
    return lock.whole_run(track.whole_run(function))


def setup_logging(run_dir: Path | None, main: bool = True) -> None:
    """Log to stderr (INFO in the main process, WARNING in the others) and, in the main
    process, to `run_dir/train.log`."""
    logger = logging.getLogger("graftwork")
    logger.setLevel(logging.DEBUG)
    for handler in list(logger.handlers):
        logger.removeHandler(handler)
        handler.close()
    logger.propagate = False
    console = logging.StreamHandler(sys.stderr)
    console.setLevel(logging.INFO if main else logging.WARNING)
    console.setFormatter(logging.Formatter("%(message)s"))
    logger.addHandler(console)
    if run_dir is not None and main:
        run_dir.mkdir(parents=True, exist_ok=True)
        handler = logging.FileHandler(run_dir / "train.log", encoding="utf-8")
        handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(message)s"))
        logger.addHandler(handler)
    quiet_libraries()


def write_json(path: Path, data: dict) -> None:
    """Write a run's JSON file (metrics.json) atomically."""
    atomic.write_json(path, data)


def remove_leftovers(run_dir: Path) -> None:
    """Remove the temporary checkpoint, bundle and file writes of killed runs in `run_dir`."""
    left = [*checkpoint.remove_leftovers(run_dir), *atomic.remove_stale(run_dir)]
    if left:
        log.info("removed what killed writes left: %s", ", ".join(p.name for p in left))


def prepare_run_dir(run_dir: Path, resume: bool, overwrite: bool, main: bool) -> None:
    """Refuse a folder holding an unfinished run's checkpoint unless resuming or overwriting."""
    if not main or resume:
        return
    leftover = checkpoint.latest(run_dir)
    if leftover is not None and not overwrite:
        raise GraftError(
            f"{run_dir} holds a checkpoint of an unfinished run ({leftover.name}). Pass --resume "
            "to continue it, or --overwrite to start again (the checkpoint is then deleted)."
        )
    checkpoint.remove_all(run_dir)


def start(recipe, overrides, resume: bool, overwrite: bool):
    """Validate the recipe, make the accelerator, lock the run folder (until the `@whole_run`
    function calling this returns), remove what killed writes left there, set up logging, the
    tracking record, threads and seed; (recipe, accelerator)."""
    recipe = load_recipe(recipe, overrides)
    accelerator = make_accelerator(recipe.train)
    lock.hold(recipe.run_dir, accelerator)
    setup_logging(recipe.run_dir, accelerator.is_main_process)
    if accelerator.is_main_process:
        remove_leftovers(recipe.run_dir)
    prepare_run_dir(recipe.run_dir, resume, overwrite, accelerator.is_main_process)
    track.begin(recipe, accelerator.is_main_process, resume)  # recipe `tracking:`, if any
    accelerator.wait_for_everyone()
    cores = os.cpu_count() or 1
    here = int(os.environ.get("LOCAL_WORLD_SIZE", accelerator.num_processes))  # on this machine
    torch.set_num_threads(recipe.train.threads or max(1, cores // here))
    torch.manual_seed(recipe.train.seed)
    return recipe, accelerator
