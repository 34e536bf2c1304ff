"""Recipes: validation with suggestions, dotted overrides, and every shipped recipe is valid."""

from __future__ import annotations

from pathlib import Path

import pytest

from graftwork.config.recipe import load_recipe, parse_overrides
from graftwork.errors import RecipeError

# pretraining recipes have their own schema; tests/test_pretrain.py validates them
RECIPES = [
    p
    for p in sorted((Path(__file__).parents[1] / "recipes").glob("*.yaml"))
    if not p.name.startswith("pretrain-")
]


@pytest.mark.parametrize("path", RECIPES, ids=[p.name for p in RECIPES])
def test_every_shipped_recipe_validates_and_its_data_exists(path):
    recipe = load_recipe(path)
    tasks = recipe.multitask.tasks.values() if recipe.multitask else [recipe]
    for part in tasks:
        single = recipe.model_copy(update={"data": part.data})
        for split in ("train", "eval", "test"):
            if getattr(part.data, split):
                assert single.data_path(split).is_file(), f"{path.name}: data.{split} not found"


def test_unknown_key_is_named_with_the_closest_valid_one():
    with pytest.raises(RecipeError) as err:
        load_recipe({"train": {"epohcs": 2}, "method": {"type": "lora", "rank": 4}})
    message = str(err.value)
    assert "unknown key 'train.epohcs'. Did you mean 'epochs'?" in message
    assert "unknown key 'method.rank'. Did you mean 'r'?" in message


def test_unknown_top_level_section():
    with pytest.raises(RecipeError, match="unknown key 'trian'. Did you mean 'train'?"):
        load_recipe({"trian": {}})


def test_bad_values_name_the_key_and_value():
    with pytest.raises(RecipeError, match=r"train.lr: .*greater than 0 \(got -1\)"):
        load_recipe({"train": {"lr": -1}})
    with pytest.raises(RecipeError, match=r"task.type: .*'classification' or 'ner'"):
        load_recipe({"task": {"type": "regression"}})


def test_dotted_overrides_parse_yaml_scalars_and_nest():
    assert parse_overrides(["train.epochs=2", "train.lr=5e-4", "method.target=[query,key]"]) == {
        "train": {"epochs": 2, "lr": 5e-4},
        "method": {"target": ["query", "key"]},
    }
    with pytest.raises(RecipeError, match="not KEY=VALUE"):
        parse_overrides(["train.epochs"])


def test_overrides_apply_on_top_of_shorthand_sections():
    recipe = load_recipe(
        {"backbone": "minilm-l6", "method": "full"}, ["method.type=lora", "method.r=4"]
    )
    assert recipe.method.type == "lora" and recipe.method.r == 4
    assert recipe.backbone.name == "minilm-l6" and recipe.backbone.allow_pickle is False


def test_a_recipe_without_method_fine_tunes_in_full():
    recipe = load_recipe({"name": "x"})
    assert recipe.method.type == "full" and recipe.backbone.name == "minilm-l6"


def test_missing_recipe_file_and_invalid_yaml(tmp_path):
    with pytest.raises(RecipeError, match="does not exist"):
        load_recipe(tmp_path / "nope.yaml")
    bad = tmp_path / "bad.yaml"
    bad.write_text("train: {epochs: 1\n")
    with pytest.raises(RecipeError, match="not valid YAML"):
        load_recipe(bad)
