"""Frozen backbone: only the task head trains (a linear probe on the pretrained features).

The cheapest method and the baseline every other one must beat; `graft compare` runs it beside
full, LoRA and adapters. The bundle is the whole model (backbone unchanged, head trained).
"""

from __future__ import annotations

from pathlib import Path
from typing import Literal

from pydantic import BaseModel, ConfigDict

from graftwork.methods import train_head_only
from graftwork.methods.base import (
    FROZEN_ENCODER,
    load_plain,
    no_choice,
    no_schedule,
    one_lr,
    plain_finish,
    supported,
)


class FrozenConfig(BaseModel):
    model_config = ConfigDict(extra="forbid")
    type: Literal["frozen"] = "frozen"


Config = FrozenConfig  # the registry reads each method's and objective's config here
DEFAULT_LR = 5e-3
REFUSES = dict(FROZEN_ENCODER)
SUPPORTS = supported(REFUSES)


def apply(model, config: FrozenConfig):
    return train_head_only(model)


lr_scales = one_lr
schedule = no_schedule
finish = plain_finish
select = no_choice
load = load_plain


def task_bytes(bundle: Path, trainable: int) -> int:
    """The head, in fp32: the trainable parameters are the head's."""
    return trainable * 4
