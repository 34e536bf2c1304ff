"""Command-line overrides of a recipe: `train.epochs=2 method.type=lora` as a nested dict, and
the merge of such a dict onto the recipe's own (shorthand sections such as `method: lora` are
widened to mappings first). Validation is left to `graftwork.config.recipe`.

A value is read as YAML, but only what is plainly written as one becomes a list (`[a, b]`) or a
mapping (`{a: 1}`): `::not a uri::` or `2026-12-07` stay the text given (YAML would read a
mapping, a date), and `load_recipe` gives a text field the text as typed when YAML read a number
or a boolean (`name=2024`). `KEY=null` on a mapping removes it, so the field takes its default
(`task.label_names=null` clears the recipe's names; `KEY={}` merges nothing)."""

from __future__ import annotations

import datetime
import re
from typing import Any

import yaml

from graftwork.errors import RecipeError

# sections that may be written as one string: the key that string stands for
SHORTHAND = {"backbone": "name", "method": "type"}


def parse_overrides(items: list[str]) -> dict[str, Any]:
    """`train.epochs=2 method.type=lora` → nested dict; values are parsed as YAML scalars."""
    out: dict[str, Any] = {}
    for item in items:
        key, sep, raw = item.partition("=")
        if not sep or not key:
            raise RecipeError(
                f"override {item!r} is not KEY=VALUE; write for example train.epochs=2"
            )
        node = out
        parts = key.split(".")
        for part in parts[:-1]:
            node = node.setdefault(part, {})
            if not isinstance(node, dict):
                raise RecipeError(f"override {item!r} conflicts with an earlier override of {part}")
        try:
            node[parts[-1]] = _scalar(raw)
        except yaml.YAMLError as exc:
            problem = " ".join(str(getattr(exc, "problem", None) or exc).split())
            raise RecipeError(
                f"override {item!r}: the value is not a plain YAML value ({problem}); write a "
                "number, a word, a quoted string, a list like [a, b], or null to remove a mapping"
            ) from None
    return out


def override_texts(items: list[str]) -> dict[tuple[str, ...], str]:
    """Each override's key path → its value as typed (for a text field YAML read otherwise)."""
    out = {}
    for item in items:
        key, _, raw = item.partition("=")
        out[tuple(key.split("."))] = raw
    return out


def _scalar(raw: str) -> Any:
    """A YAML scalar, with 5e-4 read as a number (YAML 1.1 would keep it a string); a list or a
    mapping only when written in brackets or braces, and never a date: else the text itself."""
    if raw == "":
        return ""
    value = yaml.safe_load(raw)
    if isinstance(value, str) and re.fullmatch(r"[+-]?(\d+\.?\d*|\.\d+)[eE][+-]?\d+", value):
        return float(value)
    written = raw.lstrip()[:1]
    if (
        (isinstance(value, dict) and written != "{")
        or (isinstance(value, list) and written != "[")
        or isinstance(value, (datetime.date, datetime.datetime))
    ):
        return raw
    return value


def merge(base: dict[str, Any], extra: dict[str, Any]) -> dict[str, Any]:
    """`extra` over `base`, mapping by mapping; None over a mapping removes it."""
    merged = dict(base)
    for key, value in extra.items():
        if value is None and isinstance(merged.get(key), dict):
            del merged[key]
        elif isinstance(value, dict) and isinstance(merged.get(key), dict):
            merged[key] = merge(merged[key], value)
        elif isinstance(merged.get(key), str) and isinstance(value, dict) and key in SHORTHAND:
            merged[key] = merge({SHORTHAND[key]: merged[key]}, value)
        else:
            merged[key] = value
    return merged
