"""Method `setfit`: the bundles `graft fewshot` writes (a sentence encoder and a logistic head).

A few-shot bundle is a standard classification bundle: `graftwork.json` (task classification,
method setfit, labels), the encoder's Hugging Face weights and `config.json` (whose `id2label`
names the labels) with its tokenizer at the root, which is also the sentence-transformers folder
the run tuned, and the head in `setfit-head.safetensors` (weight, bias, and the pooling as
metadata). `load` builds `methods.sentence.SentenceClassifier` from them, so `graftwork.load`,
`graft predict / eval / serve / export` and `graft info` take it like any classifier.

The model is trained by `graft fewshot` (runs/fewshot.py: contrastive pairs, then
scikit-learn), not by the shared loop: `apply` refuses, and so does every stage that would
train or rebuild the model (distillation, pruning, EWC, multi-task training). Its config.json
holds the bare encoder (e.g. `BertModel`), which `model_class` tells the manifest check to
expect instead of a `…ForSequenceClassification`.

Leaves out: adapters or choices inside the bundle (`select`: none), training any other task.
"""

from __future__ import annotations

from pathlib import Path
from typing import Literal

from pydantic import BaseModel, ConfigDict

from graftwork.backbones.quiet import quiet
from graftwork.errors import BundleError, RecipeError
from graftwork.methods.base import files_bytes, no_choice, no_schedule, one_lr, supported

HEAD_FILE = "setfit-head.safetensors"
TASKS = ("classification",)  # the tasks its bundles hold
TRAINS = False  # the shared loop cannot train it (`graft fewshot` does)


class SetfitConfig(BaseModel):
    model_config = ConfigDict(extra="forbid")
    type: Literal["setfit"] = "setfit"


Config = SetfitConfig  # the registry reads each method's and objective's config here
DEFAULT_LR = 2e-5
_TRAINED = "{where} was trained with method setfit (graft fewshot: a sentence encoder and a "
REFUSES = {
    "distill": _TRAINED + "logistic head); distillation starts from a bundle of graft train: "
    "fine-tune a teacher with method full",
    "prune": _TRAINED + "logistic head), which pruning does not rebuild; prune a bundle of "
    "graft train",
    "ewc_previous": _TRAINED + "logistic head); objective ewc's task B starts from a bundle "
    "of graft train (method full)",
    "ewc": "recipe {where}: method setfit is trained by graft fewshot, not under an objective; "
    "remove the objective or use method full",
    "multitask": "recipe {where}: method setfit is trained by graft fewshot, one task at a "
    "time; use method full for multitask training",
}
SUPPORTS = supported(REFUSES)


def model_class():
    """The auto class its bundles' config.json loads (the bare encoder), which the manifest
    check expects in place of the task's (`bundle.manifest.contradiction`)."""
    from transformers import AutoModel

    return AutoModel


def apply(model, config: SetfitConfig):
    raise RecipeError(
        "method setfit is trained by `graft fewshot RECIPE` (contrastive pairs, then a logistic "
        "head), not by graft train; run graft fewshot with a few-shot recipe "
        "(recipes/fewshot-*.yaml), or choose another method"
    )


def finish(model, out_dir: Path):
    apply(model, None)


lr_scales = one_lr
schedule = no_schedule
select = no_choice


def write_head(folder: Path, weight, bias, pooling: str) -> Path:
    """Write the head (the linear layer's weight and bias, `sentence.head_weights`) and the
    encoder's pooling into `folder`."""
    from safetensors.torch import save_file  # torch

    path = Path(folder) / HEAD_FILE
    tensors = {"weight": weight.contiguous(), "bias": bias.contiguous()}
    save_file(tensors, str(path), metadata={"pooling": pooling})
    return path


def classifier(encoder, weight, bias, pooling: str):
    """The torch classifier over a loaded Hugging Face encoder (`sentence.SentenceClassifier`)."""
    from graftwork.methods.sentence import SentenceClassifier  # torch

    return SentenceClassifier(encoder, pooling, weight, bias).eval()


def load(model_class, bundle: Path, choice: str | None, **kwargs):
    """The bundle's classifier: its encoder (AutoModel, whatever `model_class` the task names),
    pooled as recorded, and its head."""
    from safetensors import safe_open  # torch
    from transformers import AutoModel

    path = Path(bundle) / HEAD_FILE
    if not path.is_file():
        raise BundleError(
            f"bundle {bundle} says method setfit but has no {HEAD_FILE}; the bundle is "
            "incomplete: re-create it with graft fewshot"
        )
    with safe_open(str(path), framework="pt") as fh:
        weight, bias = fh.get_tensor("weight"), fh.get_tensor("bias")
        pooling = (fh.metadata() or {}).get("pooling", "mean")
    with quiet():
        encoder = AutoModel.from_pretrained(str(bundle), use_safetensors=True, **kwargs)
    return classifier(encoder, weight, bias, pooling)


def task_bytes(bundle: Path, trainable: int) -> int:
    """The tuned encoder and the head: a second task is a second whole model (as `full`)."""
    return files_bytes(Path(bundle) / "model.safetensors") + files_bytes(Path(bundle) / HEAD_FILE)
