"""Prompt tuning (Lester et al. 2021) through `peft`'s `PromptTuningConfig`.

`tokens` virtual token embeddings (one vector of the backbone's hidden size each, randomly
initialised) are put in front of the input embeddings; the backbone is frozen, the embeddings
and the task head train. What the bundle holds, how it loads and which stages refuse it are
the prompt-learning methods' (`methods/prompt.py`).

`DEFAULT_LR` 1e-2: prompt tuning needs a far higher rate than LoRA (Lester et al. train at 0.3
with Adafactor; peft's examples use AdamW at 1e-2 to 3e-2); not tuned here.
"""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, ConfigDict, Field

from graftwork.methods import prompt

# what the prompt-learning methods share: refusals, one learning rate, no schedule, the bundle
from graftwork.methods.prompt import REFUSES as REFUSES
from graftwork.methods.prompt import SUPPORTS as SUPPORTS
from graftwork.methods.prompt import finish as finish
from graftwork.methods.prompt import load as load
from graftwork.methods.prompt import lr_scales as lr_scales
from graftwork.methods.prompt import schedule as schedule
from graftwork.methods.prompt import select as select
from graftwork.methods.prompt import task_bytes as task_bytes


class PromptTuningConfig(BaseModel):
    model_config = ConfigDict(extra="forbid")
    type: Literal["prompt_tuning"] = "prompt_tuning"
    tokens: int = Field(20, ge=1, description="Virtual tokens put in front of the input.")


Config = PromptTuningConfig  # the registry reads each method's and objective's config here
DEFAULT_LR = 1e-2


def apply(model, config: PromptTuningConfig):
    import peft

    return prompt.wrap(model, peft.PromptTuningConfig(**prompt.options(model, config.tokens)))
