"""`graft run`, `graft train`, `graft pretrain`: training verbs over `graftwork.runs`.

`--nproc N` re-launches the same command under `torch.distributed.run` (one process per
share of each batch; gloo on CPU, NCCL on GPU); the children see WORLD_SIZE and train.
Left out: multi-node launches (run torchrun yourself for those).
"""

from __future__ import annotations

import logging
import os
import sys
from pathlib import Path

import typer

from graftwork.cli import render
from graftwork.cli.inputs import NPROC, OVERRIDES, OVERWRITE, RESUME
from graftwork.runs import finetune
from graftwork.runs.pretrain import pretrain as run_pretrain

RECIPE = typer.Argument(..., help="Recipe YAML file.")


def _distributed_child() -> bool:
    return int(os.environ.get("WORLD_SIZE", "1")) > 1


def _relaunch(nproc: int) -> None:
    """Run this same command in `nproc` processes with torch.distributed.run, then exit with
    their status. A user error (exit 2), which every process has printed, is not followed by
    the launcher's own traceback and log line."""
    from torch.distributed.elastic.multiprocessing.errors import ChildFailedError
    from torch.distributed.run import parse_args
    from torch.distributed.run import run as launch

    argv = []
    skip = False
    for arg in sys.argv[1:]:
        if skip:
            skip = False
            continue
        if arg == "--nproc":
            skip = True
            continue
        if arg.startswith("--nproc="):
            continue
        argv.append(arg)
    os.environ.setdefault("OMP_NUM_THREADS", str(max(1, (os.cpu_count() or 1) // nproc)))
    logging.getLogger("torch.distributed.elastic").setLevel(logging.CRITICAL)
    try:
        launch(
            parse_args(["--standalone", f"--nproc_per_node={nproc}", "-m", "graftwork.cli", *argv])
        )
    except ChildFailedError as exc:
        _, first = exc.get_first_failure()  # the others may have been stopped because of it
        raise typer.Exit(2 if first.exitcode == 2 else 1) from None
    raise typer.Exit(0)


def _training_verb(stage: str, doc: str):
    """The `graft run` / `graft train` verb: `runs.finetune.<stage>`, then its results."""

    def verb(
        recipe: Path = RECIPE,
        overrides: list[str] = OVERRIDES,
        resume: bool = RESUME,
        overwrite: bool = OVERWRITE,
        nproc: int = NPROC,
    ):
        if nproc > 1 and not _distributed_child():
            _relaunch(nproc)
        run_stage = getattr(finetune, stage)
        result = run_stage(recipe, overrides or [], resume=resume, overwrite=overwrite)
        if result.metrics:  # the main process prints
            render.results(result, report=stage == "run")

    verb.__name__ = verb.__qualname__ = stage
    verb.__doc__ = doc
    return verb


run = _training_verb(
    "run", "Run a whole recipe: train, evaluate, write the bundle and report.html."
)
train = _training_verb(
    "train", "Train and evaluate; write the bundle and metrics.json (no report)."
)


def pretrain(
    recipe: Path = typer.Argument(..., help="Pretraining recipe YAML (data, mlm, vocab, train)."),
    overrides: list[str] = OVERRIDES,
    resume: bool = RESUME,
    overwrite: bool = OVERWRITE,
):
    """Continue masked-LM pretraining on domain text (optionally extending the vocabulary).

    Writes runs/NAME/bundle, a backbone folder; fine-tune from it with
    graft run RECIPE backbone=runs/NAME/bundle. With train.epochs=0 only the vocabulary is
    extended. Example: graft pretrain recipes/pretrain-sst2.yaml mlm.mask_ratio=0.2
    """
    render.pretraining(run_pretrain(recipe, overrides or [], resume=resume, overwrite=overwrite))
