"""Adaptation methods: one module per method, each implementing `methods.base.Method`,
registered in `graftwork.registry.METHODS`. Helpers every method shares live here."""

from __future__ import annotations


def head_modules(model) -> list[str]:
    """Names of the task-head modules: top-level children outside the pretrained backbone.
    An encoder-decoder has none: its language-model head is pretrained (tied to its embeddings;
    a warm-started one's new cross-attention lies inside its decoder)."""
    if getattr(getattr(model, "config", None), "is_encoder_decoder", False):
        return []
    prefix = getattr(model, "base_model_prefix", "")
    # a language model's output embeddings (a causal LM's lm_head) are pretrained, not a head
    lm_head = model.get_output_embeddings() if hasattr(model, "get_output_embeddings") else None
    return [
        name
        for name, child in model.named_children()
        if name != prefix and child is not lm_head and any(True for _ in child.parameters())
    ]


def train_head_only(model):
    """Freeze every parameter except the task head's; returns the model."""
    model.requires_grad_(False)
    for name in head_modules(model):
        getattr(model, name).requires_grad_(True)
    return model


def count_parameters(model) -> dict[str, float]:
    """Trainable and total parameter counts, and the trainable share in percent."""
    total = sum(p.numel() for p in model.parameters())
    trainable = sum(p.numel() for p in model.parameters() if p.requires_grad)
    return {"trainable": trainable, "total": total, "trainable_pct": 100.0 * trainable / total}
