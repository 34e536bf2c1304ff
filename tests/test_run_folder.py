"""A run folder belongs to one run at a time, and what killed or failed writes leave is
removed: a second run is refused at once (the lock is dropped when a run ends, fails or is
killed), leftovers of killed writes go at the next run, and a full disk while writing a
checkpoint or an export is a message that leaves nothing half-written."""

from __future__ import annotations

import errno
import fcntl
import os
import signal
import subprocess
import sys

import pytest
import torch
import yaml

from conftest import tiny_recipe
from graftwork import locks
from graftwork.bundle import atomic, read_manifest
from graftwork.errors import GraftError
from graftwork.export import export_bundle
from graftwork.export import onnx as onnx_export
from graftwork.runs import lock
from graftwork.runs.finetune import train
from graftwork.train import checkpoint
from graftwork.train.checkpoint import TrainState

HOLD = (
    "import sys, time; from graftwork.runs.lock import acquire; acquire(sys.argv[1]); "
    "print('held', flush=True); time.sleep(120)"
)


@pytest.fixture
def recipe(tiny_bert, sst2_small, tmp_path) -> dict:
    recipe = tiny_recipe(tiny_bert, sst2_small, tmp_path)
    recipe["data"]["max_train_examples"] = 32
    return recipe


@pytest.fixture
def holder(tmp_path):
    """Another process holding the lock of tmp_path/tiny (the run folder of `recipe`)."""
    proc = subprocess.Popen(
        [sys.executable, "-c", HOLD, str(tmp_path / "tiny")], stdout=subprocess.PIPE, text=True
    )
    assert proc.stdout.readline().strip() == "held"
    yield proc
    proc.kill()
    proc.wait()


