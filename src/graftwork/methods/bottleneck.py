"""The torch side of bottleneck adapters (`methods/adapter.py`): the module, where it goes in
a model, and the weights an adapter folder holds.

`Bottleneck` maps h to h + up(act(down(h))); it is registered as the child `adapter` of a
layer's output module (`BertSelfOutput`/`BertOutput`) and run by a forward hook on that
module's `dense` projection, so the transformers model is neither subclassed nor wrapped.
`methods/adapter.py` imports this module inside its functions, so that reading the recipe
imports no torch.

Leaves out: layouts other than the BERT family's `base_model.encoder.layer[i]` (see the
adapter module's docstring).
"""

from __future__ import annotations

import hashlib

import torch
from torch import nn

from graftwork.errors import GraftError, RecipeError
from graftwork.methods import head_modules

ATTR = "adapter"  # the child module name on BertSelfOutput / BertOutput
ACTIVATIONS = {"relu": nn.ReLU, "gelu": nn.GELU}


class Bottleneck(nn.Module):
    """h → h + up(act(down(h))); `up` starts at zero, so the block starts as the identity.

    `config` is the method's `AdapterConfig` (reduction, activation, init_scale; kept for
    saving)."""

    def __init__(self, hidden: int, config):
        super().__init__()
        size = hidden // config.reduction
        self.config = config
        self.down = nn.Linear(hidden, size)
        self.act = ACTIVATIONS[config.activation]()
        self.up = nn.Linear(size, hidden)
        nn.init.normal_(self.down.weight, std=config.init_scale)
        nn.init.zeros_(self.down.bias)
        nn.init.zeros_(self.up.weight)
        nn.init.zeros_(self.up.bias)
        self._handle = None

    def forward(self, hidden: torch.Tensor) -> torch.Tensor:
        return hidden + self.up(self.act(self.down(hidden)))

    def hook_after(self, projection: nn.Module) -> None:
        self._handle = projection.register_forward_hook(self._after)

    def unhook(self) -> None:
        if self._handle is not None:
            self._handle.remove()
            self._handle = None

    def _after(self, module, args, output):
        return self(output)


def sites(model, placement: str) -> list[nn.Module]:
    """The output modules (with a `dense` projection) that get an adapter, layer by layer."""
    layers = getattr(getattr(getattr(model, "base_model", None), "encoder", None), "layer", None)
    found = []
    try:
        for block in layers:
            pair = [block.attention.output, block.output]
            found += pair if placement == "houlsby" else pair[1:]
    except (TypeError, AttributeError):
        found = []
    if not found or not all(isinstance(getattr(s, "dense", None), nn.Linear) for s in found):
        raise GraftError(
            f"method adapter supports BERT-family encoders (BERT, RoBERTa, ELECTRA, MiniLM: "
            f"base_model.encoder.layer[i] with attention.output.dense and output.dense); "
            f"{type(model).__name__} is laid out differently. Use method lora or full for it"
        )
    return found


def insert(model, config) -> list[Bottleneck]:
    """Add a zero-initialised adapter at every site of `config.placement`."""
    targets = sites(model, config.placement)
    hidden = targets[0].dense.out_features
    if hidden // config.reduction < 1:
        raise RecipeError(
            f"method.reduction {config.reduction} leaves no bottleneck for hidden size {hidden}; "
            f"use a reduction of at most {hidden}"
        )
    if adapters_in(model):
        raise GraftError(f"{type(model).__name__} already holds adapters; insert only once")
    weight = targets[0].dense.weight
    added = []
    for site in targets:
        adapter = Bottleneck(hidden, config).to(device=weight.device, dtype=weight.dtype)
        site.add_module(ATTR, adapter)
        adapter.hook_after(site.dense)
        added.append(adapter)
    return added


def remove(model) -> None:
    """Take every adapter (module and hook) out of `model`, leaving the plain model."""
    for site in list(model.modules()):
        adapter = getattr(site, ATTR, None)
        if isinstance(adapter, Bottleneck):
            adapter.unhook()
            delattr(site, ATTR)


def adapters_in(model) -> list[Bottleneck]:
    return [m for m in model.modules() if isinstance(m, Bottleneck)]


def adapter_state(model) -> dict[str, torch.Tensor]:
    """The weights an adapter folder holds: every adapter's and the task head's."""
    heads = tuple(f"{name}." for name in head_modules(model))
    return {
        key: value
        for key, value in model.state_dict().items()
        if ATTR in key.split(".") or key.startswith(heads)
    }


def backbone_sha256(model) -> str:
    """A digest of the frozen backbone's weights (adapters excluded): an adapter only fits
    the exact backbone it was trained on."""
    prefix = f"{model.base_model_prefix}."
    digest = hashlib.sha256()
    for key, value in sorted(model.state_dict().items()):
        if key.startswith(prefix) and ATTR not in key.split("."):
            flat = value.detach().cpu().contiguous().reshape(-1)
            digest.update(f"{key}:{tuple(value.shape)}:{value.dtype};".encode())
            digest.update(flat.view(torch.uint8).numpy().tobytes())
    return digest.hexdigest()
