"""Evaluation during training: the curve, the best checkpoint and early stopping.

With `train.eval_every: N` the loop (`train.loop.fit`) calls an `Evaluator` every N optimizer
steps and at the last step. It evaluates the model on the eval split with the task's own
`evaluate` (the function the run passes in), appends `[step, metrics]` to the state's
`eval_history`, and compares the task's headline metric (`Task.HEADLINE`; higher is better
for every registered task) with the best so far:

- a value above the best becomes the best: its weights are written to
  `checkpoints/best-NNNNNNNN/model.safetensors` (atomically), unless `train.keep: last`;
- a value that does not beat the best by more than `early_stopping.min_delta` counts against
  the patience; `patience` such evaluations in a row stop training (`state.stopped_early`).

Everything it decides lives in the `TrainState` that checkpoints save (history, best step and
value, the patience count), so a resumed run continues exactly. The best weights stay on disk
as long as a checkpoint or the running state may need them: the best of the running state and
the best recorded by the newest checkpoint; the others go when a new best is written, and the
folders of a killed run's later bests go on resume. `restore_best` loads the best weights
into the model at the end of training, which is what the bundle then holds.

`on_eval(step, metrics)`: the hook for trackers and tuners. It is called in the main process
after each evaluation, with the 1-based optimizer step and the eval split's metrics (a dict
holding the headline metric, e.g. `{"accuracy": 0.85, "macro_f1": 0.84, ...}`), once the state
is updated and the best weights are written. It may raise to end the run (Optuna's
`TrialPruned`): the exception propagates from `fit` in the main process, and the other
processes of a data-parallel run stop with a GraftError instead of waiting for it.

Under `train.precision: bf16` (or fp16) evaluations run the FP32 weights without autocast
(`full_precision`), as the final evaluation, `graft eval` and serving do.

In a data-parallel run the main process evaluates alone (on the unwrapped model) and sends its
decision to the others, so every process keeps the same state; with FSDP every process
evaluates (a forward pass needs all of them: `train.sharding`), reaching the same decision.
Left out: metrics where lower is better (no registered task has one), and evaluating on several
splits while training.
"""

from __future__ import annotations

import logging
import shutil
from collections.abc import Callable
from contextlib import contextmanager
from pathlib import Path

from graftwork.bundle import atomic
from graftwork.errors import GraftError
from graftwork.train import checkpoint, sharding

log = logging.getLogger("graftwork")

BEST = "best-"
CONTINUE, STOP, FAILED = 0, 1, 2


@contextmanager
def full_precision(model):
    """Run `model` without the mixed-precision forward `accelerator.prepare` put on it (bf16 /
    fp16 autocast), and put that forward back after: evaluations then score the FP32 weights
    as the bundle, `graft eval` and serving will run them, so the best step is chosen on the
    figures the run reports. (accelerate keeps the plain forward as `_original_forward`; its
    own `unwrap_model(keep_fp32_wrapper=False)` removes the wrapper for good, which training
    cannot afford halfway.)"""
    wrapped = model.__dict__.get("forward")
    plain = model.__dict__.get("_original_forward")
    if wrapped is None or plain is None:
        yield model
        return
    model.forward = plain
    try:
        yield model
    finally:
        model.forward = wrapped


def best_dir(run_dir: Path, step: int) -> Path:
    return checkpoint.checkpoint_dir(run_dir) / f"{BEST}{step:08d}"


