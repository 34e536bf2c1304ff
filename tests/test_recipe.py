"""Recipes: validation with suggestions, dotted overrides, and every shipped recipe is valid."""

from __future__ import annotations

from pathlib import Path

import pytest

from graftwork.config.recipe import load_recipe, parse_overrides
from graftwork.data.pairs import parallel_paths
from graftwork.errors import RecipeError

# pretraining and few-shot recipes have their own schemas; tests/test_pretrain.py and
# tests/test_fewshot.py validate them
RECIPES = [
    p
    for p in sorted((Path(__file__).parents[1] / "recipes").glob("*.yaml"))
    if not p.name.startswith(("pretrain-", "fewshot-"))
]


@pytest.mark.parametrize("path", RECIPES, ids=[p.name for p in RECIPES])
def test_every_shipped_recipe_validates_and_its_data_exists(path):
    recipe = load_recipe(path)
    tasks = recipe.multitask.tasks.values() if recipe.multitask else [recipe]
    for part in tasks:
        single = recipe.model_copy(update={"data": part.data})
        for split in ("train", "eval", "test"):
            if not getattr(part.data, split):
                continue
            found = single.data_path(split)
            # a parallel split names a stem (or its source file): the task's two files
            files = parallel_paths(found, part.task) if part.data.format == "parallel" else [found]
            for file in files:
                assert file.is_file(), f"{path.name}: data.{split} not found ({file})"


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
    with pytest.raises(RecipeError, match=r"task.type: .*'classification', 'ner', 'qa'"):
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


@pytest.mark.parametrize("override", ["train.lr=.inf", "train.epochs=.inf", "train.lr=1e999"])
def test_infinite_numbers_are_refused_with_their_location(override):
    key = override.partition("=")[0]
    with pytest.raises(RecipeError, match=rf"invalid recipe .*:\n  - {key}: .*finite number"):
        load_recipe({"name": "x"}, [override])


def test_nan_is_refused_with_its_location():
    with pytest.raises(RecipeError, match=r"invalid recipe .*:\n  - train.lr: .*\(got nan\)"):
        load_recipe({"name": "x"}, ["train.lr=.nan"])


def test_finite_numbers_are_required_in_sections_other_modules_define(tmp_path):
    recipe = tmp_path / "r.yaml"
    recipe.write_text(
        "method: {type: lora, alpha: .inf}\ncompress: {distill: {temperature: .inf}}\n"
    )
    with pytest.raises(RecipeError) as err:
        load_recipe(recipe)
    assert str(err.value).splitlines() == [
        f"invalid recipe {recipe}:",
        "  - method.alpha: Input should be a finite number (got inf)",
        "  - compress.distill.temperature: Input should be a finite number (got inf)",
    ]


def test_a_yaml_tag_in_an_override_is_refused_and_names_the_override():
    override = "train.epochs=!!python/object:os.system ['echo hi']"
    with pytest.raises(RecipeError, match=r"override \"train.epochs=!!python.*not a plain YAML"):
        parse_overrides([override])


@pytest.mark.parametrize("name", ["../escape", "a/b", ".hidden", "", "x" * 65, "run\n"])
def test_a_run_name_must_be_a_plain_folder_name(name):
    with pytest.raises(RecipeError, match=r"  - name: .*letters, digits, '.', '_', '-' \(no '/'"):
        load_recipe({"name": name})


def test_recipes_keep_environment_variables_as_written(monkeypatch, tmp_path):
    monkeypatch.setenv("GRAFT_DATA", str(tmp_path))
    monkeypatch.setenv("SECRET_TOKEN", "hunter2")
    recipe = load_recipe({"data": {"train": "${GRAFT_DATA}/a.tsv", "eval": "${SECRET_TOKEN}/b"}})
    assert recipe.model_dump()["data"]["train"] == "${GRAFT_DATA}/a.tsv"
    assert recipe.model_dump(mode="json")["data"]["eval"] == "${SECRET_TOKEN}/b"
    assert recipe.data_path("train") == tmp_path / "a.tsv"  # expanded only when resolved
    assert recipe.data_path("eval") == Path("hunter2/b")


