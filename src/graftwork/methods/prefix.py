"""Prefix tuning and P-tuning v2 through `peft`'s `PrefixTuningConfig`.

`tokens` learned keys and values are put in front of every layer's attention (peft passes them
as `past_key_values`), so every real token of every layer attends to them; the backbone is
frozen, the prefix and the task head train. By default (`projection: false`) the prefix is
learned directly: deep prompt tuning with a linear head on the encoder's output, which is
P-tuning v2 (Liu et al. 2022). `projection: true` learns it through a two-layer MLP of width
`hidden` (Li and Liang 2021's reparameterisation; peft's `prefix_projection`); peft's
maintainers name the two as one method (peft issue #630). What the bundle holds (the prefix as
peft computes it is saved, the MLP too), how it loads and which stages refuse it are the
prompt-learning methods' (`methods/prompt.py`).

`DEFAULT_LR` 1e-2: P-tuning v2 trains BERT-sized encoders at 5e-3 to 1e-2; not tuned here.
"""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, model_validator

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


class PrefixConfig(BaseModel):
    model_config = ConfigDict(extra="forbid")
    type: Literal["prefix"] = "prefix"
    tokens: int = Field(20, ge=1, description="Virtual tokens (keys and values) per layer.")
    projection: bool = Field(
        False,
        description="Learn the prefix through an MLP (Li and Liang's prefix tuning); false: "
        "learn it directly (P-tuning v2's deep prompts).",
    )
    hidden: int | None = Field(
        None, ge=1, description="Width of the projection MLP (default: the backbone's hidden size)."
    )

    @model_validator(mode="after")
    def _hidden_needs_projection(self):
        if self.hidden is not None and not self.projection:
            raise ValueError(
                "hidden is the projection MLP's width; set projection: true or drop it"
            )
        return self


Config = PrefixConfig  # the registry reads each method's and objective's config here
DEFAULT_LR = 1e-2


def apply(model, config: PrefixConfig):
    import peft

    peft_config = peft.PrefixTuningConfig(
        **prompt.options(model, config.tokens),
        prefix_projection=config.projection,
        encoder_hidden_size=config.hidden or model.config.hidden_size,
    )
    return prompt.wrap(model, peft_config)
