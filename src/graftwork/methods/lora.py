"""LoRA through the `peft` library.

The backbone is frozen; low-rank updates go into the `target` modules and the task head is
trained in full (`modules_to_save`). `finish` saves the adapter in PEFT format under
`adapter/` (loadable with `peft.PeftModel.from_pretrained`) and returns the merged model, so
the bundle itself is a plain transformers model.
"""

from __future__ import annotations

from pathlib import Path
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field

ADAPTER_DIR = "adapter"


class LoraConfig(BaseModel):
    model_config = ConfigDict(extra="forbid")
    type: Literal["lora"] = "lora"
    r: int = Field(8, ge=1, description="Rank of the update matrices.")
    alpha: float = Field(16, gt=0, description="Scale: the update is multiplied by alpha / r.")
    dropout: float = Field(0.05, ge=0, lt=1)
    target: list[str] = Field(
        default_factory=lambda: ["query", "value"],
        description="Module names (suffixes) that get LoRA updates.",
    )


Config = LoraConfig  # the registry reads each method's and objective's config here


def apply(model, config: LoraConfig):
    import peft

    from graftwork.methods import head_modules

    peft_config = peft.LoraConfig(
        r=config.r,
        lora_alpha=config.alpha,
        lora_dropout=config.dropout,
        target_modules=list(config.target),
        modules_to_save=head_modules(model),
    )
    return peft.get_peft_model(model, peft_config)


def finish(model, out_dir: Path):
    model.save_pretrained(str(out_dir / ADAPTER_DIR), safe_serialization=True)
    return model.merge_and_unload()
