"""Full fine-tuning: every parameter of backbone and head is trained."""

from __future__ import annotations

from pathlib import Path
from typing import Literal

from pydantic import BaseModel, ConfigDict


class FullConfig(BaseModel):
    model_config = ConfigDict(extra="forbid")
    type: Literal["full"] = "full"


def apply(model, config: FullConfig):
    for param in model.parameters():
        param.requires_grad_(True)
    return model


def finish(model, out_dir: Path):
    return model