def free(run_dir) -> bool:
    """Whether the run folder's lock can be taken now (by another open file)."""
    with open(run_dir / lock.LOCK_FILE, "a+b") as fh:
        try:
            fcntl.flock(fh, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            return False
        fcntl.flock(fh, fcntl.LOCK_UN)
        return True


# ---------------------------------------------------------------- one run at a time


def test_a_lock_held_elsewhere_is_not_taken_and_names_its_holder(holder, tmp_path):
    path = tmp_path / "tiny" / lock.LOCK_FILE
    assert locks.take(path, wait=False) is None
    assert locks.holder(path) == str(holder.pid)
    holder.kill()
    holder.wait()
    fd = locks.take(path, wait=False)  # the kernel dropped the dead holder's lock
    assert fd is not None and locks.holder(path) == str(os.getpid())
    locks.release(fd)
    assert free(tmp_path / "tiny")


def test_a_second_run_in_a_held_folder_is_refused_with_the_folder_and_pid(recipe, holder, tmp_path):
    run_dir = tmp_path / "tiny"
    (run_dir / "train.log").write_text("the first run's log\n")
    (run_dir / "checkpoints" / "step-00000005").mkdir(parents=True)
    with pytest.raises(GraftError) as error:
        train(recipe, overwrite=True)
    assert str(error.value).startswith(
        f"run folder {run_dir} is in use by another run (pid {holder.pid}), which holds "
        ".graft.lock there; wait for it to finish or stop it"
    )
    assert (run_dir / "train.log").read_text() == "the first run's log\n"  # not mixed
    assert (run_dir / "checkpoints" / "step-00000005").is_dir()  # not deleted


def test_a_data_parallel_run_is_refused_in_every_process(recipe, holder, tmp_path):
    path = tmp_path / "r.yaml"
    path.write_text(yaml.safe_dump(recipe))
    done = subprocess.run(
        [sys.executable, "-m", "graftwork.cli", "train", str(path), "--nproc", "2"],
        capture_output=True,
        text=True,
        timeout=300,
        env={**os.environ, "OMP_NUM_THREADS": "1"},
    )
    assert done.returncode == 2
    refused = f"error: run folder {tmp_path / 'tiny'} is in use by another run (pid {holder.pid})"
    assert refused in done.stderr  # at once: no process waits for the lock
    assert "Traceback" not in done.stderr  # nor the launcher's own report
    assert not (tmp_path / "tiny" / "train.log").exists()


def test_the_lock_is_dropped_when_a_run_ends_or_fails(recipe, tmp_path):
    result = train(recipe)
    assert free(result.run_dir)
    recipe["data"]["eval"] = str(tmp_path / "missing.tsv")
    with pytest.raises(GraftError, match="does not exist"):
        train(recipe)
    assert free(result.run_dir)


def test_a_killed_runs_lock_does_not_block_the_next_run(holder, tmp_path):
    holder.send_signal(signal.SIGKILL)
    holder.wait()
    lock.acquire(tmp_path / "tiny")
    lock.release(tmp_path / "tiny")


# ---------------------------------------------------------------- what killed writes left


def test_the_next_run_removes_what_killed_writes_left(recipe, tmp_path):
    gone = subprocess.Popen([sys.executable, "-c", "pass"])
    gone.wait()
    run_dir = tmp_path / "tiny"
    left = [
        run_dir / f".bundle.tmp-{gone.pid}",
        run_dir / f".bundle-pruned.old-{gone.pid}",
        run_dir / "checkpoints" / ".step-00000015.tmp",
        run_dir / "checkpoints" / ".tmp-step-00000015",
    ]
    for folder in left:
        folder.mkdir(parents=True)
        (folder / "model.safetensors").write_bytes(b"half" * 1000)
    (run_dir / "bundle-pruned").mkdir()  # the replacement had taken its place
    (run_dir / f".metrics.json.tmp-{gone.pid}").write_text("{")
    result = train(recipe)
    assert not any(path.exists() for path in left)
    assert not (run_dir / f".metrics.json.tmp-{gone.pid}").exists()
    assert (
        "removed what killed writes left: .step-00000015.tmp"
        in (result.run_dir / "train.log").read_text()
    )


# ---------------------------------------------------------------- a full disk


def no_space(*args, **kwargs):
    raise OSError(errno.ENOSPC, "No space left on device")


def test_a_full_disk_while_writing_a_checkpoint_leaves_the_last_one(tmp_path, monkeypatch):
    from accelerate import Accelerator

    accelerator = Accelerator(cpu=True)
    model = torch.nn.Linear(100, 100)
    optimizer = torch.optim.AdamW(model.parameters())
    model(torch.ones(1, 100)).sum().backward()
    optimizer.step()
    scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, lambda step: 1.0)
    kept = checkpoint.save(tmp_path, accelerator, model, optimizer, scheduler, TrainState(step=5))
    monkeypatch.setattr(checkpoint, "save_model", no_space)
    with pytest.raises(atomic.DiskFullError) as error:
        checkpoint.save(tmp_path, accelerator, model, optimizer, scheduler, TrainState(step=10))
    needed = 3 * 4 * (100 * 100 + 100) / 1e6  # weights and AdamW's two moments, float32
    target = tmp_path / "checkpoints" / "step-00000010"
    assert str(error.value).startswith(
        f"cannot write {target}: no space left on the disk (it needs about {needed:.1f} MB; "
    )
    assert sorted(p.name for p in (tmp_path / "checkpoints").iterdir()) == [kept.name]


def test_a_full_disk_while_exporting_leaves_the_bundle_as_it_was(recipe, tmp_path, monkeypatch):
    bundle = train(recipe).bundle
    before = read_manifest(bundle).dump()

    def fills_the_disk(model, tokenizer, path):
        path.write_bytes(b"\0" * 100_000)
        no_space()

    monkeypatch.setattr(onnx_export, "export_fp32", fills_the_disk)
    with pytest.raises(atomic.DiskFullError, match=rf"cannot write {bundle}: no space left"):
        export_bundle(bundle)
    assert read_manifest(bundle).dump() == before
    assert sorted(p.name for p in bundle.parent.iterdir() if p.name.startswith(".")) == [
        lock.LOCK_FILE
    ]
