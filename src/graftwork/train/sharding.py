"""FSDP (`train.distributed.strategy: fsdp`): weights, gradients and optimizer state sharded
across the processes of a data-parallel run, so each holds 1/N of them between layers.

Through PyTorch's FSDP2, `torch.distributed.fsdp.fully_shard`, applied here to each layer of the
backbone's stack (`backbones.layout.find`) and then to the whole model. It is applied by hand
rather than through accelerate's FSDP plugin because accelerate (1.15) runs FSDP only on GPUs:
with `cpu=True` it ignores the plugin and wraps the model in DDP. fully_shard runs on CPU (gloo)
and GPU (NCCL) alike; FSDP1 (`FullyShardedDataParallel`) refuses CPU-only machines.

What changes for the loop: the optimizer is built over the sharded parameters (so `shard` comes
before it), gradient accumulation pauses gradient reduction with `set_requires_gradient_sync`
instead of DDP's `no_sync`, checkpoints hold full (unsharded) weights and optimizer state
gathered on the main process (`full_state`, `full_optimizer_state`; every process calls them)
and every process loads its shard from them (`load_full_state`, `load_full_optimizer_state`),
so a checkpoint looks the same whatever the strategy. Evaluation needs every process (a
forward pass gathers each layer's weights from all of them). At the end `unsharded` gives the
main process a plain model with the full weights, which the bundle is written from: the model
structure is kept from before sharding with its parameters on the meta device (no memory),
and the gathered weights are assigned into it.

Left out: CPU offload of parameters, mixed-precision policies of FSDP's own (the loop's
autocast applies), hybrid sharding across nodes, and DeepSpeed (pass-through via accelerate on
GPUs only; not installed here).
"""

from __future__ import annotations

import copy
import logging
from contextlib import contextmanager

import torch

from graftwork.backbones.layout import find

log = logging.getLogger("graftwork")


def wanted(cfg, accelerator) -> bool:
    """Whether this run shards: `fsdp` asked for, and more than one process."""
    if cfg.distributed.strategy != "fsdp":
        return False
    if accelerator.num_processes == 1:
        log.info("train.distributed.strategy fsdp: one process, nothing to shard")
        return False
    return True


def is_sharded(model) -> bool:
    from torch.distributed.fsdp import FSDPModule

    return isinstance(model, FSDPModule)


def shard(model, accelerator):
    """Shard `model` in place (each layer of its stack, then the whole); returns (the model,
    its structure with meta parameters, for `unsharded`)."""
    from torch.distributed.fsdp import fully_shard

    model = model.to(accelerator.device)
    memo = {
        id(p): torch.nn.Parameter(torch.empty_like(p, device="meta"), p.requires_grad)
        for p in model.parameters()
    }
    skeleton = copy.deepcopy(model, memo)  # buffers are copied; parameters cost nothing
    found = find(model)
    layers = [layer.module for layer in found.layers] if found is not None else []
    for layer in layers:
        fully_shard(layer)
    fully_shard(model)
    world = accelerator.num_processes
    log.info("FSDP: %d layers and the model sharded over %d processes", len(layers), world)
    return model, skeleton


@contextmanager
def no_sync(model):
    """Accumulate gradients without reducing them (FSDP's counterpart of DDP's no_sync)."""
    model.set_requires_gradient_sync(False)
    try:
        yield
    finally:
        model.set_requires_gradient_sync(True)


def _options(**extra):
    from torch.distributed.checkpoint.state_dict import StateDictOptions

    return StateDictOptions(full_state_dict=True, **extra)


def full_state(model) -> dict:
    """The full weights on the main process, on the CPU ({} on the others); every process calls."""
    from torch.distributed.checkpoint.state_dict import get_model_state_dict

    model.reshard()  # an evaluation leaves the root's weights gathered
    return get_model_state_dict(model, options=_options(cpu_offload=True))


def full_optimizer_state(model, optimizer) -> dict:
    """The optimizer's full state (parameter names as keys) on the main process."""
    from torch.distributed.checkpoint.state_dict import get_optimizer_state_dict

    return get_optimizer_state_dict(model, _raw(optimizer), options=_options(cpu_offload=True))


def load_full_state(model, state: dict) -> None:
    """Load full weights (every process gives all of them) into the sharded model."""
    from torch.distributed.checkpoint.state_dict import set_model_state_dict

    model.reshard()
    set_model_state_dict(model, state, options=_options())


def load_full_optimizer_state(model, optimizer, state: dict) -> None:
    from torch.distributed.checkpoint.state_dict import set_optimizer_state_dict

    set_optimizer_state_dict(model, _raw(optimizer), state, options=_options())


def unsharded(model, skeleton, accelerator):
    """A plain model holding the full weights, on the main process (the others get `model`
    back); every process calls."""
    state = full_state(model)
    if not accelerator.is_main_process:
        return model
    skeleton.load_state_dict(state, strict=True, assign=True)
    return skeleton


def _raw(optimizer):
    return getattr(optimizer, "optimizer", optimizer)  # accelerate's AcceleratedOptimizer
