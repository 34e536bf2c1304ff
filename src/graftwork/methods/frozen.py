"""Frozen backbone: only the task head trains (a linear probe on the pretrained features).

The cheapest method and the baseline every other one must beat; `graft compare` runs it beside
full, LoRA and adapters.
"""

from __future__ import annotations

from pathlib import Path
from typing import Literal

from pydantic import BaseModel, ConfigDict


class FrozenConfig(BaseModel):
    model_config = ConfigDict(extra="forbid")
    type: Literal["frozen"] = "frozen"


Config = FrozenConfig  # the registry reads each method's and objective's config here


def apply(model, config: FrozenConfig):
    from graftwork.methods import head_modules

    model.requires_grad_(False)
    for name in head_modules(model):
        getattr(model, name).requires_grad_(True)
    return model


def finish(model, out_dir: Path):
    model.requires_grad_(True)
    return model
