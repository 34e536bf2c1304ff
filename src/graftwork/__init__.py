"""graftwork: transfer learning for NLP from one recipe.

import graftwork
result = graftwork.run("recipes/quickstart.yaml", ["train.epochs=2"])
model = graftwork.load(result.bundle)
model.predict(["a gripping, funny film"])
"""

from __future__ import annotations

from graftwork.config.recipe import Recipe, load_recipe
from graftwork.errors import BackboneError, BundleError, DataError, GraftError, RecipeError

__version__ = "0.1.0"


def run(recipe, overrides=None, resume: bool = False, overwrite: bool = False):
    """Run a recipe (path, dict or Recipe): train, evaluate, bundle, report.

    (Training alone is `graftwork.runs.finetune.train`; `graftwork.train` is the training package.)
    """
    from graftwork.runs.finetune import run as _run  # torch

    return _run(recipe, overrides, resume=resume, overwrite=overwrite)


def load(
    bundle,
    verify: bool = True,
    threads: int | None = None,
    backend: str = "auto",
    adapter: str | None = None,
    task: str | None = None,
):
    """Load a bundle for prediction and evaluation (backend: auto picks its fastest artifact;
    adapter: which of an adapter bundle's adapters is active, default the one it was trained
    with; task: which task of a multi-task bundle answers, default the first)."""
    from graftwork.inference.predictor import load as _load  # torch

    return _load(
        bundle, verify=verify, threads=threads, backend=backend, adapter=adapter, task=task
    )


__all__ = [
    "BackboneError",
    "BundleError",
    "DataError",
    "GraftError",
    "Recipe",
    "RecipeError",
    "load",
    "load_recipe",
    "run",
]
