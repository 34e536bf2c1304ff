"""Checkpoints: atomic writes and exact resume.

A checkpoint is a folder `checkpoints/step-NNNNNNNN/` holding the model weights (safetensors),
the optimizer and scheduler states, each process's RNG state and the data position (with FSDP,
the full weights and optimizer state gathered from every process: `train.sharding`). It is
written under a temporary name and renamed when complete (`bundle.atomic`), so a folder with
the final name is always whole. A write that fails (a full disk: `atomic.DiskFullError`, with
the size of the checkpoint and the space free) removes its temporary folder at once; a run
killed mid-write leaves a hidden `.step-….tmp` folder (`.tmp-step-…` before), which the next
run in the folder removes (`remove_leftovers`), as does the next write. Only the newest
checkpoint is kept.
"""

from __future__ import annotations

import json
import shutil
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import asdict, dataclass, field
from pathlib import Path

import torch
from safetensors.torch import load_file, load_model, save_file, save_model

from graftwork.bundle import atomic
from graftwork.errors import GraftError
from graftwork.train import sharding

PREFIX = "step-"
# training settings that change the data order or the updates: resuming needs the same ones
FINGERPRINT_TRAIN = (
    *("epochs", "batch_size", "lr", "weight_decay", "warmup", "grad_accum", "seed"),
    *("eval_every", "early_stopping"),  # the best-so-far and patience the state carries
)


@dataclass
class TrainState:
    """Where training stands; everything needed to rebuild the data order on resume."""

    epoch: int = 0
    batch_in_epoch: int = 0  # batches of the current epoch already consumed
    step: int = 0  # optimizer steps taken
    examples: int = 0
    loss_history: list[list[float]] = field(default_factory=list)  # [step, mean loss]
    running_loss: float = 0.0  # summed batch losses since the last logged point
    running_batches: int = 0
    fingerprint: dict = field(default_factory=dict)  # recipe parts that must not change
    # evaluations during training (`train.evaluation`): [step, the eval split's metrics]
    eval_history: list[list] = field(default_factory=list)
    best_step: int = 0  # step of the best evaluation so far (0: none yet)
    best_value: float | None = None  # its headline metric
    bad_evals: int = 0  # evaluations in a row without improvement (early stopping's patience)
    stopped_early: bool = False


def fingerprint(recipe, parts: tuple[str, ...]) -> dict:
    """The parts of a recipe (a pydantic model) a checkpoint must agree with before resuming
    from it: the sections `parts` whole, and `FINGERPRINT_TRAIN` of its `train` section."""
    dumped = recipe.model_dump(mode="json")
    out = {k: dumped[k] for k in parts}
    out["train"] = {k: dumped["train"][k] for k in FINGERPRINT_TRAIN}
    return out


def checkpoint_dir(run_dir: Path) -> Path:
    return Path(run_dir) / "checkpoints"


def latest(run_dir: Path) -> Path | None:
    found = sorted(p for p in checkpoint_dir(run_dir).glob(PREFIX + "*") if p.is_dir())
    return found[-1] if found else None


def _rng_states() -> dict:
    states = {"torch": torch.get_rng_state()}
    if torch.cuda.is_available():
        states["cuda"] = torch.cuda.get_rng_state_all()
    return states


