"""Configs of the recipe's `compress:` section (each stage optional, run in order:
distill → prune → export). Kept free of imports so `recipe.py` can use them.

The prune and export settings are declared here once: `graft prune` / `graft export` take
their flags' defaults (and help) from these fields, and `prune_bundle` / `export_bundle` their
arguments' defaults (`PRUNE`, `EXPORT`: the sections as a recipe's empty `prune: {}` /
`export: {}` gives them)."""

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
    recovery_epochs: float = Field(
        1.0, ge=0, description="Fine-tuning after pruning, in epochs (0: none)."
    )
    recovery_lr: float | None = Field(
        None,
        gt=0,
        description="Default: the recipe's lr for a full fine-tuning run, 5e-5 otherwise.",
    )
    max_examples: int | None = Field(None, ge=1, description="Sample for importance/recovery.")


# the INT8 accuracy budget: points of the headline metric an INT8 artifact may lose on the
# export's check examples, and still be served by `auto`
MAX_DROP = 0.5


class ExportConfig(_Section):
    int8: bool = Field(
        True, description="Also write INT8 models (dynamic ONNX; static OpenVINO with openvino)."
    )
    keep_attention_fp32: bool = Field(False, description="INT8: leave attention products in FP32.")
    openvino: bool = Field(
        False, description="Also write OpenVINO IRs (FP32; static INT8 with int8)."
    )
    max_drop: float = Field(
        MAX_DROP,
        ge=0,
        description="INT8 accuracy budget: points of the headline metric an INT8 artifact may "
        "lose on the check examples (OpenVINO keeps operations in FP32 to stay within it; auto "
        "serves no artifact over it).",
    )


PRUNE = PruneConfig()
EXPORT = ExportConfig()


class CompressConfig(_Section):
    distill: DistillConfig | None = None
    prune: PruneConfig | None = None
    export: ExportConfig | None = None
