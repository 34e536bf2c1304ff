"""P-tuning (Liu et al. 2021, "GPT Understands, Too") through `peft`'s `PromptEncoderConfig`.

Like prompt tuning, `tokens` virtual tokens go in front of the input embeddings, but they are
computed by a small prompt encoder (an MLP, or an LSTM followed by one, of width `hidden`) from
learned embeddings, which the paper found steadier to train; the backbone is frozen, the
encoder and the task head train. What the bundle holds, how it loads and which stages refuse it
are the prompt-learning methods' (`methods/prompt.py`). P-tuning v2 is method `prefix`.

`DEFAULT_LR` 1e-2, as for the other prompt methods; not tuned here.
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


class PtuningConfig(BaseModel):
    model_config = ConfigDict(extra="forbid")
    type: Literal["ptuning"] = "ptuning"
    tokens: int = Field(20, ge=1, description="Virtual tokens put in front of the input.")
    encoder: Literal["mlp", "lstm"] = Field("mlp", description="The prompt encoder's kind.")
    hidden: int | None = Field(
        None, ge=1, description="The prompt encoder's width (default: the backbone's hidden size)."
    )


Config = PtuningConfig  # the registry reads each method's and objective's config here
DEFAULT_LR = 1e-2


def apply(model, config: PtuningConfig):
    import peft

    peft_config = peft.PromptEncoderConfig(
        **prompt.options(model, config.tokens),
        encoder_reparameterization_type=config.encoder.upper(),
        encoder_hidden_size=config.hidden or model.config.hidden_size,
    )
    return prompt.wrap(model, peft_config)