class Evaluator:
    """Evaluates while training; see the module docstring.

    `evaluate(model) -> metrics` runs the task's evaluation of the eval split on the (plain,
    unwrapped) model; `headline` names the metric that ranks evaluations; `cfg` is the
    recipe's `train` section (eval_every, early_stopping, keep)."""

    def __init__(
        self,
        evaluate: Callable[[object], dict],
        headline: str,
        cfg,
        run_dir: Path,
        accelerator,
        on_eval: Callable[[int, dict], object] | None = None,
    ):
        self.evaluate = evaluate
        self.headline = headline
        self.every = cfg.eval_every
        self.stopping = cfg.early_stopping
        self.keep_best = cfg.keep == "best"
        self.run_dir = Path(run_dir)
        self.accelerator = accelerator
        self.on_eval = on_eval

    def due(self, step: int, steps: int) -> bool:
        return step % self.every == 0 or step == steps

    def resumed(self, state) -> None:
        """After a resume: remove the best weights a killed run wrote after its checkpoint."""
        if self.accelerator.is_main_process:
            self._remove_bests(keep={state.best_step})

    def __call__(self, model, state) -> bool:
        """Evaluate now; update `state`; True when early stopping says to stop."""
        accelerator = self.accelerator
        outcome, error = [CONTINUE, None], None
        if accelerator.is_main_process or sharding.is_sharded(model):
            plain = accelerator.unwrap_model(model)
            modes = {module: module.training for module in plain.modules()}
            try:
                with full_precision(plain):
                    outcome = self._judge(plain, state)
                if self.on_eval is not None and accelerator.is_main_process:
                    self.on_eval(state.step, state.eval_history[-1][1])
            except BaseException as exc:  # noqa: BLE001  (re-raised below, after telling the others)
                error, outcome = exc, [FAILED, None]
            finally:
                for module, training in modes.items():
                    module.train(training)
        if accelerator.num_processes > 1:
            from accelerate.utils import broadcast_object_list

            decision = [outcome[0], _fields(state) if outcome[0] != FAILED else None]
            decision = broadcast_object_list(decision, from_process=0)
            outcome[0] = decision[0]
            if decision[1] is not None and not accelerator.is_main_process:
                for key, value in decision[1].items():
                    setattr(state, key, value)
        if error is not None:
            raise error
        if outcome[0] == FAILED:
            raise GraftError("training stopped: the main process failed while evaluating")
        return outcome[0] == STOP

    def _judge(self, model, state) -> list:
        metrics = self.evaluate(model)
        if self.headline not in metrics:
            raise GraftError(
                f"evaluation during training gave no {self.headline!r} (the task's headline "
                f"metric) among {sorted(metrics)}"
            )
        value = float(metrics[self.headline])
        state.eval_history.append([state.step, metrics])
        best = state.best_value
        margin = self.stopping.min_delta if self.stopping is not None else 0.0
        if best is None or value > best:
            state.best_step, state.best_value = state.step, value
            if self.keep_best:
                self._save_best(model, state)
        if best is None or value > best + margin:
            state.bad_evals = 0
        else:
            state.bad_evals += 1
        stop = self.stopping is not None and state.bad_evals >= self.stopping.patience
        log.info(
            "step %d: eval %s %.4f (best %.4f at step %d)%s",
            state.step,
            self.headline,
            value,
            state.best_value,
            state.best_step,
            f"; no improvement in {state.bad_evals} evaluations: stopping early" if stop else "",
        )
        state.stopped_early = stop
        return [STOP if stop else CONTINUE, None]

    def _save_best(self, model, state) -> None:
        from safetensors.torch import save_file, save_model

        weights = sharding.full_state(model) if sharding.is_sharded(model) else None
        if not self.accelerator.is_main_process:
            return
        final = best_dir(self.run_dir, state.step)
        with atomic.building(final, needed=lambda: checkpoint.tensor_bytes(model)) as tmp:
            if weights is not None:
                save_file(weights, str(tmp / "model.safetensors"))
            else:
                save_model(model, str(tmp / "model.safetensors"))
        self._remove_bests(keep={state.best_step, _checkpointed_best(self.run_dir)})

    def _remove_bests(self, keep: set[int]) -> None:
        root = checkpoint.checkpoint_dir(self.run_dir)
        for folder in root.glob(BEST + "*"):
            if folder.is_dir() and int(folder.name[len(BEST) :]) not in keep:
                shutil.rmtree(folder, ignore_errors=True)

    def restore_best(self, model, state) -> None:
        """Load the best evaluation's weights into `model` (all processes), when the recipe
        keeps the best and the last step is not the best already."""
        if not self.keep_best or not state.best_step or not state.eval_history:
            return
        last_evaluated = state.eval_history[-1][0]
        if state.best_step == state.step and last_evaluated == state.step:
            return  # the weights in memory are the best
        from safetensors.torch import load_file, load_model

        path = best_dir(self.run_dir, state.best_step) / "model.safetensors"
        if not path.is_file():
            raise GraftError(
                f"the best weights (step {state.best_step}) are missing from {path.parent}; "
                "train again (--overwrite), or set train.keep=last to ship the last weights"
            )
        if sharding.is_sharded(model):
            sharding.load_full_state(model, load_file(str(path)))
        else:
            load_model(self.accelerator.unwrap_model(model), str(path))
        log.info(
            "the bundle holds the best evaluation's weights: step %d (%s %.4f)",
            state.best_step,
            self.headline,
            state.best_value,
        )


def build(recipe, accelerator, headline: str, evals: dict, evaluate, on_eval=None):
    """The Evaluator of a run whose recipe sets `train.eval_every` (None when it does not);
    `evals`: the run's labelled splits, which must hold the eval split."""
    if not recipe.train.eval_every:
        return None
    if "eval" not in evals:
        raise GraftError(
            f"recipe {recipe.name}: train.eval_every evaluates on the eval split while "
            "training; give data.eval a file, or set train.eval_every=0"
        )
    return Evaluator(evaluate, headline, recipe.train, recipe.run_dir, accelerator, on_eval)


def record(cfg, state) -> dict:
    """metrics.json's record of the evaluations during training (empty without them)."""
    if not cfg.eval_every:
        return {}
    return {
        "eval_history": state.eval_history,
        "best_step": state.best_step,
        "stopped_early": state.stopped_early,
        "bundle_weights": f"step {state.best_step} (best)" if cfg.keep == "best" else "last",
    }


def _fields(state) -> dict:
    """What an evaluation changes in the state, for the other processes."""
    keys = ("eval_history", "best_step", "best_value", "bad_evals", "stopped_early")
    return {key: getattr(state, key) for key in keys}


def _checkpointed_best(run_dir: Path) -> int:
    """The best step recorded by the newest checkpoint (0: none), which a resume needs."""
    import json

    found = checkpoint.latest(run_dir)
    if found is None or not (found / "state.json").is_file():
        return 0
    return json.loads((found / "state.json").read_text(encoding="utf-8")).get("best_step", 0)
