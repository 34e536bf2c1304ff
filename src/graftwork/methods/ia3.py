"""IA3 (infused adapter by inhibiting and amplifying inner activations, Liu et al. 2022)
through `peft`.

IA3 learns one scaling vector per target module, starting at ones (so a freshly applied IA3
computes exactly what the backbone does): it multiplies the output of the `target` modules,
or, for those also in `feedforward`, their input. The defaults are peft's for BERT
(`TRANSFORMERS_MODELS_TO_IA3_TARGET_MODULES_MAPPING["bert"]`: key, value, output.dense;
feedforward output.dense). Module names match as suffixes, so `output.dense` names both the
attention output projection and the FFN output projection of every layer, and both scale
their input; the FFN one is the paper's scaling of the FFN's inner activation. The backbone is
frozen; the vectors and the task head train. As for LoRA (`methods/lora.py`, whose `wrap`,
`finish` and bundle functions this module reuses) `finish` saves the adapter in PEFT format
under `adapter/` and returns the merged model: IA3 scales are linear, so they fold into the
weights and the bundle is a plain transformers model.

`DEFAULT_LR` 3e-3 is the T-Few recipe's (Liu et al. 2022); not tuned here.

Leaves out: IA3 on convolutions and architectures other than the BERT family by default (give
`target` and `feedforward` for them).
"""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, model_validator

from graftwork.methods import head_modules, lora


class Ia3Config(BaseModel):
    model_config = ConfigDict(extra="forbid")
    type: Literal["ia3"] = "ia3"
    target: list[str] = Field(
        default_factory=lambda: ["key", "value", "output.dense"],
        description="Module names (suffixes) whose output (or input, if feedforward) is scaled.",
    )
    feedforward: list[str] = Field(
        default_factory=lambda: ["output.dense"],
        description="Those of target that are feed-forward layers: their input is scaled.",
    )

    @model_validator(mode="after")
    def _feedforward_in_target(self):
        extra = [name for name in self.feedforward if name not in self.target]
        if extra:
            raise ValueError(f"feedforward names {extra} that are not in target {self.target}")
        return self


Config = Ia3Config  # the registry reads each method's and objective's config here
DEFAULT_LR = 3e-3
REFUSES = lora.REFUSES
SUPPORTS = lora.SUPPORTS


def apply(model, config: Ia3Config):
    import peft

    peft_config = peft.IA3Config(
        target_modules=list(config.target),
        feedforward_modules=list(config.feedforward),
        modules_to_save=head_modules(model),
    )
    return lora.wrap(model, peft_config)


lr_scales = lora.lr_scales
schedule = lora.schedule
finish = lora.finish
select = lora.select
load = lora.load
task_bytes = lora.task_bytes
