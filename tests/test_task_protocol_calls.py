"""The task protocol's `to_text` and `loss`: what runs ask a task instead of branching on
the shape of its examples or of its model's output (`tasks/base.py`)."""

from __future__ import annotations

import pytest

from graftwork import registry
from graftwork.config.sections import TaskConfig
from graftwork.tasks import losses

RAW = {
    "classification": "a gripping, funny film",
    "ner": "EU rejects German call to boycott British lamb .",
    "qa": {"question": "Who rejects the call?", "context": "The EU rejects the call."},
    "seq2seq": "ein Hund läuft",
    "causal_lm": "ein Hund läuft",
}


@pytest.mark.parametrize("name", sorted(registry.TASKS))
def test_to_text_gives_back_the_input_an_example_was_made_from(name):
    task = registry.task(name)
    config = TaskConfig(type="causal_lm", prefix="Translate: ") if name == "causal_lm" else None
    example = task.from_text(RAW[name], config)
    assert task.to_text(example, config) == RAW[name]


def test_every_task_names_its_loss():
    chosen = {name: registry.task(name).loss for name in registry.TASKS}
    assert chosen["qa"] is losses.span_loss
    assert chosen["seq2seq"] is losses.seq2seq_loss
    others = {chosen[n] for n in ("classification", "ner", "causal_lm")}
    assert others == {losses.logits_loss}
