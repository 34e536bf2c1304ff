"""LoRA through the `peft` library.

The backbone is frozen; low-rank updates go into the `target` modules (by default the
attention's query and value projections, named as the backbone's layout names them:
`backbones.layout`) and the task head is trained in full (`modules_to_save`; a causal LM's
head is its pretrained lm_head, which stays frozen). `finish` saves the adapter in PEFT format under
`adapter/` (loadable with `peft.PeftModel.from_pretrained`) and returns the merged model, so
the bundle itself is a plain transformers model. The other peft methods (`dora`, `ia3`) reuse
`wrap`, `finish` and the bundle functions here with their own peft config.
"""

from __future__ import annotations

from pathlib import Path
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field

from graftwork.errors import GraftError
from graftwork.methods import head_modules
from graftwork.methods.base import (
    FROZEN_ENCODER,
    files_bytes,
    load_plain,
    no_choice,
    no_schedule,
    one_lr,
    supported,
)

ADAPTER_DIR = "adapter"


class LoraConfig(BaseModel):
    model_config = ConfigDict(extra="forbid")
    type: Literal["lora"] = "lora"
    r: int = Field(8, ge=1, description="Rank of the update matrices.")
    alpha: float = Field(16, gt=0, description="Scale: the update is multiplied by alpha / r.")
    dropout: float = Field(0.05, ge=0, lt=1)
    target: list[str] | None = Field(
        None,
        min_length=1,
        description="Module names (suffixes) that get LoRA updates (default: the attention's "
        "query and value projections: query/value for BERT, q_proj/v_proj for Llama, q/v for "
        "T5, c_attn for GPT-2).",
    )


Config = LoraConfig  # the registry reads each method's and objective's config here
DEFAULT_LR = 1e-3
REFUSES = dict(FROZEN_ENCODER)
SUPPORTS = supported(REFUSES)


def peft_config(model, config: LoraConfig, **extra):
    """The peft LoraConfig of `config` for `model` (its head trains in full); `extra` adds
    peft options (DoRA's use_dora)."""
    import peft

    return peft.LoraConfig(
        r=config.r,
        lora_alpha=config.alpha,
        lora_dropout=config.dropout,
        target_modules=targets(model, config),
        modules_to_save=head_modules(model),
        **extra,
    )


def targets(model, config: LoraConfig) -> list[str]:
    """`config.target`, else the last names of the paths of the attention's query and value
    projections (q, k and v in one where the model fuses them) in the backbone's layout."""
    if config.target:
        return list(config.target)
    from graftwork.backbones.layout import find  # torch

    parts = [model]
    if find(model) is None and getattr(model.config, "is_encoder_decoder", False):
        parts = [model.get_encoder(), model.get_decoder()]  # warm-started from two backbones
    names: list[str] = []
    for stack in [s for part in parts if (found := find(part)) is not None for s in found.stacks]:
        paths = (stack.stack.q, stack.stack.v) if stack.stack.q else (stack.stack.qkv,)
        for path in paths:
            for name in (alt.split(".")[-1] for alt in (path or "").split("|") if alt):
                if name not in names:
                    names.append(name)
    if not names:
        raise GraftError(
            f"method {config.type}: {type(model).__name__} is not in the layout table "
            "(backbones.layout), so its attention projections have no default names; give "
            "method.target, e.g. [q_proj, v_proj]"
        )
    return names


def wrap(model, config):
    """`model` as a peft model of the peft `config` (backbone frozen, its updates trainable)."""
    import peft

    return peft.get_peft_model(model, config)


def apply(model, config: LoraConfig):
    return wrap(model, peft_config(model, config))


lr_scales = one_lr
schedule = no_schedule


def finish(model, out_dir: Path):
    """Save the peft adapter under `adapter/`; return the model with the updates merged in."""
    model.save_pretrained(str(out_dir / ADAPTER_DIR), safe_serialization=True)
    return model.merge_and_unload()


select = no_choice
load = load_plain  # the bundle's weights are the merged model


def task_bytes(bundle: Path, trainable: int) -> int:
    """The peft adapter folder (the updates and the head)."""
    return files_bytes(Path(bundle) / ADAPTER_DIR)
