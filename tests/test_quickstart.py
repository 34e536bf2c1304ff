"""The quickstart recipe a newcomer runs first: its labels have names (config only, no training)."""

from __future__ import annotations

from pathlib import Path

from graftwork.config.recipe import load_recipe
from graftwork.data.readers import read_examples

QUICKSTART = Path(__file__).parents[1] / "recipes" / "quickstart.yaml"


def test_the_quickstart_names_sst2_labels_0_negative_and_1_positive():
    recipe = load_recipe(QUICKSTART)
    assert recipe.task.label_names == {"0": "negative", "1": "positive"}


def test_every_quickstart_example_is_read_with_a_label_name_not_a_digit():
    recipe = load_recipe(QUICKSTART)
    for split in ("train", "eval"):
        examples = read_examples(recipe.data_path(split), recipe.task, recipe.data).examples
        assert {e["label"] for e in examples} == {"negative", "positive"}, split
