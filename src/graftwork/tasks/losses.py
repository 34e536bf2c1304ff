"""The training losses tasks name as their `loss` (`tasks.base.Task.loss`), summed over a batch.

Every loss here is summed over the batch's labelled items (positions marked IGNORE do not
count), so that the loop can normalise by the global batch's count and data-parallel shares
add up to the one-process gradient (`train.loop.fit`). `logits_loss` is cross-entropy of the
model's logits (sentence and token heads, causal LMs); `seq2seq_loss` feeds the decoder the
labels shifted right (teacher forcing) first; `span_loss` is extractive QA's start/end loss.
torch is imported inside the functions, so that task modules can name these at import time
without importing torch (the recipe schema reads the task registry).

Leaves out: the losses of objectives and distillation (`objectives/`, `compress/distill.py`),
which call these for their task part.
"""

from __future__ import annotations

from graftwork.data.encode import IGNORE


def summed_cross_entropy(logits, labels):
    """Cross-entropy summed over labelled items (positions marked IGNORE do not count):
    logits (..., labels), labels (...)."""
    import torch

    return torch.nn.functional.cross_entropy(
        logits.reshape(-1, logits.shape[-1]).float(),
        labels.reshape(-1),
        ignore_index=IGNORE,
        reduction="sum",
    )


def logits_loss(model, batch: dict):
    """`summed_cross_entropy` of the model's logits for `batch` (its labels popped)."""
    labels = batch.pop("labels")
    return summed_cross_entropy(model(**batch).logits, labels)


def seq2seq_loss(model, batch: dict):
    """Teacher forcing: the decoder reads the labels shifted right after its start token (as
    the model does when given labels); `logits_loss` of what it predicts."""
    inner = getattr(model, "module", model)  # the model inside data-parallel training
    batch["decoder_input_ids"] = inner.prepare_decoder_input_ids_from_labels(labels=batch["labels"])
    return logits_loss(model, batch)


def span_loss(model, batch: dict):
    """A span head's labels are (start, end) per row: the cross-entropy over positions of the
    start and of the end, halved (transformers' QA loss, summed over rows), padding masked."""
    import torch

    labels = batch.pop("labels")
    out = model(**batch)
    spans = torch.stack((out.start_logits, out.end_logits), dim=1).float()  # (batch, 2, tokens)
    # padding is not a position of the text: without this, how far a batch is padded (its
    # longest row, or a process's share of it) would change every row's softmax
    padding = batch["attention_mask"][:, None, :] == 0
    return summed_cross_entropy(spans.masked_fill(padding, -1e9), labels) / 2