def test_paths_are_shown_as_written_and_never_with_a_secret(monkeypatch, tmp_path):
    monkeypatch.setenv("GRAFT_DATA", str(tmp_path))
    monkeypatch.setenv("SECRET_TOKEN", "hunter2")
    recipe = load_recipe({"name": "x"})
    shown = recipe.show_path("${GRAFT_DATA}/a.tsv")
    assert shown == f"${{GRAFT_DATA}}/a.tsv (→ {tmp_path / 'a.tsv'})"
    assert recipe.show_path("${SECRET_TOKEN}/b.tsv") == "${SECRET_TOKEN}/b.tsv"
    assert recipe.show_path("${GRAFT_DATA}/$SECRET_TOKEN") == "${GRAFT_DATA}/$SECRET_TOKEN"
    assert recipe.show_path("plain/c.tsv") == "plain/c.tsv"


def test_a_recipe_file_with_a_byte_order_mark_loads(tmp_path):
    path = tmp_path / "bom.yaml"
    path.write_bytes("\ufeffname: bom\ntrain: {epochs: 2}\n".encode())
    recipe = load_recipe(path)
    assert recipe.name == "bom" and recipe.train.epochs == 2


def test_label_names_take_labels_as_yaml_reads_them(tmp_path):
    path = tmp_path / "r.yaml"
    path.write_text("task: {label_names: {0: negative, 1: positive}}\ndata: {iob: repair}\n")
    recipe = load_recipe(path)
    assert recipe.task.label_names == {"0": "negative", "1": "positive"}
    assert recipe.data.iob == "repair" and load_recipe({}).data.iob == "strict"


@pytest.mark.parametrize(
    ("task", "problem"),
    [
        ({"type": "ner", "label_names": {"B-PER": "person"}}, "for classification labels"),
        ({"label_names": {0: "same", 1: "same"}}, "two labels are named 'same'"),
        ({"label_names": {1: True}}, "label 1: the name must be text .*quote it"),
        ({"label_names": {True: "yes"}}, "give a label as the data spells it"),
    ],
)
def test_bad_label_names_are_refused(task, problem):
    with pytest.raises(RecipeError, match=rf"task.label_names: .*{problem}"):
        load_recipe({"task": task})


def test_iob_is_strict_or_repair():
    with pytest.raises(RecipeError, match=r"data.iob: .*'strict' or 'repair'"):
        load_recipe({"data": {"iob": "lenient"}})


def test_a_text_field_keeps_an_override_that_yaml_would_read_as_a_mapping():
    recipe = load_recipe(
        {}, ["tracking.mlflow.uri=::not a uri::", "tracking.mlflow.tags.day=2026-12-07"]
    )
    assert recipe.tracking.mlflow.uri == "::not a uri::"
    assert recipe.tracking.mlflow.tags == {"day": "2026-12-07"}


def test_a_text_field_takes_an_override_yaml_would_read_as_a_number_as_typed():
    recipe = load_recipe({}, ["name=2024", "tracking.mlflow.experiment=1e3"])
    assert recipe.name == "2024" and recipe.tracking.mlflow.experiment == "1e3"


def test_a_mapping_written_in_braces_is_still_a_mapping_and_its_error_shows_it():
    with pytest.raises(
        RecipeError, match=r"tracking.mlflow.uri: .*valid string \(got \{'a': 1\}\)"
    ):
        load_recipe({}, ["tracking.mlflow.uri={a: 1}"])


def test_null_removes_a_mapping_from_the_command_line(tmp_path):
    path = tmp_path / "r.yaml"
    path.write_text("task: {label_names: {0: negative, 1: positive}}\n")
    assert load_recipe(path, ["task.label_names=null"]).task.label_names == {}
    assert load_recipe(path, ["task.label_names={}"]).task.label_names == {
        "0": "negative",
        "1": "positive",
    }  # braces merge: nothing is removed
    tracked = {"tracking": {"mlflow": {"uri": "sqlite:///x.db"}}}
    assert load_recipe(tracked, ["tracking.mlflow=null"]).tracking.mlflow is None


@pytest.mark.parametrize("stride", [128, 124])
def test_a_qa_doc_stride_a_window_cannot_hold_is_refused_at_validation(stride):
    task = {"type": "qa", "doc_stride": stride}
    with pytest.raises(
        RecipeError, match=rf"task.doc_stride {stride} .*data.max_length 128.*at most 123"
    ):
        load_recipe({"task": task, "data": {"max_length": 128}})
    assert load_recipe({"task": {**task, "doc_stride": 123}, "data": {"max_length": 128}})


def test_a_multitask_entry_checks_its_qa_doc_stride_too():
    entry = {"task": {"type": "qa", "doc_stride": 64}, "data": {"max_length": 64}}
    other = {"task": {}, "data": {}}
    with pytest.raises(RecipeError, match=r"task.doc_stride 64 .*data.max_length 64"):
        load_recipe({"multitask": {"tasks": {"a": entry, "b": other}}})
