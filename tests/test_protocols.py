"""Every module in `graftwork.registry` satisfies its protocol, and registered modules import no
torch: validating a recipe must not need it.

A protocol's members are read from its class (`tasks.base.Task`, `methods.base.Method`,
`objectives.base.Objective`, `inference.backends.Backend`):
each annotated attribute must be present with the annotated kind, and each function must take
the arguments the protocol passes. Nothing here trains or loads a model.
"""

from __future__ import annotations

import inspect
import subprocess
import sys
import typing

import pytest
from pydantic import BaseModel

from graftwork import registry
from graftwork.inference.backends import Backend
from graftwork.methods.base import STAGES, Method, supported
from graftwork.objectives.base import Objective
from graftwork.tasks.base import Task

PROTOCOLS = {"task": Task, "method": Method, "objective": Objective, "backend": Backend}
CASES = [
    pytest.param(kind, name, id=f"{kind}-{name}")
    for kind, table in registry.KINDS.items()
    for name in table
]
KINDS = {"type": type, "float": float, "str": str, "dict": dict, "frozenset": frozenset}
KINDS["tuple"] = tuple


def members(protocol) -> tuple[dict[str, str], dict[str, inspect.Signature]]:
    """(attribute → annotation text, function → signature without self) of a protocol."""
    attributes = dict(getattr(protocol, "__annotations__", {}))
    functions = {
        name: inspect.signature(value)
        for name, value in vars(protocol).items()
        if inspect.isfunction(value) and not name.startswith("_")
    }
    return attributes, functions


def accepts(function, wanted: inspect.Signature) -> bool:
    """Whether `function` can be called as the protocol calls it: its positional arguments
    (after self) and, where the protocol takes **kwargs, any keyword."""
    params = list(wanted.parameters.values())[1:]
    positional = [p for p in params if p.kind is p.POSITIONAL_OR_KEYWORD]
    try:
        bound = inspect.signature(function)
        bound.bind(*range(len(positional)))
    except (TypeError, ValueError):
        return False
    if any(p.kind is p.VAR_KEYWORD for p in params):
        return any(p.kind is p.VAR_KEYWORD for p in bound.parameters.values())
    return True


@pytest.mark.parametrize("kind, name", CASES)
def test_registered_module_satisfies_its_protocol(kind, name):
    module = registry.lookup(kind, name)
    attributes, functions = members(PROTOCOLS[kind])
    missing = [m for m in [*attributes, *functions] if not hasattr(module, m)]
    assert not missing, f"{kind} {name} ({module.__name__}) lacks {missing}"
    for attribute, annotation in attributes.items():
        expected = KINDS.get(str(annotation).split("[")[0], object)
        value = getattr(module, attribute)
        assert isinstance(value, expected), f"{name}.{attribute} is not a {annotation}"
    for function, signature in functions.items():
        value = getattr(module, function)
        assert callable(value), f"{name}.{function} is not a function"
        assert accepts(value, signature), f"{name}.{function} does not take {signature}"


@pytest.mark.parametrize("name", list(registry.BACKENDS))
def test_every_backend_declares_how_far_its_logits_may_move_with_the_batch(name):
    from graftwork.inference import backends

    module = registry.backend(name)
    assert isinstance(module, backends.Backend)
    bound = backends.tolerance(name)
    assert isinstance(bound, float) and 0.0 <= bound < 0.1, (name, bound)
    assert backends.tolerance(name) == module.tolerance(name)


def test_backend_aliases_share_the_tolerance_of_the_name_they_stand_for():
    from graftwork.inference import backends

    for alias, name in registry.BACKEND_ALIASES.items():
        assert backends.tolerance(alias) == backends.tolerance(name)


@pytest.mark.parametrize("kind", ["method", "objective"])
def test_configs_are_pydantic_models_tagged_with_their_name(kind):
    for name, config in registry.configs(kind).items():
        assert issubclass(config, BaseModel)
        field = config.model_fields["type"]
        assert field.default == name and typing.get_args(field.annotation) == (name,)


@pytest.mark.parametrize("name", list(registry.METHODS))
def test_method_refusals_name_known_stages_and_say_why(name):
    method = registry.method(name)
    assert method.DEFAULT_LR > 0
    assert set(method.REFUSES) <= set(STAGES)
    assert supported(method.REFUSES) == method.SUPPORTS
    for stage, reason in method.REFUSES.items():
        message = reason.format(where="runs/x/bundle", method=name)
        assert len(message) > 40 and "{" not in message, (stage, message)


def test_a_method_that_keeps_the_encoder_frozen_refuses_ewc_and_multitask():
    from graftwork.errors import RecipeError
    from graftwork.methods.base import refuse

    refuse("full", "ewc", "recipe", RecipeError)  # full trains the encoder: no error
    for name in ("frozen", "lora", "adapter", "dora", "ia3"):
        with pytest.raises(RecipeError, match=f"method {name} keeps frozen; use method: full"):
            refuse(name, "ewc", "recipe", RecipeError)
        with pytest.raises(RecipeError, match="multitask training supports method full"):
            refuse(name, "multitask", "recipe", RecipeError)
    refuse(None, "prune", "a backbone folder")  # graft pretrain's bundles record no method


# the command of issue 10: validating recipes imports neither torch nor any other heavy library
TORCH_FREE = """
import sys
from graftwork.config.recipe import load_recipe
load_recipe('recipes/quickstart.yaml')
load_recipe({'method': 'adapter', 'objective': {'type': 'ewc', 'previous': 'x', 'lambda': 1}})
from graftwork import registry
from graftwork.inference.backends import Backend
for kind in ('task', 'method', 'objective'):
    for name in registry.KINDS[kind]:
        registry.lookup(kind, name)
heavy = sorted({m.split('.')[0] for m in sys.modules} & {'torch', 'transformers', 'peft'})
assert not heavy, heavy
"""


def test_recipes_validate_and_registered_modules_import_without_torch():
    from pathlib import Path

    root = Path(__file__).resolve().parent.parent
    done = subprocess.run(
        [sys.executable, "-c", TORCH_FREE], cwd=root, capture_output=True, text=True
    )
    assert done.returncode == 0, done.stderr[-2000:]
