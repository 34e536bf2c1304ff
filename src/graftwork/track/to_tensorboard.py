"""A run as TensorBoard event files (`torch.utils.tensorboard.SummaryWriter`).

Scalars under the tracker's names (`train/loss`, `eval/accuracy`, `system/...`) at their
optimizer steps; the recipe as text (`recipe`); at a finished run's end, its hyper-parameters
beside its final eval metrics for the HParams dashboard. Point TensorBoard at the output folder
(`tensorboard --logdir runs`) to see every run's curves together. Files and models are not
TensorBoard's business and are left out.
"""

from __future__ import annotations

from pathlib import Path


class TensorBoardSink:
    NAME = "TensorBoard"

    def __init__(self, log_dir: Path, params: dict[str, str], recipe_yaml: str):
        from torch.utils.tensorboard import SummaryWriter

        self.log_dir = Path(log_dir)
        self.writer = SummaryWriter(log_dir=str(self.log_dir))
        self.params = params
        self.final: dict[str, float] = {}
        self.writer.add_text("recipe", "```yaml\n" + recipe_yaml + "\n```", 0)

    def metrics(self, values: dict[str, float], step: int) -> None:
        for key, value in values.items():
            self.writer.add_scalar(key, value, step)
            if key.startswith(("eval/", "test/")):
                self.final[key] = value
        self.writer.flush()

    def artifact(self, path: Path) -> None:
        """Files are not kept in event files."""

    def model(self, bundle: Path) -> None:
        """Models are not kept in event files."""

    def end(self, status: str) -> None:
        if status == "FINISHED" and self.final:
            hparams = {k: _scalar(v) for k, v in self.params.items()}
            self.writer.add_hparams(hparams, self.final, run_name=".")
        self.writer.close()


def _scalar(text: str) -> float | str:
    """A parameter as HParams shows it: numbers as numbers, the rest as text."""
    try:
        return float(text)
    except ValueError:
        return text
