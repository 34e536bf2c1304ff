"""The recipe: one validated YAML document that drives a whole run.

Loading goes YAML → plain dict → dotted command-line overrides → pydantic models. Unknown keys
are errors that name the key and suggest the closest valid one. Method-specific sections
(`method: {type: lora, ...}`) are validated by the method's own config model, which lives in
`graftwork.methods`; this module only holds the sections every run shares.

Every number must be finite (`.inf`/`.nan` are refused, in every section and every schema);
a run's `name` is a folder name. Relative data paths are resolved against the recipe file's folder
first, then the current directory; `${GRAFT_DATA}` (default: the `shared/data` folder beside the
project) and other environment variables may be used in any field. The recipe keeps values as
written: variables are expanded only where used (`resolve_path`, `expanded`), so dumps (logs,
metrics.json, the bundle manifest) never hold a value taken from the environment, and
`show_path` names a path in messages the same way (with what it resolves to only for
`${GRAFT_DATA}`, which is no secret).

One rule for variables, in every field (`graftwork.config.variables`): `${NAME}` (or `$NAME`)
stands for the environment variable, `$$` for a `$`, and a variable that is not set is an error
naming the field (`load_recipe` checks a recipe file and its overrides up front; `expand` checks
again where a value is used). Whoever uses a value other than a path (a tracking URI, an
experiment, a tag) takes it through `RecipeBase.expanded`, and messages show it as written.
"""

from __future__ import annotations

import difflib
import math
import os
import re
from pathlib import Path
from typing import Annotated, Any, Union, get_args

import yaml
from pydantic import (
    BaseModel,
    Field,
    ValidationError,
    ValidationInfo,
    field_validator,
)

from graftwork import registry
from graftwork.config.base import NAME
from graftwork.config.base import Section as _Section
from graftwork.config.compress import CompressConfig
from graftwork.config.generation import GenerationConfig
from graftwork.config.overrides import merge, override_texts, parse_overrides
from graftwork.config.sections import (  # noqa: F401  (re-exported: the recipe's sections)
    BackboneConfig,
    DataConfig,
    MultiTaskConfig,
    TaskConfig,
    TaskEntry,
    TaskType,
    check_doc_stride,
)
from graftwork.config.tracking import TrackingConfig
from graftwork.config.train import TrainConfig  # noqa: F401  (re-exported)
from graftwork.config.variables import (  # noqa: F401  (data_root re-exported)
    SHOWN_VARIABLES,
    data_root,
    expand,
    expand_all,
    substitute,
    unset_message,
    unset_variables,
)
from graftwork.errors import RecipeError

# the `type` unions of the registered methods and objectives (each module's `Config`)
METHOD_CONFIGS = registry.configs("method")
OBJECTIVE_CONFIGS = registry.configs("objective")
MethodConfig = Annotated[Union[tuple(METHOD_CONFIGS.values())], Field(discriminator="type")]  # noqa: UP007
ObjectiveConfig = Annotated[
    Union[tuple(OBJECTIVE_CONFIGS.values())], Field(discriminator="type")  # noqa: UP007
]


class RecipeBase(_Section):
    """What every kind of recipe has: a name, a backbone, where runs go, and its source file."""

    name: str = "run"
    backbone: BackboneConfig = BackboneConfig()
    output_dir: str = Field("runs", description="Runs go to OUTPUT_DIR/NAME/.")
    source: Annotated[str | None, Field(exclude=True)] = None

    @field_validator("name")
    @classmethod
    def _folder_name(cls, value: str) -> str:
        if not NAME.fullmatch(value):
            raise ValueError(
                "the run is written to OUTPUT_DIR/NAME, so the name must start with a letter or "
                "digit and hold only letters, digits, '.', '_', '-' (no '/'; at most 64 characters)"
            )
        return value

    @field_validator("backbone", mode="before")
    @classmethod
    def _backbone_shorthand(cls, value: Any) -> Any:
        return {"name": value} if isinstance(value, str) else value

    @property
    def run_dir(self) -> Path:
        return Path(self.output_dir) / self.name

    def expanded(self, field: str) -> Any:
        """The value of the dotted `field` with its variables expanded (`expand_all`): a text
        ("tracking.mlflow.uri") or a whole section ("tracking.mlflow", a copy). For using the
        value, never for showing or saving it."""
        value: Any = self
        for part in field.split("."):
            value = value.get(part) if isinstance(value, dict) else getattr(value, part, None)
        return expand_all(value, field)

    def resolve_path(self, raw: str) -> Path:
        """A path named in the recipe: ${GRAFT_DATA} and env vars, then recipe folder, cwd (an
        unset variable stays as written, and the file is then missing under that name)."""
        expanded = os.path.expanduser(substitute(raw))
        path = Path(expanded)
        if not path.is_absolute() and self.source:
            beside = Path(self.source).parent / path
            if beside.exists():
                return beside
        return path

    def show_path(self, raw: str) -> str:
        """A recipe path as messages and logs name it: as written, never with a value taken from
        the environment; with the path it resolves to where that holds no other variable."""
        used = {name.strip("{}") for name in re.findall(r"\$(\w+|\{[^}]*\})", raw)}
        if used - SHOWN_VARIABLES:
            return raw
        resolved = str(self.resolve_path(raw))
        return f"{raw} (→ {resolved})" if used else resolved


