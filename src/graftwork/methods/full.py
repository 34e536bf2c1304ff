"""Full fine-tuning, optionally with part of the backbone frozen or trained more gently.

Every parameter of backbone and head trains, except what the config holds back:
- `freeze_embeddings` and `freeze_layers: k` keep the embeddings / the first k layers fixed;
- `layer_lr_decay: d` gives layer i of L the learning rate lr·d^(L-i) and the embeddings
  lr·d^(L+1), so the lower (more general) layers move less (layer-wise LR decay, as in
  ELECTRA/ULMFiT's discriminative fine-tuning); the head keeps lr;
- `gradual_unfreeze: true` starts with only the head trainable and unfreezes one layer from the
  top at evenly spaced steps within the first `unfreeze_fraction` of training, then the
  embeddings (ULMFiT's gradual unfreezing; "progressive" training).
Layers are found by `layers.stack` (BERT family, DistilBERT, GPT-2).

Leaves out: slanted triangular schedules (the loop's warm-up/linear decay is used) and
unfreezing at epoch boundaries only (steps are finer and work for fractional epochs).
"""

from __future__ import annotations

from pathlib import Path
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field

from graftwork.errors import RecipeError
from graftwork.methods.base import (
    files_bytes,
    load_plain,
    no_choice,
    plain_finish,
    supported,
)


class FullConfig(BaseModel):
    model_config = ConfigDict(extra="forbid")
    type: Literal["full"] = "full"
    freeze_embeddings: bool = Field(False, description="Keep the embeddings fixed.")
    freeze_layers: int = Field(0, ge=0, description="Keep the first k layers fixed.")
    layer_lr_decay: float | None = Field(
        None, gt=0, le=1, description="Layer i of L trains at lr·d^(L-i); embeddings lr·d^(L+1)."
    )
    gradual_unfreeze: bool = Field(
        False, description="Start with the head only and unfreeze layers top-down."
    )
    unfreeze_fraction: float = Field(
        0.5, gt=0, le=1, description="Share of training by which everything is unfrozen."
    )

    @property
    def plain(self) -> bool:
        return not (
            self.freeze_embeddings
            or self.freeze_layers
            or self.layer_lr_decay
            or self.gradual_unfreeze
        )


Config = FullConfig  # the registry reads each method's and objective's config here
DEFAULT_LR = 1e-4
REFUSES: dict[str, str] = {}
SUPPORTS = supported(REFUSES)


def _depths(model, config: FullConfig) -> dict[str, int]:
    from graftwork.backbones.layout import depth_of_parameters  # torch

    depths = depth_of_parameters(model)
    layers = max(depths.values()) - 1
    if config.freeze_layers > layers:
        raise RecipeError(
            f"method.freeze_layers is {config.freeze_layers} but the backbone has {layers} "
            f"layers; use at most {layers} (or method frozen to train the head only)"
        )
    return depths


def frozen_depths(config: FullConfig) -> set[int]:
    """Depths that never train: 0 (embeddings) and 1..k (the first k layers)."""
    fixed = set(range(1, config.freeze_layers + 1))
    if config.freeze_embeddings:
        fixed.add(0)
    return fixed


def apply(model, config: FullConfig):
    model.requires_grad_(True)
    if config.plain:
        return model
    depths = _depths(model, config)
    fixed = frozen_depths(config)
    for name, param in model.named_parameters():
        if depths[name] in fixed:
            param.requires_grad_(False)
    return model


def lr_scales(model, config: FullConfig) -> dict[str, float] | None:
    """Parameter name → learning-rate multiplier (None: all train at lr)."""
    if not config.layer_lr_decay:
        return None
    depths = _depths(model, config)
    top = max(depths.values())
    # top = L+1: embeddings (depth 0) get d^(L+1), layer i (depth i+1) d^(L-i), the head d^0
    return {name: config.layer_lr_decay ** (top - depth) for name, depth in depths.items()}


def schedule(model, config: FullConfig):
    """`on_step(step, steps)` for gradual unfreezing (None when the config has none).

    Stage s (0 = head only) trains the top s layers too; after the last layer the
    embeddings follow. The stage is a function of the step, so resume lands on the same one."""
    if not config.gradual_unfreeze:
        return None
    depths = _depths(model, config)
    top = max(depths.values())
    fixed = frozen_depths(config)
    params = dict(model.named_parameters())
    stages = top + 1  # head only, then L layers, then embeddings: top+1 stages in all
    current = {"stage": None}

    def on_step(step: int, steps: int) -> None:
        span = max(1, int(config.unfreeze_fraction * steps))
        stage = min(stages - 1, step * stages // span)
        if stage == current["stage"]:
            return
        current["stage"] = stage
        lowest = top - stage  # depths >= lowest train
        for name, param in params.items():
            param.requires_grad_(depths[name] >= lowest and depths[name] not in fixed)

    return on_step


finish = plain_finish
select = no_choice
load = load_plain


def task_bytes(bundle: Path, trainable: int) -> int:
    """Everything: a second task on the backbone is a second whole model."""
    return files_bytes(Path(bundle) / "model.safetensors")
