"""Environment variables in recipe values: `${NAME}` or `$NAME`, one rule for every field.

A variable stands for its value where the value is used (`expand`), `$$` for a `$` itself; one
that is not set is an error naming the field and the variable, never a value. `GRAFT_DATA` has
a default (`data_root`: the shared data beside the project) and is the only variable whose value
messages may show. Left out: shell forms such as `${NAME:-default}` (a recipe gives its defaults
as values).
"""

from __future__ import annotations

import os
import re
from pathlib import Path
from typing import Any

from pydantic import BaseModel

from graftwork.errors import RecipeError

# environment variables whose values messages may show (where the shared data lies)
SHOWN_VARIABLES = {"GRAFT_DATA"}
# `${NAME}` or `$NAME`: an environment variable in a recipe value; `$$`: a `$` itself
VARIABLE = re.compile(r"\$(?:\{([A-Za-z_]\w*)\}|([A-Za-z_]\w*)|\$)")


def variable_value(name: str) -> str | None:
    """A variable's value (`GRAFT_DATA` has a default: `data_root`), or None when unset."""
    return data_root() if name == "GRAFT_DATA" else os.environ.get(name)


def unset_variables(raw: str) -> list[str]:
    """The variables `raw` names that are not set, in order."""
    names = [a or b for a, b in VARIABLE.findall(raw)]
    return [name for name in names if name and variable_value(name) is None]


def substitute(raw: str) -> str:
    """`raw` with its set variables replaced by their values and `$$` by `$` (an unset variable
    stays as written: `expand` refuses it)."""

    def one(match: re.Match) -> str:
        name = match.group(1) or match.group(2)
        if name is None:
            return "$"
        value = variable_value(name)
        return match.group(0) if value is None else value

    return VARIABLE.sub(one, raw)


def expand(raw: str, field: str) -> str:
    """`raw` with its variables replaced by their values; an unset one is a RecipeError naming
    `field` (and the variable, never a value)."""
    unset = unset_variables(raw)
    if unset:
        raise RecipeError(unset_message(field, unset[0]))
    return substitute(raw)


def expand_all(value: Any, field: str) -> Any:
    """`value` with every text in it expanded (`expand`; in mappings, lists and sections, whose
    copies keep their other fields), an unset variable named by its dotted field."""
    if isinstance(value, str):
        return expand(value, field)
    if isinstance(value, dict):
        return {k: expand_all(v, f"{field}.{k}") for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return type(value)(expand_all(v, f"{field}.{i}") for i, v in enumerate(value))
    if isinstance(value, BaseModel):
        fields = type(value).model_fields.items()
        update = {n: expand_all(getattr(value, n), f"{field}.{f.alias or n}") for n, f in fields}
        return value.model_copy(update=update)
    return value


def unset_message(field: str, name: str) -> str:
    return (
        f"{field}: ${{{name}}} names an environment variable that is not set; set it "
        f"(export {name}=...) or write the value in the recipe (a $ itself as $$)"
    )


def data_root() -> str:
    """Where the shared real data lies: $GRAFT_DATA, else ../shared/data beside the project."""
    env = os.environ.get("GRAFT_DATA")
    if env:
        return env
    candidates = [
        Path.cwd().parent / "shared" / "data",
        Path(__file__).resolve().parents[3] / "shared" / "data",  # editable install
    ]
    found = next((c for c in candidates if c.is_dir()), candidates[0])
    return str(found)