class Recipe(RecipeBase):
    task: TaskConfig = TaskConfig()
    data: DataConfig = DataConfig()
    method: MethodConfig = Field(default_factory=lambda: METHOD_CONFIGS["full"]())
    train: TrainConfig = TrainConfig()
    compress: CompressConfig = CompressConfig()
    generation: GenerationConfig = Field(
        default_factory=GenerationConfig,
        description="How generating tasks (causal_lm, seq2seq) decode (config.generation).",
    )
    tracking: TrackingConfig = Field(
        TrackingConfig(), description="MLflow, TensorBoard, W&B (default: the run folder only)."
    )
    objective: ObjectiveConfig | None = Field(
        None, description="An extra training objective: dann or ewc (graftwork.objectives)."
    )
    multitask: MultiTaskConfig | None = Field(
        None, description="Several tasks on one encoder; replaces task and data."
    )

    @field_validator("method", mode="before")
    @classmethod
    def _method_shorthand(cls, value: Any) -> Any:
        return {"type": value} if isinstance(value, str) else value

    @field_validator("method", "objective")
    @classmethod
    def _task_takes_it(cls, value: Any, info: ValidationInfo) -> Any:
        """A task that names the methods (objectives) it can train with (`METHODS`,
        `OBJECTIVES`: seq2seq) refuses the others here, before anything loads."""
        task = info.data.get("task")
        kind = info.field_name
        allowed = getattr(registry.task(task.type), kind.upper() + "S", None) if task else None
        if value is None or allowed is None or value.type in allowed:
            return value
        takes = f"{kind} {' or '.join(allowed)}" if allowed else f"no {kind}"
        raise ValueError(
            f"task {task.type} trains with {takes} (got {value.type}); choose one of those, "
            f"or {'remove the objective' if kind == 'objective' else 'another task'}"
        )

    @field_validator("objective", mode="before")
    @classmethod
    def _objective_type(cls, value: Any) -> Any:
        if isinstance(value, dict) and "type" not in value:
            raise ValueError(f"give the objective's type: {' or '.join(OBJECTIVE_CONFIGS)}")
        return value

    @field_validator("data")
    @classmethod
    def _drop_labels_need_ner(cls, value: DataConfig, info: ValidationInfo) -> DataConfig:
        task = info.data.get("task")
        if task is not None:
            check_doc_stride(task, value)
        if value.drop_labels and task is not None and task.type != "ner":
            raise ValueError(
                f"data.drop_labels maps entity types to O, which only NER tags have (the task "
                f"is {task.type}); remove it"
            )
        return value

    def data_path(self, split: str) -> Path | None:
        """Resolve a data path from the recipe: env vars, then recipe folder, then cwd."""
        raw = getattr(self.data, split)
        return None if raw is None else self.resolve_path(raw)


# names users bring from transformers / peft, mapped to ours (for "did you mean")
ALIASES = {
    "rank": "r",
    "lora_alpha": "alpha",
    "lora_dropout": "dropout",
    "target_modules": "target",
    "learning_rate": "lr",
    "num_train_epochs": "epochs",
    "num_epochs": "epochs",
    "per_device_train_batch_size": "batch_size",
    "gradient_accumulation_steps": "grad_accum",
    "warmup_ratio": "warmup",
    "model": "backbone",
}


# sections that are a union chosen by `type`: their error locations carry the type after the key
TAGGED = {"method": METHOD_CONFIGS, "objective": OBJECTIVE_CONFIGS}


def _owner(loc: tuple[Any, ...], root: type[BaseModel] = Recipe) -> type[BaseModel] | None:
    """The config model that owns recipe location `loc` (for suggesting valid keys)."""
    if loc and loc[0] in TAGGED:
        return TAGGED[loc[0]].get(str(loc[1])) if len(loc) > 1 else None
    current: type[BaseModel] = root
    for part in loc:
        field = current.model_fields.get(str(part))
        ann = field.annotation if field else None
        models = [
            a for a in (ann, *get_args(ann)) if isinstance(a, type) and issubclass(a, BaseModel)
        ]
        if not models:  # Optional[Section] unwraps to Section
            return None
        current = models[0]
    return current


