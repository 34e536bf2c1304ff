"""`graftwork.load(bundle)`: a bundle ready to predict and evaluate.

The backend is the first the bundle holds, in `registry.BACKENDS`' order, unless told
otherwise (each only when its export passed its parity check and its recorded change is within
budget), PyTorch last; backends follow `inference.backends.Backend`. The same functions serve
the CLI (`graft predict`, `graft eval`), the Python API and the server: an input longer than
the bundle's `data.max_length` is read in overlapping windows (`data.windows`; the stride is
a quarter of a window's text tokens), as the server reads it.
For a bundle trained with bottleneck adapters, `adapter=` chooses which of its adapters is
active (default: the one it was trained with; the bundle's method selects and loads it, see
`graftwork.methods.adapter`); for a multi-task bundle, `task=` which task's head answers
(default: the first; `graftwork.bundle.tasks`), all on one encoder in memory
(`inference.multitask`). A text with nothing to read (empty, only
whitespace or invisible characters) is refused, here, in `graft predict` and in the server
(`data.blank`): a model would answer it all the same. Loading prints nothing
(`backbones.quiet`).
"""

from __future__ import annotations

from pathlib import Path

import torch

from graftwork import registry
from graftwork.backbones.quiet import quiet
from graftwork.backbones.surgery import apply_pruning
from graftwork.bundle import read_manifest
from graftwork.bundle.tasks import task_folder
from graftwork.config.compress import MAX_DROP
from graftwork.config.recipe import DataConfig, TaskConfig
from graftwork.data import windows
from graftwork.data.blank import NEEDS, blank_part, blank_text  # blank_text: serve imports it here
from graftwork.data.readers import read_examples
from graftwork.errors import BundleError, GraftError
from graftwork.inference.backends import BackendError, Source
from graftwork.inference.forward import evaluate_examples, predict_examples
from graftwork.inference.multitask import task_model

Backend = str  # "auto" or a name in graftwork.registry.BACKENDS (or an alias)
DEFAULT_MAX_TOKENS = 8192  # padded tokens per inference batch
# the end of "inputs[3] …" for a blank text (`data.blank.blank_message` words the others)
EMPTY = f"is empty or only whitespace; {NEEDS['text']}"


def within_budget(artifact: dict) -> bool:
    """Whether an artifact's recorded change of the headline metric (points, on the export's
    check examples) is within the budget it was exported for (`max_drop`; older exports: the
    default). Artifacts without a recorded change (FP32, PyTorch) are always within."""
    change = artifact.get("change_points")
    return change is None or -change <= artifact.get("max_drop", MAX_DROP) + 1e-9


def auto_backend(manifest) -> tuple[str, list[str]]:
    """The backend `auto` serves a bundle with (the first registered one it holds, can run
    here, and whose recorded change is within its budget), and why each one before it was
    passed over."""
    passed = []
    for name in registry.BACKENDS:
        artifact = manifest.artifacts.get(name, {})
        if not registry.backend(name).available(manifest, name):
            if artifact:
                passed.append(f"{name}: its runtime is not installed here")
        elif not within_budget(artifact):
            passed.append(
                f"{name}: changes {artifact.get('metric', 'the metric')} by "
                f"{artifact['change_points']:+.2f} points, over its budget of "
                f"{artifact.get('max_drop', MAX_DROP):.2f}"
            )
        else:
            return name, passed
    raise BundleError(f"no backend can serve {manifest.get('name')}")  # torch always can


