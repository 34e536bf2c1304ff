"""`graft distill`: train a student bundle from a teacher bundle (the run around
`compress.distill`'s student construction and loss)."""

from __future__ import annotations

import logging
from pathlib import Path

import torch

from graftwork import registry
from graftwork.backbones import load as backbones
from graftwork.bundle import read_manifest
from graftwork.compress.distill import distill_loss, layer_list, shrink_copy
from graftwork.config.compress import DistillConfig
from graftwork.data.text import text_lines
from graftwork.errors import GraftError
from graftwork.inference.predictor import Predictor
from graftwork.methods.base import Finisher, refuse
from graftwork.runs.lifecycle import start, whole_run
from graftwork.runs.stages import read_splits, train_and_save
from graftwork.train.hooks import Hooks

log = logging.getLogger("graftwork")


@whole_run  # the student's run folder (its lock and its tracking record) until it returns
def distill(teacher_bundle: Path, recipe=None, overrides: list[str] | None = None, resume=False):
    """Train a student from `teacher_bundle`; the recipe gives data, training and
    `compress.distill` (default: the teacher's own recipe with a 3-layer student)."""
    manifest = read_manifest(teacher_bundle)
    refuse(manifest.method, "distill", teacher_bundle, task=manifest.task)
    if recipe is None:
        recipe = dict(manifest.recipe)
        recipe["name"] = f"{manifest.name}-student"
        recipe["method"] = {"type": "full"}
    recipe, accelerator = start(recipe, overrides, resume, overwrite=False)
    cfg = recipe.compress.distill or DistillConfig()
    if recipe.task.type != manifest.task:
        raise GraftError(
            f"the recipe's task is {recipe.task.type} but the teacher {teacher_bundle} was "
            f"trained for {manifest.task}"
        )
    teacher_pred = Predictor(teacher_bundle, backend="torch")
    teacher, tokenizer = teacher_pred.model, teacher_pred.tokenizer
    extra = _pseudo_labelled(teacher_pred, cfg.unlabeled) if cfg.unlabeled else None
    updates = {k: v for k, v in (("epochs", cfg.epochs), ("lr", cfg.lr)) if v is not None}
    recipe = recipe.model_copy(update={"train": recipe.train.model_copy(update=updates)})
    splits = read_splits(recipe, tokenizer, labels=manifest.labels, extra=extra)
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
        len(layer_list(teacher)),
        f"{len(layer_map)} of its layers {layer_map}" if layer_map else cfg.student,
    )
    method = registry.method("full")
    student = method.apply(student, method.Config())
    extra_manifest = {
        "distillation": {
            "teacher": str(teacher_bundle),
            "teacher_metrics": manifest.metrics,
            "teacher_layers": len(layer_list(teacher)),
            "student_layers": len(layer_list(student)),
            "kept_layers": layer_map,
            **cfg.model_dump(),
        }
    }
    hooks = Hooks(loss_fn=distill_loss(teacher, cfg, layer_map), manifest=extra_manifest)
    return train_and_save(
        recipe, accelerator, splits, student, Finisher(method.finish), hooks, resume
    )


def _pseudo_labelled(teacher_pred, path: str) -> list[dict]:
    """Unlabelled texts with the teacher's predicted labels (tags for NER)."""
    file = Path(path)
    if not file.is_file():
        raise GraftError(f"compress.distill.unlabeled: {file} does not exist")
    lines = text_lines(file, "compress.distill.unlabeled: " + str(file))
    texts = [line.strip() for line in lines if line.strip()]
    answers = teacher_pred.predict(texts)
    key = teacher_pred.task.LABEL_KEY  # the field of an answer that is a training label
    if not key:
        raise GraftError(
            f"compress.distill.unlabeled: a {teacher_pred.task_config.type} teacher's answers "
            "are no labels to train a student on; leave compress.distill.unlabeled out"
        )
    examples = []
    for number, (text, answer) in enumerate(zip(texts, answers, strict=True), start=1):
        example = teacher_pred.task.from_text(text)
        example["line"] = number
        example[key] = answer[key]
        examples.append(example)
    log.info("labelled %d unlabelled texts from %s with the teacher", len(examples), file)
    return examples