def _format_errors(err: ValidationError, where: str, root: type[BaseModel] = Recipe) -> str:
    lines = [f"invalid recipe {where}:"]
    for e in err.errors():
        loc = tuple(p for p in e["loc"])
        dotted = ".".join(str(p) for i, p in enumerate(loc) if not (i == 1 and loc[0] in TAGGED))
        if e["type"] == "extra_forbidden":
            owner = _owner(loc[:-1], root)
            valid = sorted(f.alias or n for n, f in owner.model_fields.items()) if owner else []
            valid = [v for v in valid if v != "source"]
            alias = ALIASES.get(str(loc[-1]))
            close = (
                [alias] if alias in valid else difflib.get_close_matches(str(loc[-1]), valid, n=1)
            )
            hint = f" Did you mean '{close[0]}'?" if close else ""
            lines.append(f"  - unknown key '{dotted}'.{hint} Valid keys here: {', '.join(valid)}.")
        else:
            value = e.get("input")  # a section's own mapping is not shown; a value read as one is
            typed = e["type"].endswith("_type")
            shown = f" (got {value!r})" if typed or not isinstance(value, dict) else ""
            lines.append(f"  - {dotted}: {e['msg']}{shown}")
    return "\n".join(lines)


def load_recipe(
    source: str | Path | dict[str, Any] | BaseModel,
    overrides: list[str] | None = None,
    model: type[BaseModel] = Recipe,
) -> Any:
    """Load and validate a recipe from a YAML path, a dict, or a Recipe, applying overrides.

    `model` is the recipe schema (default `Recipe`; `graft pretrain` passes its own). An
    already-validated recipe of any schema is returned as is, or re-validated with overrides."""
    if isinstance(source, BaseModel):
        if not overrides:
            return source
        model = type(source)
        source = source.model_dump() | {"source": getattr(source, "source", None)}
    where = "(from a dict)"
    path: Path | None = None
    if isinstance(source, (str, Path)):
        path = Path(source)
        where = str(path)
        if not path.is_file():
            raise RecipeError(f"recipe file {path} does not exist; pass the path to a .yaml recipe")
        try:
            data = yaml.safe_load(path.read_text(encoding="utf-8-sig")) or {}
        except yaml.YAMLError as exc:
            raise RecipeError(f"recipe {path} is not valid YAML: {exc}") from None
        if not isinstance(data, dict):
            raise RecipeError(
                f"recipe {path} must be a mapping of sections, not {type(data).__name__}"
            )
    else:
        data = dict(source)
    data = merge(data, parse_overrides(overrides or []))
    if path is not None:
        data["source"] = str(path)
    try:
        recipe = _validate(model, data, override_texts(overrides or []))
    except ValidationError as err:
        raise RecipeError(_format_errors(err, where, model)) from None
    if path is not None or overrides:
        unset = [
            f"  - {unset_message('.'.join(loc), name)}"
            for loc, text in _strings(recipe)
            for name in unset_variables(text)[:1]
        ]
        if unset:
            raise RecipeError("\n".join([f"invalid recipe {where}:", *unset]))
    infinite = [
        f"  - {'.'.join(loc)}: Input should be a finite number (got {value})"
        for loc, value in _non_finite(recipe)
    ]
    if infinite:
        raise RecipeError("\n".join([f"invalid recipe {where}:", *infinite]))
    return recipe


def _validate(model: type[BaseModel], data: dict, texts: dict[tuple[str, ...], str]) -> Any:
    """`model.model_validate(data)`; a text field an override gave a value YAML read as a
    number or a boolean (`name=2024`) is given the text as typed, and validated again."""
    try:
        return model.model_validate(data)
    except ValidationError as err:
        retyped = False
        for e in err.errors():
            loc = tuple(
                str(p) for i, p in enumerate(e["loc"]) if not (i == 1 and e["loc"][0] in TAGGED)
            )
            scalar = isinstance(e.get("input"), (bool, int, float))
            if e["type"] == "string_type" and scalar and loc in texts:
                node = data
                for part in loc[:-1]:
                    node = node[part]
                node[loc[-1]], retyped = texts[loc], True
        if not retyped:
            raise
    return model.model_validate(data)


def _strings(value: Any, loc: tuple[str, ...] = ()) -> list[tuple[tuple[str, ...], str]]:
    """(location, text) of every text value in a validated recipe, any schema."""
    if isinstance(value, str):
        return [(loc, value)]
    if isinstance(value, BaseModel):
        fields = type(value).model_fields
        value = {f.alias or n: getattr(value, n) for n, f in fields.items() if not f.exclude}
    elif isinstance(value, (list, tuple)):
        value = dict(enumerate(value))
    if not isinstance(value, dict):
        return []
    return [found for key, item in value.items() for found in _strings(item, (*loc, str(key)))]


def _non_finite(value: Any, loc: tuple[str, ...] = ()) -> list[tuple[tuple[str, ...], float]]:
    """(location, value) of every NaN or infinite number in a validated recipe, any schema."""
    if isinstance(value, float):
        return [] if math.isfinite(value) else [(loc, value)]
    if isinstance(value, BaseModel):  # keys as written (a field's alias, e.g. ewc's lambda)
        value = {f.alias or n: getattr(value, n) for n, f in type(value).model_fields.items()}
    elif isinstance(value, (list, tuple)):
        value = dict(enumerate(value))
    if not isinstance(value, dict):
        return []
    return [found for key, item in value.items() for found in _non_finite(item, (*loc, str(key)))]
