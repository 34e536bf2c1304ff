"""The recipe's `generation` section: how generating tasks decode (causal_lm, seq2seq).

The same settings drive evaluation during and after a run, `graft predict` and `graft generate`
on the bundle (unless flags override them) and the server's generate endpoint. Greedy decoding
is the default (`greedy: true`, or beam search with `num_beams` > 1); `greedy: false` samples
with `temperature`, `top_p` and `top_k`, from a generator seeded by `seed`.

Left out: repetition penalties, stop strings and constrained decoding (transformers has them;
pass them in Python through `graftwork.inference.generate` when needed).
"""

from __future__ import annotations

from pydantic import Field, model_validator

from graftwork.config.base import Section

SAMPLING = ("temperature", "top_p", "top_k")


class GenerationConfig(Section):
    max_new_tokens: int = Field(64, ge=1, le=8192, description="Most tokens generated per input.")
    greedy: bool = Field(
        True, description="Pick the likeliest token (or beam); false: sample from the model."
    )
    num_beams: int = Field(1, ge=1, le=32, description="Beam search width (greedy only).")
    # NaN would pass no bound's check as such: it is refused as not a finite number
    temperature: float = Field(
        1.0, gt=0, le=10, allow_inf_nan=False, description="Sampling: divide logits by this."
    )
    top_p: float = Field(
        1.0, gt=0, le=1, allow_inf_nan=False, description="Sampling: nucleus probability mass."
    )
    top_k: int = Field(50, ge=0, description="Sampling: only the k likeliest tokens (0: all).")
    seed: int = Field(0, description="Sampling: seed of the generator (each batch reseeds it).")

    @model_validator(mode="after")
    def _sampling_needs_sampling(self) -> GenerationConfig:
        fields = type(self).model_fields
        given = [k for k in SAMPLING if getattr(self, k) != fields[k].default]
        if self.greedy and given:
            raise ValueError(
                f"generation.{given[0]} applies to sampling, but generation.greedy is true; set "
                "greedy: false to sample, or remove it"
            )
        if not self.greedy and self.num_beams > 1:
            raise ValueError("generation.num_beams > 1 is beam search: set greedy: true with it")
        return self

    def generate_kwargs(self) -> dict:
        """Keyword arguments of transformers' `generate` for these settings (seed aside)."""
        out: dict = {
            "max_new_tokens": self.max_new_tokens,
            "num_beams": self.num_beams,
            "do_sample": not self.greedy,
        }
        if not self.greedy:
            out.update(temperature=self.temperature, top_p=self.top_p, top_k=self.top_k)
        return out
