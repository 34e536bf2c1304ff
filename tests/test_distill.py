"""Distillation: the student is a proper smaller copy, the loss falls, and it learns the teacher."""

from __future__ import annotations

import json

import pytest
import torch

import graftwork
from conftest import tiny_recipe
from graftwork.compress.distill import distill_loss, kept_layers, shrink_copy
from graftwork.config.compress import DistillConfig
from graftwork.errors import GraftError
from graftwork.runs.distill import distill
from graftwork.runs.finetune import train


@pytest.fixture(scope="module")
def teacher(tiny_bert, sst2_small, tmp_path_factory):
    out = tmp_path_factory.mktemp("teacher")
    return train(tiny_recipe(tiny_bert, sst2_small, out, train={"epochs": 2})).bundle


def test_kept_layers_are_evenly_spaced_and_end_with_the_last():
    assert kept_layers(6, 3) == [1, 3, 5]
    assert kept_layers(12, 6) == [1, 3, 5, 7, 9, 11]
    assert kept_layers(2, 1) == [1]
    with pytest.raises(GraftError, match="choose 1 to 6"):
        kept_layers(6, 7)


def test_shrunk_copy_has_the_teacher_weights_of_the_kept_layers(teacher):
    model = graftwork.load(teacher, backend="torch").model
    student, keep = shrink_copy(model, 1)
    assert keep == [1] and student.config.num_hidden_layers == 1
    assert len(student.bert.encoder.layer) == 1
    torch.testing.assert_close(
        student.bert.encoder.layer[0].attention.self.query.weight,
        model.bert.encoder.layer[1].attention.self.query.weight,
    )
    assert model.config.num_hidden_layers == 2  # the teacher is untouched


def test_soft_loss_vanishes_when_the_student_is_the_teacher(teacher):
    model = graftwork.load(teacher, backend="torch").model.eval()
    enc = {"input_ids": torch.tensor([[2, 50, 60, 3]]), "attention_mask": torch.ones(1, 4).long()}
    labels = torch.tensor([1])
    pure_soft = distill_loss(model, DistillConfig(alpha=1.0), None)
    assert float(pure_soft(model, {**enc, "labels": labels})) == pytest.approx(0.0, abs=1e-6)
    mixed = distill_loss(model, DistillConfig(alpha=0.5, hidden_weight=1.0), [0, 1])
    ce = torch.nn.functional.cross_entropy(model(**enc).logits, labels)
    assert float(mixed(model, {**enc, "labels": labels})) == pytest.approx(
        0.5 * float(ce), rel=1e-5
    )


def test_distilled_student_learns_to_agree_with_the_teacher(teacher, sst2_small, tmp_path):
    unlabeled = tmp_path / "unlabeled.txt"
    lines = sst2_small["eval"].read_text().splitlines()[1:101]
    unlabeled.write_text("\n".join(line.split("\t", 1)[1] for line in lines))
    recipe = json.loads((teacher / "graftwork.json").read_text())["recipe"]
    recipe.update(name="student", output_dir=str(tmp_path), method={"type": "full"})
    recipe["train"] = {**recipe["train"], "epochs": 3, "lr": 2e-3, "log_every": 5}
    recipe["compress"] = {"distill": {"student_layers": 1, "unlabeled": str(unlabeled)}}
    result = distill(teacher, recipe)
    losses = [loss for _, loss in result.metrics["train"]["loss_history"]]
    assert losses[-1] < losses[0]
    assert result.metrics["train"]["examples"] == 800 + 100
    manifest = json.loads((result.bundle / "graftwork.json").read_text())
    assert manifest["distillation"]["kept_layers"] == [1]
    texts = [line.split("\t", 1)[1] for line in lines]
    want = [a["label"] for a in graftwork.load(teacher).predict(texts)]
    got = [a["label"] for a in graftwork.load(result.bundle).predict(texts)]
    agreement = sum(a == b for a, b in zip(got, want, strict=True)) / len(want)
    assert agreement >= 0.9


def test_a_distill_run_with_a_tracking_section_records_its_run(
    teacher, tiny_bert, sst2_small, tmp_path
):
    import mlflow
    from mlflow.tracking._tracking_service.utils import _use_tracking_uri

    uri = f"sqlite:///{tmp_path}/mlruns.db"
    tracking = {"mlflow": {"uri": uri, "experiment": "distill-exp"}}
    recipe = tiny_recipe(
        tiny_bert, sst2_small, tmp_path, name="student", tracking=tracking, train={"log_every": 5}
    )
    recipe["compress"] = {"distill": {"student_layers": 1}}
    result = distill(teacher, recipe)
    with _use_tracking_uri(uri):
        found = mlflow.search_runs(experiment_names=["distill-exp"])
    assert len(found) == 1
    run = found.iloc[0]
    assert run["status"] == "FINISHED"
    assert run["tags.mlflow.runName"] == "student"
    assert run["metrics.eval/accuracy"] == pytest.approx(result.metrics["eval"]["accuracy"])
