"""`graftwork.load(bundle)`: a bundle ready to predict and evaluate.

The same functions serve the CLI (`graft predict`, `graft eval`) and the Python API.
"""

from __future__ import annotations

from pathlib import Path

import torch

from .bundle import read_manifest
from .data.readers import read_examples
from .infer import evaluate_examples, predict_examples
from .recipe import DataConfig, TaskConfig
from .tasks import TASKS


class Predictor:
    def __init__(self, bundle: str | Path, verify: bool = True, threads: int | None = None):
        from transformers import AutoTokenizer

        self.path = Path(bundle)
        self.manifest = read_manifest(self.path, verify=verify)
        if threads:
            torch.set_num_threads(threads)
        recipe = self.manifest["recipe"]
        self.task_config = TaskConfig(**recipe["task"])
        self.data_config = DataConfig(**recipe["data"])
        self.task = TASKS[self.task_config.type]
        self.tokenizer = AutoTokenizer.from_pretrained(str(self.path))
        self.model = self.task.model_class().from_pretrained(str(self.path), use_safetensors=True)
        self.model.eval()
        self.id2label = {int(k): v for k, v in self.model.config.id2label.items()}

    @property
    def max_length(self) -> int:
        return self.data_config.max_length

    def predict(self, texts: list[str], top_k: int = 1, batch_size: int = 64) -> list[dict]:
        """Answers for raw texts: a label and score each, or the entities found in each."""
        examples = [self.task.from_text(t) for t in texts]
        return predict_examples(
            self.model,
            self.tokenizer,
            self.task,
            examples,
            self.id2label,
            self.max_length,
            batch_size,
            top_k,
        )

    def evaluate(self, path: str | Path, batch_size: int = 64, **data_options) -> dict:
        """Metrics on a labelled file, read with the bundle's recipe (options override it)."""
        data = self.data_config.model_copy(update=data_options)
        result = read_examples(Path(path), self.task_config, data)
        metrics = evaluate_examples(
            self.model,
            self.tokenizer,
            self.task,
            result.examples,
            self.id2label,
            self.max_length,
            batch_size,
            result.path,
        )
        metrics["skipped_rows"] = len(result.skipped)
        return metrics


def load(bundle: str | Path, verify: bool = True, threads: int | None = None) -> Predictor:
    return Predictor(bundle, verify=verify, threads=threads)
