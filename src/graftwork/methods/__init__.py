"""Adaptation methods: a registry of `name → module`.

Each method module holds a pydantic config (with a `type` literal) and two functions:
`apply(model, config) -> model` (make the model trainable the method's way) and
`finish(model, out_dir) -> model` (write the method's own artifacts, such as a PEFT adapter,
and return a plain transformers model to save as the bundle). Optionally also
`lr_scales(model, config) -> {parameter name: lr multiplier} | None` and
`schedule(model, config) -> on_step(step, steps) | None` (see `full`). Adding a method is one
module and one line in each dict below.
"""

from __future__ import annotations

from typing import Annotated

from pydantic import Field

from . import adapter, frozen, full, lora

METHODS = {"full": full, "lora": lora, "adapter": adapter, "frozen": frozen}
METHOD_CONFIGS = {
    "full": full.FullConfig,
    "frozen": frozen.FrozenConfig,
    "lora": lora.LoraConfig,
    "adapter": adapter.AdapterConfig,
}

MethodConfig = Annotated[
    full.FullConfig | lora.LoraConfig | adapter.AdapterConfig | frozen.FrozenConfig,
    Field(discriminator="type"),
]


def head_modules(model) -> list[str]:
    """Names of the task-head modules: top-level children outside the pretrained backbone."""
    prefix = getattr(model, "base_model_prefix", "")
    return [
        name
        for name, child in model.named_children()
        if name != prefix and any(True for _ in child.parameters())
    ]


def count_parameters(model) -> dict[str, float]:
    """Trainable and total parameter counts, and the trainable share in percent."""
    total = sum(p.numel() for p in model.parameters())
    trainable = sum(p.numel() for p in model.parameters() if p.requires_grad)
    return {"trainable": trainable, "total": total, "trainable_pct": 100.0 * trainable / total}
