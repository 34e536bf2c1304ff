"""The recipe's `train` section: the optimisation loop's settings."""

from __future__ import annotations

from typing import Literal

from pydantic import Field, model_validator

from graftwork.config.base import Section as _Section


class EarlyStopping(_Section):
    """Stop when the eval split's headline metric has not improved by more than `min_delta`
    for `patience` evaluations in a row (`train.eval_every` sets how often they come)."""

    patience: int = Field(3, ge=1, description="Evaluations without improvement to stop after.")
    min_delta: float = Field(0.0, ge=0, description="Smallest rise that counts as improvement.")


class DistributedConfig(_Section):
    """How several processes share the model: `ddp` replicates it (every process holds all
    weights), `fsdp` shards weights, gradients and optimizer state across them (FSDP2,
    `torch.distributed.fsdp.fully_shard`)."""

    strategy: Literal["ddp", "fsdp"] = "ddp"


class TrainConfig(_Section):
    epochs: float = Field(1.0, gt=0)
    batch_size: int = Field(32, ge=1)
    eval_batch_size: int = Field(64, ge=1)
    lr: float = Field(1e-4, gt=0)
    weight_decay: float = Field(0.01, ge=0)
    warmup: float = Field(0.06, ge=0, lt=1, description="Fraction of steps to warm up.")
    grad_accum: int = Field(1, ge=1)
    max_grad_norm: float | None = Field(1.0, gt=0)
    precision: Literal["fp32", "bf16", "fp16"] = "fp32"
    seed: int = 13
    group_by_length: bool = True
    checkpoint_every: int = Field(0, ge=0, description="Optimizer steps; 0 = only per epoch.")
    log_every: int = Field(50, ge=1)
    threads: int | None = Field(None, ge=1, description="CPU threads (default: all cores).")
    gradient_checkpointing: bool = Field(
        False, description="Recompute activations in backward: less memory, ~30 % more time."
    )
    eval_every: int = Field(
        0,
        ge=0,
        description="Optimizer steps between evaluations on data.eval during training (and one "
        "at the last step); 0 = evaluate only after training.",
    )
    early_stopping: EarlyStopping | None = None
    keep: Literal["best", "last"] = Field(
        "best",
        description="With eval_every: the bundle holds the best-evaluated weights, or the last.",
    )
    distributed: DistributedConfig = DistributedConfig()
    max_minutes: float | None = Field(
        None,
        gt=0,
        description="Stop after this much training time (the LR schedule is not shortened).",
    )

    @model_validator(mode="after")
    def _early_stopping_needs_evaluations(self):
        if self.early_stopping is not None and not self.eval_every:
            raise ValueError(
                "train.early_stopping needs evaluations during training: set train.eval_every "
                "to a number of optimizer steps (e.g. train.eval_every=100)"
            )
        return self
