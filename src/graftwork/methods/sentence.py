"""The torch model of a few-shot (SetFit) bundle: a sentence encoder and a linear head.

`SentenceClassifier` runs the Hugging Face encoder, pools its token states the way the
sentence-transformers folder declared (mean, [CLS] or max), L2-normalises the embedding (the
head was fitted on normalised embeddings) and applies the logistic-regression head as a linear
layer, returning a `SequenceClassifierOutput` like a `…ForSequenceClassification` model, so the
predictor, the server and ONNX export run it as any classifier.

`head_weights` turns scikit-learn's coefficients into that layer: a binary logistic
regression has one row (the log-odds of label 1), which becomes two logits `[0, z]`, so that
softmax is `predict_proba` and argmax is `predict`.

Leaves out: pooling modes other than mean, cls and max (weighted mean, last token), which
`graft fewshot` refuses when it writes the bundle (`POOLINGS`).
"""

from __future__ import annotations

import numpy as np
import torch
from transformers.modeling_outputs import SequenceClassifierOutput

POOLINGS = ("mean", "cls", "max")


def head_weights(coef: np.ndarray, intercept: np.ndarray) -> tuple[torch.Tensor, torch.Tensor]:
    """(weight [labels, dim], bias [labels]) of the linear layer a logistic head is."""
    coef, intercept = np.asarray(coef, dtype=np.float32), np.asarray(intercept, dtype=np.float32)
    if coef.shape[0] == 1:  # scikit-learn's binary head: one row, for label 1
        coef = np.vstack([np.zeros_like(coef), coef])
        intercept = np.concatenate([np.zeros_like(intercept), intercept])
    return torch.from_numpy(coef), torch.from_numpy(intercept)


class SentenceClassifier(torch.nn.Module):
    """encoder → pooling → L2 normalisation → linear head; `config` is the encoder's."""

    def __init__(self, encoder, pooling: str, weight: torch.Tensor, bias: torch.Tensor):
        super().__init__()
        if pooling not in POOLINGS:
            raise ValueError(f"pooling {pooling!r} is not one of {POOLINGS}")
        self.encoder, self.pooling = encoder, pooling
        self.config = encoder.config
        self.classifier = torch.nn.Linear(weight.shape[1], weight.shape[0])
        with torch.no_grad():
            self.classifier.weight.copy_(weight)
            self.classifier.bias.copy_(bias)

    def forward(self, input_ids, attention_mask=None, token_type_ids=None, **kwargs):
        if attention_mask is None:
            attention_mask = torch.ones_like(input_ids)
        inputs = {"input_ids": input_ids, "attention_mask": attention_mask}
        if token_type_ids is not None:
            inputs["token_type_ids"] = token_type_ids
        states = self.encoder(**inputs).last_hidden_state
        mask = attention_mask.unsqueeze(-1).to(states.dtype)
        if self.pooling == "cls":
            pooled = states[:, 0]
        elif self.pooling == "max":
            pooled = states.masked_fill(mask == 0, torch.finfo(states.dtype).min).amax(dim=1)
        else:
            pooled = (states * mask).sum(dim=1) / mask.sum(dim=1).clamp(min=1e-9)
        pooled = torch.nn.functional.normalize(pooled, p=2, dim=-1)
        return SequenceClassifierOutput(logits=self.classifier(pooled))
