"""Knowledge distillation: train a smaller student to match a trained teacher bundle.

The student is either a copy of the teacher that keeps `student_layers` evenly spaced layers
(for 6 → 3: layers 1, 3, 5, i.e. every other one, as DistilBERT did), or a smaller backbone
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
from pathlib import Path

import torch
import torch.nn.functional as F

from ..data.encode import IGNORE
from ..errors import GraftError
from ..methods import METHODS
from .config import DistillConfig

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


LAYER_PATHS = ("encoder.layer", "transformer.layer", "layers", "h", "encoder.layers")


def _layer_slot(model) -> tuple[torch.nn.Module, str, torch.nn.ModuleList]:
    """(owner module, attribute name, layer list) of a transformers model's blocks."""
    for path in LAYER_PATHS:
        owner: torch.nn.Module | None = model.base_model
        *parents, name = path.split(".")
        for part in parents:
            owner = getattr(owner, part, None)
        layers = getattr(owner, name, None) if owner is not None else None
        if isinstance(layers, torch.nn.ModuleList):
            return owner, name, layers
    raise GraftError(
        f"cannot find the layer list of a {type(model).__name__} to shrink it; name a smaller "
        "backbone in compress.distill.student instead"
    )


def _layer_list(model) -> torch.nn.ModuleList:
    return _layer_slot(model)[2]


def shrink_copy(teacher, student_layers: int):
    """A copy of the teacher that keeps `student_layers` of its layers (weights copied)."""
    keep = kept_layers(len(_layer_list(teacher)), student_layers)
    student = copy.deepcopy(teacher)
    owner, name, layers = _layer_slot(student)
    kept = torch.nn.ModuleList([layers[i] for i in keep])
    for i, layer in enumerate(kept):  # attention modules that know their index (caching)
        for module in layer.modules():
            if hasattr(module, "layer_idx"):
                module.layer_idx = i
    setattr(owner, name, kept)
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
        hard = F.cross_entropy(s_flat, flat_labels, ignore_index=IGNORE, reduction="sum")
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


def distill(teacher_bundle: Path, recipe=None, overrides: list[str] | None = None, resume=False):
    """Train a student from `teacher_bundle`; the recipe gives data, training and
    `compress.distill` (default: the teacher's own recipe with a 3-layer student)."""
    from .. import backbones
    from ..bundle import read_manifest
    from ..pipeline import read_splits, start, train_and_save
    from ..predictor import Predictor

    manifest = read_manifest(teacher_bundle)
    if manifest.get("method") == "adapter":
        raise GraftError(
            f"{teacher_bundle} keeps its adapter outside the model weights; distil from a full or "
            "LoRA bundle (a copied student would lose the adapter)"
        )
    if recipe is None:
        recipe = dict(manifest["recipe"])
        recipe["name"] = f"{manifest['name']}-student"
        recipe["method"] = {"type": "full"}
    recipe, accelerator = start(recipe, overrides, resume, overwrite=False)
    cfg = recipe.compress.distill or DistillConfig()
    if recipe.task.type != manifest["task"]:
        raise GraftError(
            f"the recipe's task is {recipe.task.type} but the teacher {teacher_bundle} was "
            f"trained for {manifest['task']}"
        )
    teacher_pred = Predictor(teacher_bundle, backend="torch")
    teacher, tokenizer = teacher_pred.model, teacher_pred.tokenizer
    extra = _pseudo_labelled(teacher_pred, cfg.unlabeled) if cfg.unlabeled else None
    updates = {k: v for k, v in (("epochs", cfg.epochs), ("lr", cfg.lr)) if v is not None}
    recipe = recipe.model_copy(update={"train": recipe.train.model_copy(update=updates)})
    splits = read_splits(recipe, tokenizer, labels=manifest["labels"], extra=extra)
    torch.manual_seed(recipe.train.seed)
    if cfg.student:
        folder = backbones.resolve(cfg.student)
        student_tok = backbones.load_tokenizer(folder, recipe.backbone)
        if student_tok.get_vocab() != tokenizer.get_vocab():
            raise GraftError(
                f"student backbone {cfg.student} has a different vocabulary from the teacher; "
                "distillation here needs a shared tokenizer (or use student_layers)"
            )
        student = backbones.load_model(
            folder, recipe.backbone, splits.task.model_class(), splits.labels, tokenizer
        )
        layer_map = None
    else:
        student, layer_map = shrink_copy(teacher, cfg.student_layers or 3)
    if cfg.hidden_weight and getattr(student.config, "hidden_size", None) != getattr(
        teacher.config, "hidden_size", None
    ):
        raise GraftError("compress.distill.hidden_weight needs student and teacher of one width")
    log.info(
        "distilling %s (%d layers) into %s",
        teacher_bundle,
        len(_layer_list(teacher)),
        f"{len(layer_map)} of its layers {layer_map}" if layer_map else cfg.student,
    )
    method = METHODS["full"]
    student = method.apply(student, method.FullConfig())
    extra_manifest = {
        "distillation": {
            "teacher": str(teacher_bundle),
            "teacher_metrics": manifest.get("metrics", {}),
            "teacher_layers": len(_layer_list(teacher)),
            "student_layers": len(_layer_list(student)),
            "kept_layers": layer_map,
            **cfg.model_dump(),
        }
    }
    return train_and_save(
        recipe,
        accelerator,
        splits,
        student,
        method,
        resume=resume,
        loss_fn=distill_loss(teacher, cfg, layer_map),
        manifest_extra=extra_manifest,
    )


def _pseudo_labelled(teacher_pred, path: str) -> list[dict]:
    """Unlabelled texts with the teacher's predicted labels (tags for NER)."""
    file = Path(path)
    if not file.is_file():
        raise GraftError(f"compress.distill.unlabeled: {file} does not exist")
    texts = [line.strip() for line in file.read_text(encoding="utf-8").splitlines() if line.strip()]
    answers = teacher_pred.predict(texts)
    examples = []
    for number, (text, answer) in enumerate(zip(texts, answers, strict=True), start=1):
        example = teacher_pred.task.from_text(text)
        example["line"] = number
        if "tags" in answer:
            example["tags"] = answer["tags"]
        else:
            example["label"] = answer["label"]
        examples.append(example)
    log.info("labelled %d unlabelled texts from %s with the teacher", len(examples), file)
    return examples
