"""Knowledge distillation: train a smaller student to match a trained teacher bundle.

The student is either a copy of the teacher that keeps `student_layers` evenly spaced layers
(for 6 → 3: layers 1, 3, 5, i.e. every other one, as DistilBERT did; the layer list is the
first stack of the layout table, `backbones/layout.py`), or a smaller backbone
named in the config that shares the teacher's tokenizer. The loss is
`alpha · T² · KL(student/T ‖ teacher/T) + (1 − alpha) · cross-entropy`, optionally plus
`hidden_weight ·` MSE between student hidden states and their teacher layers (same width
only). Unlabelled text is labelled by the teacher (its argmax is the hard label; the soft term
uses its full distribution) and joins the training set. Works for classification and NER;
the teacher runs alongside the student in the loop (no cached logits), so augmentation and
dropout stay possible. What it leaves out: intermediate attention-map distillation.
"""

from __future__ import annotations

import copy
import logging

import torch
import torch.nn.functional as F

from graftwork.backbones import layout
from graftwork.config.compress import DistillConfig
from graftwork.data.encode import IGNORE
from graftwork.errors import GraftError
from graftwork.train.loop import summed_cross_entropy

log = logging.getLogger("graftwork")


def kept_layers(teacher_layers: int, student_layers: int) -> list[int]:
    """Evenly spaced teacher layers, always ending with the last (6 → 3 gives [1, 3, 5])."""
    if not 1 <= student_layers <= teacher_layers:
        raise GraftError(
            f"compress.distill.student_layers is {student_layers}; the teacher has "
            f"{teacher_layers} layers, so choose 1 to {teacher_layers}"
        )
    step = teacher_layers / student_layers
    return [round(step * (i + 1)) - 1 for i in range(student_layers)]


def _layer_slot(model) -> layout.FoundStack:
    """The first stack of layers (an encoder-decoder's encoder), from the layout table."""
    found = layout.find(model)
    if found is None:
        raise GraftError(
            f"cannot find the layer list of a {type(model).__name__} to shrink it; name a "
            "smaller backbone in compress.distill.student instead"
        )
    return found.stacks[0]


def layer_list(model) -> torch.nn.ModuleList:
    return _layer_slot(model).modules


def shrink_copy(teacher, student_layers: int):
    """A copy of the teacher that keeps `student_layers` of its layers (weights copied)."""
    found = layout.find(teacher)
    if found is not None and found.layout.bias_in_first_layer:
        raise GraftError(
            f"a {found.layout.covers} model keeps its relative position bias in its first layer "
            "only, so a copy that keeps some of its layers loses it; name a smaller backbone in "
            "compress.distill.student instead"
        )
    keep = kept_layers(len(layer_list(teacher)), student_layers)
    student = copy.deepcopy(teacher)
    slot = _layer_slot(student)
    kept = torch.nn.ModuleList([slot.modules[i] for i in keep])
    for i, layer in enumerate(kept):  # attention modules that know their index (caching)
        for module in layer.modules():
            if hasattr(module, "layer_idx"):
                module.layer_idx = i
    setattr(slot.owner, slot.name, kept)
    for key in ("num_hidden_layers", "n_layer", "n_layers", "num_layers"):
        if hasattr(student.config, key):
            setattr(student.config, key, student_layers)
    if getattr(student.config, "layer_types", None):
        student.config.layer_types = [student.config.layer_types[i] for i in keep]
    return student, keep


def distill_loss(teacher, cfg: DistillConfig, layer_map: list[int] | None):
    """Loss function for the training loop: summed over the batch's labelled items."""
    teacher.eval()
    hidden = cfg.hidden_weight > 0 and layer_map is not None
    t2 = cfg.temperature**2

    def loss_fn(model, batch: dict) -> torch.Tensor:
        labels = batch.pop("labels")
        with torch.no_grad():
            t_out = teacher(**batch, output_hidden_states=hidden)
        s_out = model(**batch, output_hidden_states=hidden)
        s_logits, t_logits = s_out.logits.float(), t_out.logits.float()
        classes = s_logits.shape[-1]
        s_flat, t_flat = s_logits.reshape(-1, classes), t_logits.reshape(-1, classes)
        flat_labels = labels.reshape(-1)
        mask = flat_labels != IGNORE
        soft = F.kl_div(
            F.log_softmax(s_flat[mask] / cfg.temperature, -1),
            F.log_softmax(t_flat[mask] / cfg.temperature, -1),
            log_target=True,
            reduction="sum",
        )
        hard = summed_cross_entropy(s_logits, labels)
        loss = cfg.alpha * t2 * soft + (1 - cfg.alpha) * hard
        if hidden:
            # per example: mean squared error over its real tokens, summed over layers
            attention = batch["attention_mask"].unsqueeze(-1).float()  # [B, L, 1]
            count = labels.shape[0] if labels.dim() == 1 else int(mask.sum())
            per_token = attention.sum() / max(1, count)
            for s_index, t_index in enumerate(layer_map):
                diff = (s_out.hidden_states[s_index + 1] - t_out.hidden_states[t_index + 1]) ** 2
                loss = (
                    loss
                    + cfg.hidden_weight
                    * (diff.mean(-1, keepdim=True) * attention).sum()
                    / per_token
                )
        return loss

    return loss_fn
