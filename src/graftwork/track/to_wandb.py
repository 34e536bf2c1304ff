"""A run in Weights & Biases (`wandb`), offline by default: the run's files go to
RUN_FOLDER/wandb and reach a W&B server with `wandb sync` (there is no network here).

The recipe is the run's config, metrics are logged at their steps, the final numbers go to the
run's summary, files are saved with the run and the bundle is a `model` artifact. The package
is optional: a recipe naming `tracking.wandb` without it installed is refused before training.
"""

from __future__ import annotations

from pathlib import Path

from graftwork.errors import GraftError


def available() -> bool:
    try:
        import wandb  # noqa: F401
    except ImportError:
        return False
    return True


class WandbSink:
    NAME = "W&B"

    def __init__(self, cfg, run_dir: Path, run_name: str, params: dict, group: str | None):
        if not available():
            raise GraftError(
                "tracking.wandb needs the wandb package, which is not installed: pip install "
                "wandb, or remove tracking.wandb from the recipe"
            )
        import wandb

        run_dir.mkdir(parents=True, exist_ok=True)
        self.run_dir = run_dir
        self.run = wandb.init(
            project=cfg.project,
            entity=cfg.entity,
            name=run_name,
            group=group,
            config=params,
            mode=cfg.mode,
            dir=str(run_dir),
            reinit=True,
        )

    def metrics(self, values: dict[str, float], step: int) -> None:
        self.run.log(values, step=step)
        self.run.summary.update(values)

    def artifact(self, path: Path) -> None:
        self.run.save(str(path), base_path=str(path.parent), policy="now")

    def model(self, bundle: Path) -> None:
        import wandb

        artifact = wandb.Artifact(f"{self.run.name}-bundle", type="model")
        artifact.add_dir(str(bundle))
        self.run.log_artifact(artifact)

    def end(self, status: str) -> None:
        self.run.finish(exit_code=0 if status == "FINISHED" else 1)