class Predictor:
    def __init__(
        self,
        bundle: str | Path,
        verify: bool = True,
        threads: int | None = None,
        backend: Backend = "auto",
        adapter: str | None = None,
        task: str | None = None,
    ):
        from transformers import AutoTokenizer

        self.path = Path(bundle)
        if task is not None:  # multi-task bundles: one task's folder, which verifies itself
            self.path = task_folder(self.path, read_manifest(self.path, verify=False), task)
        manifest = read_manifest(self.path, verify=verify)
        if verify and manifest.encoder not in (None, "."):  # the shared encoder: the root's
            read_manifest(self.path / manifest.encoder, verify=True)  # files cover it and us
        if manifest.task not in registry.TASKS:
            raise BundleError(
                f"{self.path} holds a {manifest.task!r} backbone, not a task model "
                f"(graft pretrain writes these): fine-tune from it with `graft run RECIPE "
                f"backbone={self.path}`"
            )
        # the method's own parts: which adapter is active (None: the one trained; no choice
        # for methods whose bundle is one plain model)
        self.method = registry.method(manifest.method)
        self.manifest, self.adapter = self.method.select(self.path, manifest, adapter)
        if threads:
            torch.set_num_threads(threads)
        recipe = self.manifest.recipe
        self.task_config = TaskConfig(**recipe["task"])
        self.data_config = DataConfig(**recipe["data"])
        self.task = registry.task(self.task_config.type)
        with quiet():
            self.tokenizer = AutoTokenizer.from_pretrained(str(self.path))
        labels = self.manifest.labels
        self.id2label = dict(enumerate(labels))
        self.window, self.stride = windows.settings(self.tokenizer, self.max_length)
        self.backend = self._choose(backend)
        self._model = None
        source = Source(self.path, self.manifest, self.task, self.tokenizer, lambda: self.model)
        self.forward = registry.backend(self.backend).load(source, self.backend, threads)

    def _choose(self, backend: str) -> str:
        """`auto`: the first registered backend the bundle holds whose recorded accuracy change
        is within its budget (`within_budget`); else the one named."""
        if backend == "auto":
            return auto_backend(self.manifest)[0]
        name = registry.backend_name(backend)
        if not registry.backend(name).available(self.manifest, name):
            openvino = name.startswith("openvino")
            flags = ("--openvino" if openvino else "--onnx") + (
                " --int8" if name.endswith("int8") else ""
            )
            needs = " (and pip install 'graftwork[openvino]')" if openvino else ""
            raise BackendError(
                f"bundle {self.path} has no {name} artifact it can run here; run `graft export "
                f"{self.path} {flags}` first{needs}, or use backend 'auto'"
            )
        return name

    @property
    def model(self):
        """The PyTorch model (loaded on first use when an ONNX backend serves predictions)."""
        if self._model is None:
            if self.manifest.encoder is not None:  # a task of a multi-task bundle
                model = task_model(self.task.model_class(), self.path, self.manifest)
            else:
                model = self.method.load(self.task.model_class(), self.path, self.adapter)
            self._model = apply_pruning(model, self.manifest).eval()  # no-op unless pruned
        return self._model

    @property
    def max_length(self) -> int:
        return self.data_config.max_length

    def predict(
        self,
        texts: list[str],
        top_k: int = 1,
        batch_size: int = 64,
        max_tokens: int | None = DEFAULT_MAX_TOKENS,
        aggregate: str = "mean",
    ) -> list[dict]:
        """Answers for raw texts: a label and score each, or the entities found in each.

        A long text's windows are joined by `aggregate`: "mean" or "max" of each label's
        logits (classification; NER reads each word from its best window)."""
        index = blank_text(texts)
        if index is not None:
            raise GraftError(blank_part(f"texts[{index}]", texts[index]))
        examples = [self.task.from_text(t, self.task_config) for t in texts]
        return predict_examples(
            self.forward,
            self.tokenizer,
            self.task,
            examples,
            self.id2label,
            self.window,
            batch_size,
            top_k,
            max_tokens,
            self.stride,
            aggregate,
        )

    def evaluate(
        self, path: str | Path, batch_size: int = 64, shown: str | None = None, **data_options
    ) -> dict:
        """Metrics on a labelled file, read with the bundle's recipe (options override it);
        messages name the file as `shown` (default: the path). With `data.iob: repair` the
        metrics say how many tags were rewritten to IOB2 (`repaired_tags`)."""
        data = self.data_config.model_copy(update=data_options)
        result = read_examples(Path(path), self.task_config, data, shown=shown)
        metrics = evaluate_examples(
            self.forward,
            self.tokenizer,
            self.task,
            result.examples,
            self.id2label,
            self.window,
            batch_size,
            result.shown,
            self.stride,
        )
        metrics["skipped_rows"] = len(result.skipped)
        if data.iob == "repair":
            metrics["repaired_tags"] = result.repaired
        metrics["backend"] = self.backend
        return metrics


def load(
    bundle: str | Path,
    verify: bool = True,
    threads: int | None = None,
    backend: Backend = "auto",
    adapter: str | None = None,
    task: str | None = None,
) -> Predictor:
    """A bundle ready to predict; `adapter=` and `task=` pick one of several it holds."""
    return Predictor(
        bundle, verify=verify, threads=threads, backend=backend, adapter=adapter, task=task
    )
