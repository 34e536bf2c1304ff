"""Environment variables in a recipe: one rule for every field (`${NAME}` is expanded where the
value is used, an unset one is refused naming its field) and values never shown."""

from __future__ import annotations

import pytest

from graftwork.config.recipe import expand, load_recipe
from graftwork.errors import RecipeError


def recipe_file(tmp_path, text: str):
    path = tmp_path / "r.yaml"
    path.write_text(text, encoding="utf-8")
    return path


def test_an_unset_variable_in_a_tracking_field_is_refused_naming_the_field(tmp_path, monkeypatch):
    monkeypatch.delenv("NOT_SET_VAR_X", raising=False)
    path = recipe_file(tmp_path, "tracking: {mlflow: {experiment: '${NOT_SET_VAR_X}'}}\n")
    with pytest.raises(
        RecipeError,
        match=r"tracking.mlflow.experiment: \$\{NOT_SET_VAR_X\} names an environment variable",
    ):
        load_recipe(path)


def test_an_unset_variable_in_a_data_path_is_refused_like_any_other(tmp_path, monkeypatch):
    monkeypatch.delenv("NOT_SET_VAR_X", raising=False)
    path = recipe_file(tmp_path, "data: {train: $NOT_SET_VAR_X/train.tsv}\n")
    with pytest.raises(
        RecipeError, match=r"data.train: \$\{NOT_SET_VAR_X\} .*export NOT_SET_VAR_X="
    ):
        load_recipe(path)


def test_an_unset_variable_given_by_an_override_is_refused(monkeypatch):
    monkeypatch.delenv("NOT_SET_VAR_X", raising=False)
    with pytest.raises(RecipeError, match=r"tracking.mlflow.tags.team: \$\{NOT_SET_VAR_X\}"):
        load_recipe({}, ["tracking.mlflow.tags.team=${NOT_SET_VAR_X}"])


def test_tracking_fields_are_expanded_where_used_and_kept_as_written(tmp_path, monkeypatch):
    monkeypatch.setenv("TEAM_X", "nlp")
    monkeypatch.setenv("GRAFT_SECRET_X", "hunter2")
    path = recipe_file(
        tmp_path,
        "tracking: {mlflow: {experiment: '${TEAM_X}-sst2', tags: {key: '$GRAFT_SECRET_X'}}}\n",
    )
    recipe = load_recipe(path)
    assert recipe.expanded("tracking.mlflow.experiment") == "nlp-sst2"
    assert recipe.expanded("tracking.mlflow.tags") == {"key": "hunter2"}
    assert recipe.tracking.mlflow.experiment == "${TEAM_X}-sst2"  # dumps hold no value
    assert "hunter2" not in recipe.model_dump_json()


def test_a_whole_section_is_expanded_as_a_copy_for_the_code_that_uses_it(monkeypatch):
    monkeypatch.setenv("MLFLOW_HOST_X", "tracker.example")
    monkeypatch.setenv("TEAM_X", "nlp")
    overrides = ["tracking.mlflow.uri=http://${MLFLOW_HOST_X}:5000", "tracking.group=$TEAM_X"]
    recipe = load_recipe({}, overrides)
    live = recipe.expanded("tracking")
    assert live.mlflow.uri == "http://tracker.example:5000" and live.group == "nlp"
    assert live.mlflow.log_model is True  # the section's other fields kept
    assert recipe.tracking.mlflow.uri == "http://${MLFLOW_HOST_X}:5000"


def test_graft_data_has_a_default_and_is_never_refused(monkeypatch):
    monkeypatch.delenv("GRAFT_DATA", raising=False)
    recipe = load_recipe({}, ["data.train=${GRAFT_DATA}/sst2/train.tsv"])
    assert recipe.data_path("train").name == "train.tsv"
    assert "${" not in str(recipe.data_path("train"))


def test_expanding_an_unset_variable_where_it_is_used_names_the_field_not_a_value(monkeypatch):
    monkeypatch.delenv("NOT_SET_VAR_X", raising=False)
    monkeypatch.setenv("SET_VAR_X", "hunter2")
    with pytest.raises(RecipeError) as err:
        expand("https://$SET_VAR_X@host/${NOT_SET_VAR_X}", "tracking.mlflow.uri")
    assert str(err.value).startswith("tracking.mlflow.uri: ${NOT_SET_VAR_X}")
    assert "hunter2" not in str(err.value)
    assert expand("cost $5, $$USD", "task.prefix") == "cost $5, $USD"  # $$: a $ itself
