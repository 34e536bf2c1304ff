"""The recipe's `tracking` section: where a run is recorded besides its run folder.

```yaml
tracking:
  mlflow: {uri: sqlite:///mlruns.db, experiment: sst2}   # or `mlflow: true` for the defaults
  tensorboard: true                                       # event files in RUN/tensorboard
  wandb: {project: graftwork, mode: offline}              # needs the wandb package
```

Every key is overridable like any recipe field (`tracking.mlflow.experiment=NAME`,
`tracking.tensorboard=true`). Without the section a run writes its run folder only. A section
given as `true` takes its defaults, `false` (or leaving it out) turns it off; `mlflow` given as
a string is its tracking URI. What each one records is in `graftwork.track`.
"""

from __future__ import annotations

from typing import Any, Literal

from pydantic import Field, field_validator

from graftwork.config.base import Section as _Section


class MlflowConfig(_Section):
    uri: str = Field(
        "sqlite:///mlruns.db",
        description="MLflow tracking URI: a SQLite file (relative to the current folder), a "
        "server (http://HOST:PORT) or any other URI MLflow accepts; credentials in it "
        "(user:password@, token=…) are left out of what the run records.",
    )
    experiment: str | None = Field(
        None, description="Experiment the run joins (created if new); default: the run's name."
    )
    artifacts: str | None = Field(
        None,
        description="Where an experiment created by this run keeps its artifacts (a folder or "
        "URI); default: mlartifacts/ beside a SQLite database, else the server's choice.",
    )
    log_model: bool = Field(
        True, description="Log the bundle as an MLflow model (pyfunc) besides the artifacts."
    )
    parent_run: str | None = Field(
        None,
        description="Run id to nest this run under (graft compare and graft tune set it).",
    )
    tags: dict[str, str] = Field(default_factory=dict, description="Extra tags for the run.")

    @field_validator("tags", mode="before")
    @classmethod
    def _tags_as_text(cls, value: Any) -> Any:
        if isinstance(value, dict):
            return {str(k): str(v) for k, v in value.items()}
        return value


class TensorBoardConfig(_Section):
    log_dir: str | None = Field(
        None, description="Folder for the event files; default: RUN_FOLDER/tensorboard."
    )


class WandbConfig(_Section):
    project: str = Field("graftwork", description="W&B project.")
    entity: str | None = Field(None, description="W&B entity (team or user).")
    mode: Literal["offline", "online"] = Field(
        "offline", description="offline: files in RUN_FOLDER/wandb, to `wandb sync` later."
    )


def _switch(value: Any) -> Any:
    """`true` → the defaults, `false` → off."""
    if value is True:
        return {}
    if value is False:
        return None
    return value


class TrackingConfig(_Section):
    mlflow: MlflowConfig | None = Field(None, description="Record runs in MLflow.")
    tensorboard: TensorBoardConfig | None = Field(None, description="Write TensorBoard events.")
    wandb: WandbConfig | None = Field(None, description="Record runs in Weights & Biases.")
    group: str | None = Field(
        None,
        description="A name tying runs together (MLflow tag graftwork.group, W&B group); graft "
        "compare and graft tune set it.",
    )

    @field_validator("mlflow", mode="before")
    @classmethod
    def _mlflow_shorthand(cls, value: Any) -> Any:
        return {"uri": value} if isinstance(value, str) else _switch(value)

    @field_validator("tensorboard", "wandb", mode="before")
    @classmethod
    def _on_off(cls, value: Any) -> Any:
        return _switch(value)

    @property
    def enabled(self) -> bool:
        return any(getattr(self, key) is not None for key in ("mlflow", "tensorboard", "wandb"))
