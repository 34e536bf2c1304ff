"""DoRA (weight-decomposed low-rank adaptation, Liu et al. 2024) through `peft`.

DoRA splits each target weight into a magnitude (one trainable number per output feature) and
a direction that is updated like LoRA's; in peft it is `LoraConfig(use_dora=True)`. Options,
defaults and what the bundle holds are LoRA's (`methods/lora.py`, whose functions this module
reuses): the backbone is frozen, the updates and magnitudes of the `target` modules and the
task head train, `finish` saves the adapter in PEFT format under `adapter/` and returns the
merged model, so the bundle is a plain transformers model.

A freshly applied DoRA gives the base model's outputs up to rounding, not bit for bit: the
magnitude starts as the weight's norm and the weight is divided by the norm it recomputes.
`DEFAULT_LR` is LoRA's (the DoRA paper trains with LoRA's learning rates); not tuned here.

Leaves out: DoRA on embeddings and convolutions (peft has them; BERT's targets are linear).
"""

from __future__ import annotations

from typing import Literal

from graftwork.methods import lora


class DoraConfig(lora.LoraConfig):
    type: Literal["dora"] = "dora"  # type: ignore[assignment]


Config = DoraConfig  # the registry reads each method's and objective's config here
DEFAULT_LR = lora.DEFAULT_LR
REFUSES = lora.REFUSES
SUPPORTS = lora.SUPPORTS


def apply(model, config: DoraConfig):
    return lora.wrap(model, lora.peft_config(model, config, use_dora=True))


lr_scales = lora.lr_scales
schedule = lora.schedule
finish = lora.finish
select = lora.select
load = lora.load
task_bytes = lora.task_bytes
