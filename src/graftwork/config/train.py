"""The recipe's `train` section: the optimisation loop's settings."""

from __future__ import annotations

from typing import Literal

from pydantic import Field

from graftwork.config.base import Section as _Section


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
    max_minutes: float | None = Field(
        None,
        gt=0,
        description="Stop after this much training time (the LR schedule is not shortened).",
    )
