"""`graft run`, `graft train`, `graft pretrain`: training verbs over `graftwork.runs`.

`--nproc N` re-launches the same command under `torch.distributed.run` (one process per
share of each batch; gloo on CPU, NCCL on GPU); the children see WORLD_SIZE and train.
Several machines: the same command on each, with `--nnodes N --node-rank R --master-addr HOST
--master-port P` (R = 0 on the machine at HOST); the launcher's static rendezvous joins them
into one data-parallel run of N × nproc processes. The run folder and the data must be on a file
system every machine sees (checkpoints gather every process's RNG state in one folder).
`torchrun --nnodes … -m graftwork.cli train RECIPE` works as well (the same entry point).
"""

from __future__ import annotations

import logging
import os
import sys
from pathlib import Path

import typer

from graftwork.cli import render
from graftwork.cli.inputs import NPROC, OVERRIDES, OVERWRITE, RESUME
from graftwork.errors import GraftError
from graftwork.runs import finetune
from graftwork.runs.pretrain import pretrain as run_pretrain

RECIPE = typer.Argument(..., help="Recipe YAML file.")


def _distributed_child() -> bool:
    return int(os.environ.get("WORLD_SIZE", "1")) > 1


NNODES = typer.Option(1, "--nnodes", min=1, help="Machines in a multi-node run.")
NODE_RANK = typer.Option(0, "--node-rank", min=0, help="This machine's rank (0: at --master-addr).")
MASTER_ADDR = typer.Option(
    "127.0.0.1", "--master-addr", help="Multi-node: host name or address of node rank 0."
)
MASTER_PORT = typer.Option(29500, "--master-port", min=1, max=65535, help="Multi-node: its port.")
LAUNCH_OPTIONS = ("--nproc", "--nnodes", "--node-rank", "--master-addr", "--master-port")


def _launcher_args(nproc: int, nnodes: int, node_rank: int, addr: str, port: int) -> list[str]:
    """torch.distributed.run's arguments: standalone on one machine, else static rendezvous."""
    if nnodes == 1:
        return ["--standalone", f"--nproc_per_node={nproc}"]
    if node_rank >= nnodes:
        raise GraftError(f"--node-rank {node_rank} is not below --nnodes {nnodes} (ranks 0…N-1)")
    return [
        f"--nnodes={nnodes}",
        f"--node_rank={node_rank}",
        f"--master_addr={addr}",
        f"--master_port={port}",
        f"--nproc_per_node={nproc}",
    ]


def _relaunch(nproc: int, launcher: list[str]) -> None:
    """Run this same command in `nproc` processes with torch.distributed.run (`launcher`: its
    arguments), then exit with their status. A user error (exit 2), which every process has
    printed, is not followed by the launcher's own traceback and log line."""
    from torch.distributed.elastic.multiprocessing.errors import ChildFailedError
    from torch.distributed.run import parse_args
    from torch.distributed.run import run as launch

    argv = []
    skip = False
    for arg in sys.argv[1:]:
        if skip:
            skip = False
            continue
        if arg in LAUNCH_OPTIONS:
            skip = True
            continue
        if arg.startswith(tuple(f"{option}=" for option in LAUNCH_OPTIONS)):
            continue
        argv.append(arg)
    os.environ.setdefault("OMP_NUM_THREADS", str(max(1, (os.cpu_count() or 1) // nproc)))
    logging.getLogger("torch.distributed.elastic").setLevel(logging.CRITICAL)
    try:
        launch(parse_args([*launcher, "-m", "graftwork.cli", *argv]))
    except ChildFailedError as exc:
        # a user error (exit 2) in any process is the run's answer: another process may have
        # been stopped because of it, or have died in the process group's teardown after
        # printing the same error (an occasional C++ "terminate called" at exit)
        user_error = any(failure.exitcode == 2 for failure in exc.failures.values())
        raise typer.Exit(2 if user_error else 1) from None
    raise typer.Exit(0)


def _training_verb(stage: str, doc: str):
    """The `graft run` / `graft train` verb: `runs.finetune.<stage>`, then its results."""

    def verb(
        recipe: Path = RECIPE,
        overrides: list[str] = OVERRIDES,
        resume: bool = RESUME,
        overwrite: bool = OVERWRITE,
        nproc: int = NPROC,
        nnodes: int = NNODES,
        node_rank: int = NODE_RANK,
        master_addr: str = MASTER_ADDR,
        master_port: int = MASTER_PORT,
    ):
        if (nproc > 1 or nnodes > 1) and not _distributed_child():
            launcher = _launcher_args(nproc, nnodes, node_rank, master_addr, master_port)
            _relaunch(nproc, launcher)
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