def save(run_dir: Path, accelerator, model, optimizer, scheduler, state: TrainState) -> Path:
    """Write a checkpoint atomically (all processes call this; the main one writes the model)."""
    root = checkpoint_dir(run_dir)
    final = root / f"{PREFIX}{state.step:08d}"
    tmp = atomic.temp_path(final, unique=False)  # every process writes into it
    if accelerator.is_main_process:
        root.mkdir(parents=True, exist_ok=True)
        remove_leftovers(run_dir)
        tmp.mkdir()
    accelerator.wait_for_everyone()
    with _cleaned_up(tmp, final, lambda: tensor_bytes(model, optimizer)):
        torch.save(_rng_states(), tmp / f"rng-{accelerator.process_index}.pt")
    sharded = sharding.is_sharded(model)  # FSDP: gather the full states (every process)
    weights = sharding.full_state(model) if sharded else None
    moments = sharding.full_optimizer_state(model, optimizer) if sharded else None
    accelerator.wait_for_everyone()
    if accelerator.is_main_process:
        with _cleaned_up(tmp, final, lambda: tensor_bytes(model, optimizer)):
            if sharded:
                save_file(weights, str(tmp / "model.safetensors"))
                torch.save(moments, tmp / "optimizer.pt")
            else:
                save_model(accelerator.unwrap_model(model), str(tmp / "model.safetensors"))
                torch.save(optimizer.state_dict(), tmp / "optimizer.pt")
            torch.save(scheduler.state_dict(), tmp / "scheduler.pt")
            (tmp / "state.json").write_text(json.dumps(asdict(state)), encoding="utf-8")
            atomic.place(tmp, final)
        for old in root.glob(PREFIX + "*"):
            if old != final:
                shutil.rmtree(old, ignore_errors=True)
    accelerator.wait_for_everyone()
    return final


@contextmanager
def _cleaned_up(tmp: Path, final: Path, needed) -> Iterator[None]:
    """Remove the half-written `tmp` if the block fails; a full disk becomes a DiskFullError
    with the checkpoint's size (`needed()`) and the space free."""
    try:
        yield
    except BaseException as exc:
        written = atomic.size(tmp)
        full = not isinstance(exc, atomic.DiskFullError) and atomic.no_space(exc, tmp.parent)
        shutil.rmtree(tmp, ignore_errors=True)
        if full:
            raise atomic.disk_full(final, needed(), written) from exc
        raise


def tensor_bytes(model, optimizer=None) -> int:
    """About what `model` (and `optimizer`'s state) take on disk: the bytes of their tensors."""
    tensors = list(model.state_dict().values())
    for state in optimizer.state_dict()["state"].values() if optimizer is not None else ():
        tensors += [v for v in state.values() if torch.is_tensor(v)]
    return sum(t.numel() * t.element_size() for t in tensors)


def remove_leftovers(run_dir: Path) -> list[Path]:
    """Remove what killed checkpoint writes left in `run_dir`'s checkpoints folder (the
    temporary `.step-….tmp`, and `.tmp-step-…` as earlier versions named it). Call it only
    while no other process writes checkpoints there (the run holds the folder's lock)."""
    root = checkpoint_dir(run_dir)
    stale = [*root.glob(f".{PREFIX}*.tmp"), *root.glob(f".tmp-{PREFIX}*")]
    for path in stale:
        atomic.remove(path)
    return stale


def load(path: Path, accelerator, model, optimizer, scheduler, fingerprint: dict) -> TrainState:
    """Restore everything `save` wrote; refuse a checkpoint written by a different recipe."""
    state = TrainState(**json.loads((path / "state.json").read_text(encoding="utf-8")))
    changed = sorted(
        k
        for k in set(fingerprint) | set(state.fingerprint)
        if fingerprint.get(k) != state.fingerprint.get(k)
    )
    if changed:
        details = ", ".join(
            f"{k}: {state.fingerprint.get(k)!r} → {fingerprint.get(k)!r}" for k in changed
        )
        raise GraftError(
            f"cannot resume from {path}: the recipe changed since it was written ({details}). "
            "Restore those values, or start again without --resume (add --overwrite)."
        )
    if sharding.is_sharded(model):  # every process reads the full states and keeps its shard
        sharding.load_full_state(model, load_file(str(path / "model.safetensors")))
        moments = torch.load(path / "optimizer.pt", weights_only=True)
        sharding.load_full_optimizer_state(model, optimizer, moments)
    else:
        load_model(accelerator.unwrap_model(model), str(path / "model.safetensors"))
        optimizer.load_state_dict(torch.load(path / "optimizer.pt", weights_only=True))
    scheduler.load_state_dict(torch.load(path / "scheduler.pt", weights_only=True))
    rng = torch.load(path / f"rng-{accelerator.process_index}.pt", weights_only=True)
    torch.set_rng_state(rng["torch"])
    if "cuda" in rng and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(rng["cuda"])
    return state


def remove_all(run_dir: Path) -> None:
    shutil.rmtree(checkpoint_dir(run_dir), ignore_errors=True)
