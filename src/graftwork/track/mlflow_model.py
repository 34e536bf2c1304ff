"""The MLflow model a tracked run logs: its bundle behind MLflow's pyfunc interface.

MLflow copies this file into the model ("models from code", no pickled object) and runs it
when the model is loaded; graftwork itself never imports it. `predict` takes a list of texts
and returns `graftwork.load(bundle).predict(texts)`: one dict per text (label and score, or
the entities found).
"""

from __future__ import annotations

from typing import Any

import mlflow
from mlflow.pyfunc import PythonModel


class BundleModel(PythonModel):
    def load_context(self, context) -> None:
        from graftwork.inference.predictor import load  # torch, when MLflow loads the model

        self.predictor = load(context.artifacts["bundle"])

    def predict(self, context, model_input: list[str], params=None) -> list[dict[str, Any]]:
        return self.predictor.predict([str(text) for text in model_input])


mlflow.models.set_model(BundleModel())
