"""The registries: every task, adaptation method, training objective and inference backend.

Each table maps a name (what a recipe or a flag says) to the module that implements it; the
module is imported the first time it is asked for. Adding a task, a method, an objective or a
backend is one module plus one line here (see CONTRIBUTING.md): the recipe schema
(`graftwork.config`) builds its `type` unions from these tables, `graft compare` lists its
methods from them, the predictor and server find their backends here, and the protocol,
batch-invariance and method × task tests build their cases from these tables.

The modules named here implement the protocols in `tasks/base.py`, `methods/base.py`,
`objectives/base.py` and `inference/backends.py` (`Backend`: available, load, describe, and
the batch-invariance tolerance the tests hold it to), and keep torch out of their import-time code
(it is imported inside the functions that use it), so that validating a recipe never imports
torch. This module imports nothing of graftwork's but its errors: it names the modules as
strings, so it sits below every layer (the layer contract is in pyproject.toml).
"""

from __future__ import annotations

import importlib
from types import ModuleType

from graftwork.errors import GraftError

TASKS = {
    "classification": "graftwork.tasks.classification",
    "ner": "graftwork.tasks.ner",
    "qa": "graftwork.tasks.qa",
    "seq2seq": "graftwork.tasks.seq2seq",
    "causal_lm": "graftwork.tasks.causal_lm",
}

METHODS = {
    "full": "graftwork.methods.full",
    "frozen": "graftwork.methods.frozen",
    "lora": "graftwork.methods.lora",
    "adapter": "graftwork.methods.adapter",
    "dora": "graftwork.methods.dora",
    "ia3": "graftwork.methods.ia3",
    "prompt_tuning": "graftwork.methods.prompt_tuning",
    "prefix": "graftwork.methods.prefix",  # P-tuning v2 (projection: true: Li & Liang)
    "ptuning": "graftwork.methods.ptuning",
    "setfit": "graftwork.methods.setfit",
}

OBJECTIVES = {
    "dann": "graftwork.objectives.dann",
    "ewc": "graftwork.objectives.ewc",
}

# inference backends, in the order `auto` prefers them among those a bundle holds
BACKENDS = {
    "openvino-int8": "graftwork.inference.openvino",
    "onnx-int8": "graftwork.inference.onnx",
    "openvino-fp32": "graftwork.inference.openvino",
    "onnx-fp32": "graftwork.inference.onnx",
    "torch": "graftwork.inference.pytorch",
}
BACKEND_ALIASES = {"onnx": "onnx-fp32", "openvino": "openvino-fp32"}

KINDS = {"task": TASKS, "method": METHODS, "objective": OBJECTIVES, "backend": BACKENDS}


def lookup(kind: str, name: str) -> ModuleType:
    """The module registered as `name` among the `kind`s (task, method, objective, backend)."""
    table = KINDS[kind]
    if name not in table:
        raise GraftError(f"unknown {kind} {name!r}; registered: {', '.join(table)}")
    return importlib.import_module(table[name])


def task(name: str) -> ModuleType:
    return lookup("task", name)


def method(name: str) -> ModuleType:
    return lookup("method", name)


def objective(name: str) -> ModuleType:
    return lookup("objective", name)


def backend(name: str) -> ModuleType:
    return lookup("backend", backend_name(name))


def backend_name(name: str) -> str:
    """A backend's registered name (`onnx` is `onnx-fp32`); unknown names are an error."""
    name = BACKEND_ALIASES.get(name, name)
    if name not in BACKENDS:
        names = ", ".join(["auto", *BACKENDS, *BACKEND_ALIASES])
        raise GraftError(f"unknown backend '{name}'; use one of {names}")
    return name


def configs(kind: str) -> dict[str, type]:
    """name → the `Config` model of each registered module of `kind` (method, objective)."""
    return {name: lookup(kind, name).Config for name in KINDS[kind]}


def trained_methods() -> list[str]:
    """The methods the shared loop trains (`graft train`, `graft compare`): all but those whose
    module says `TRAINS = False` (setfit: its bundles are made by `graft fewshot`)."""
    return [name for name in METHODS if getattr(method(name), "TRAINS", True)]
