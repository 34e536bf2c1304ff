"""Configs of the recipe's `compress:` section (each stage optional, run in order:
distill → prune → export). Kept free of imports so `recipe.py` can use them."""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict, Field


class _Section(BaseModel):
    model_config = ConfigDict(extra="forbid")


class DistillConfig(_Section):
    student: str | None = Field(
        None, description="A smaller backbone (name or folder) sharing the teacher's tokenizer."
    )
    student_layers: int | None = Field(
        3, ge=1, description="Otherwise: a copy of the teacher keeping this many layers."
    )
    temperature: float = Field(2.0, gt=0)
    alpha: float = Field(0.5, ge=0, le=1, description="Weight of the soft (KL) loss.")
    hidden_weight: float = Field(0.0, ge=0, description="Weight of hidden-state MSE matching.")
    unlabeled: str | None = Field(
        None, description="Text file (one text a line) labelled by the teacher and added."
    )
    epochs: float | None = Field(None, gt=0, description="Default: train.epochs.")
    lr: float | None = Field(None, gt=0, description="Default: train.lr.")


class PruneConfig(_Section):
    heads: float = Field(0.3, ge=0, lt=1, description="Fraction of attention heads removed.")
    ffn: float = Field(0.3, ge=0, lt=1, description="Fraction of FFN neurons removed.")
    recovery_epochs: float = Field(1.0, ge=0)
    recovery_lr: float | None = Field(None, gt=0)
    max_examples: int | None = Field(None, ge=1, description="Sample for importance/recovery.")


# the INT8 accuracy budget: points of the headline metric an INT8 artifact may lose on the
# export's check examples, and still be served by `auto`
MAX_DROP = 0.5


class ExportConfig(_Section):
    int8: bool = True
    keep_attention_fp32: bool = False
    openvino: bool = False
    max_drop: float = Field(MAX_DROP, ge=0)


class CompressConfig(_Section):
    distill: DistillConfig | None = None
    prune: PruneConfig | None = None
    export: ExportConfig | None = None
