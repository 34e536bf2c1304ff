"""The training loop's optimizer: PyTorch's fused AdamW where it applies, the same update as the
foreach AdamW it replaced (issue 11: the foreach path loops op by op over the tensors on the
CPU and took a third of a training step's time)."""

from __future__ import annotations

import torch
from transformers import AutoModelForSequenceClassification

from graftwork.train.loop import fused_adamw, param_groups


def tiny_model(tiny_bert):
    torch.manual_seed(0)
    return AutoModelForSequenceClassification.from_pretrained(str(tiny_bert), num_labels=2)


def test_float_parameters_on_the_cpu_take_the_fused_kernel(tiny_bert):
    groups = param_groups(tiny_model(tiny_bert), 0.01, 1e-3)
    assert fused_adamw(groups)


def test_parameters_the_fused_kernel_cannot_take_use_the_default_path():
    assert not fused_adamw([{"params": []}])
    counts = torch.zeros(3, dtype=torch.long)  # not floating point: no fused kernel
    assert not fused_adamw([{"params": [torch.zeros(3)]}, {"params": [counts]}])


def test_fused_and_foreach_adamw_make_the_same_update(tiny_bert):
    weights = {}
    for fused in (True, False):
        model = tiny_model(tiny_bert)
        groups = param_groups(model, 0.01, 1e-3)
        optimizer = torch.optim.AdamW(groups, lr=1e-3, fused=fused, foreach=not fused)
        for step in range(3):
            torch.manual_seed(step)
            ids = torch.randint(5, 100, (4, 9))
            logits = model(input_ids=ids).logits
            torch.nn.functional.cross_entropy(logits, torch.tensor([0, 1, 1, 0])).backward()
            optimizer.step()
            optimizer.zero_grad(set_to_none=True)
        weights[fused] = {k: v.clone() for k, v in model.state_dict().items()}
    start = tiny_model(tiny_bert).state_dict()
    moved = max(float((weights[True][k] - start[k]).abs().max()) for k in start)
    largest = max(float((weights[True][k] - weights[False][k]).abs().max()) for k in start)
    assert moved > 1e-3  # the steps did change the weights
    assert largest < 1e-6, f"fused and foreach AdamW differ by up to {largest}"
