"""A backend loads from its `inference.backends.Source` alone (the bundle's folder, manifest,
task, tokenizer and a way to get the PyTorch model), never from the predictor."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from graftwork import registry
from graftwork.bundle import Manifest
from graftwork.inference.backends import Source

TEXTS = ["a gripping , funny film", "meh"]


@pytest.fixture
def source(tiny_bert):
    from transformers import AutoModelForSequenceClassification, AutoTokenizer

    torch.manual_seed(0)
    model = AutoModelForSequenceClassification.from_pretrained(str(tiny_bert), num_labels=2).eval()
    manifest = Manifest(task="classification", labels=["negative", "positive"], method="full")
    tokenizer = AutoTokenizer.from_pretrained(str(tiny_bert))
    return Source(tiny_bert, manifest, registry.task("classification"), tokenizer, lambda: model)


def test_the_torch_backend_runs_the_sources_model(source):
    forward = registry.backend("torch").load(source, "torch", threads=1)
    batch = dict(source.tokenizer(TEXTS, padding=True, return_tensors="pt"))
    with torch.inference_mode():
        expected = source.model()(**batch).logits.numpy()
    np.testing.assert_allclose(forward(batch), expected, rtol=1e-6, atol=1e-6)


def test_an_exported_backend_never_asks_for_the_pytorch_model(source, monkeypatch):
    def no_model():
        raise AssertionError("an ONNX backend loaded the PyTorch model")

    opened: list = []
    onnx = registry.backend("onnx-fp32")
    monkeypatch.setattr(onnx, "forward_for", lambda name, path, threads: opened.append(path))
    manifest = source.manifest.model_copy(update={"artifacts": {"onnx-fp32": {"path": "m.onnx"}}})
    bare = Source(source.path, manifest, source.task, source.tokenizer, no_model)
    onnx.load(bare, "onnx-fp32", threads=1)
    assert opened == [source.path / "m.onnx"]
