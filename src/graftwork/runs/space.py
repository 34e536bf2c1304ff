"""The search space of `graft tune`: a YAML file mapping dotted recipe keys to ranges or choices.

```yaml
train.lr: {low: 5.0e-5, high: 3.0e-4, log: true}   # a float on a log scale
train.warmup: {low: 0.0, high: 0.2}                # a float
train.epochs: {low: 1, high: 3}                     # whole numbers when low and high are
train.batch_size: {choices: [16, 32]}              # one of these (numbers, words, true/false)
```

Each key is checked against the recipe schema before any trial runs: the recipe is validated
with the range's ends (and every choice) as overrides, so an unknown key (with its
did-you-mean), a value out of the field's bounds or of the wrong kind is reported with the
space file and key that gave it. A key whose recipe value is a whole number (batch_size) takes
whole-number ranges only. What it leaves out: conditional spaces (a key sampled only when
another has some value) and keys the tuner sets itself (name, output_dir).
"""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

from graftwork.config.recipe import load_recipe
from graftwork.data.text import text_lines
from graftwork.errors import RecipeError

RESERVED = ("name", "output_dir", "source")  # set per trial by the tuner
Scalar = bool | int | float | str


class Range(BaseModel):
    model_config = ConfigDict(extra="forbid")

    low: int | float
    high: int | float
    log: bool = False
    step: int | float | None = Field(None, gt=0)

    @model_validator(mode="after")
    def _ordered(self) -> Range:
        if not all(math.isfinite(v) for v in (self.low, self.high)):
            raise ValueError("low and high must be finite numbers")
        if not self.low < self.high:
            raise ValueError(f"low ({self.low}) must be below high ({self.high})")
        if self.log and self.low <= 0:
            raise ValueError("a log scale needs low > 0")
        if self.log and self.step is not None:
            raise ValueError("give either log: true or a step, not both")
        return self

    @property
    def whole(self) -> bool:
        values = (self.low, self.high, self.step if self.step is not None else 1)
        return all(isinstance(v, int) and not isinstance(v, bool) for v in values)

    def ends(self) -> list[Any]:
        return [self.low, self.high]

    def suggest(self, trial, key: str) -> Any:
        if self.whole:
            return trial.suggest_int(key, self.low, self.high, step=self.step or 1, log=self.log)
        return trial.suggest_float(key, self.low, self.high, step=self.step, log=self.log)


class Choices(BaseModel):
    model_config = ConfigDict(extra="forbid")

    choices: list[Scalar | None] = Field(min_length=1)

    def ends(self) -> list[Any]:
        return list(self.choices)

    def suggest(self, trial, key: str) -> Any:
        return trial.suggest_categorical(key, self.choices)


Spec = Range | Choices


def override(key: str, value: Any) -> str:
    """`key=value` as the recipe's command-line overrides read it."""
    return f"{key}={json.dumps(value)}"


def _current(recipe, key: str) -> Any:
    node: Any = recipe
    for part in key.split("."):
        node = node.get(part) if isinstance(node, dict) else getattr(node, part, None)
    return node


def read_space(path: Path, recipe_path: Path, overrides: list[str]) -> dict[str, Spec]:
    """The space file at `path`, checked against the recipe (with `overrides`)."""
    where = f"search space {path}"
    if not Path(path).is_file():
        raise RecipeError(f"{where} does not exist; give a YAML file of KEY: range or choices")
    try:
        data = yaml.safe_load("\n".join(text_lines(Path(path), str(path), "YAML"))) or {}
    except yaml.YAMLError as exc:
        raise RecipeError(f"{where} is not valid YAML: {exc}") from None
    if not isinstance(data, dict) or not data:
        raise RecipeError(
            f"{where} must map dotted recipe keys to ranges or choices, e.g. "
            "train.lr: {low: 5.0e-5, high: 3.0e-4, log: true}"
        )
    recipe = load_recipe(recipe_path, overrides)
    space: dict[str, Spec] = {}
    for key, raw in data.items():
        key = str(key)
        here = f"{where}, key {key}"
        if key.split(".")[0] in RESERVED:
            raise RecipeError(f"{here}: the tuner sets {key} for each trial; remove it")
        if not isinstance(raw, dict):
            raise RecipeError(
                f"{here}: give {{low: A, high: B}} (optionally log: true or step: S) or "
                f"{{choices: [A, B, ...]}}, not {raw!r}"
            )
        kind = Choices if "choices" in raw else Range
        try:
            spec = kind.model_validate(raw)
        except ValidationError as exc:
            problems = "; ".join(
                f"{'.'.join(str(p) for p in e['loc']) or 'value'}: {e['msg']}" for e in exc.errors()
            )
            raise RecipeError(f"{here}: {problems}") from None
        _check_kind(here, key, spec, _current(recipe, key))
        for value in spec.ends():
            try:
                load_recipe(recipe_path, [*overrides, override(key, value)])
            except RecipeError as exc:
                lines = str(exc).splitlines()[1:]  # after "invalid recipe FILE:"
                detail = "; ".join(line.strip().removeprefix("- ") for line in lines)
                raise RecipeError(f"{here}: the recipe refuses {key}={value!r}: {detail}") from None
        space[key] = spec
    return space


def _check_kind(here: str, key: str, spec: Spec, current: Any) -> None:
    whole = isinstance(current, int) and not isinstance(current, bool)
    if isinstance(spec, Range) and whole and not spec.whole:
        raise RecipeError(
            f"{here}: {key} is a whole number; give whole-number low, high (and step), or choices"
        )
