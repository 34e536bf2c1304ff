"""The task protocol: everything that differs between tasks, in one place per task.

A task is a module (`tasks/classification.py`, `tasks/ner.py`) registered by name in
`graftwork.registry.TASKS`; runs, the predictor, the server, export, compare and the report
call these members and nothing else task-specific. A module satisfies the protocol by defining
them at top level (`typing.Protocol` accepts modules); `tests/test_protocols.py` checks every
registered task against it.

Examples are plain dicts made by the task's reader (`read`) or by `from_text` for raw input;
features are what the tokenizer made of them (one dict per example); logits come back one
array per example, in input order (`inference.forward.logits_for`). Whatever runs a model on
inputs it did not train on (predict, eval, a run's evaluation, the server) goes through the
task's windows (`data.windows`): `split_windows` per example, the model over every window,
then `merge_windows` gives the one (feature, logits) pair per example that `evaluate` and
`decode` read.

Optional members, for tasks that need them (seq2seq has each): `generate(model, tokenizer,
generation)`, a forward that generates (its "logits" are the generated answers;
`inference.forward.task_forward`); `METHODS` and `OBJECTIVES`, the only ones the task trains
with (others are refused when the recipe is validated); `REFUSES`, stage → why the stage
cannot take the task's bundles (`methods.base.refuse`); `rewrite(example, text)`, the example
with a new wording of its text and its gold kept (back-translation, `runs.augment`: a task
without it, whose gold is tied to the words, is not augmented). An empty `LABEL_KEY` says the
task has no label vocabulary (its gold is read from the examples).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Protocol, runtime_checkable

from graftwork import registry


@runtime_checkable
class Task(Protocol):
    LABEL_KEY: str  # the example field holding the gold label ("label") or labels ("tags")
    HEADLINE: str  # the metric that ranks models of this task (compare, export parity, tuning)
    SHOWN: tuple[str, ...]  # the metrics a one-line summary shows, in order
    DEFAULT_FORMAT: str  # the data format of a file whose extension says nothing
    EXAMPLE: str  # an input to show users (the server's request example)
    Output: type  # the pydantic model of one `decode` answer (the server adds `windows`)

    def model_class(self) -> Any:
        """The transformers auto class of the head (AutoModelFor…)."""

    def read(self, rows: Any, fmt: str, task: Any, data: Any, require_labels: bool) -> None:
        """Fill `rows` (a `data.readers.Rows`) with examples from its file in format `fmt`,
        with the parser of `data.readers` that makes this task's examples."""

    def label_set(self, examples: list[dict], names: dict[str, str] | None = None) -> list[str]:
        """The label vocabulary, from the training examples, in a stable order (`names`: the
        recipe's `task.label_names`, raw label → name, which `read` has applied)."""

    def from_text(self, text: Any, task: Any = None) -> dict:
        """An unlabelled example from a raw input: a text (for QA a {question, context} pair);
        `task`, the bundle's task section, for tasks whose examples carry its options."""

    def encode(self, tokenizer, examples, label2id, max_length: int, path: Path | str):
        """(features, labels or None) for the model; unknown labels are located errors (`path`:
        the file as messages name it)."""

    def evaluate(self, examples, features, logits, labels, id2label) -> dict:
        """Metrics (the HEADLINE among them) of logits against the gold labels (`labels`: the
        ids `data.encode.label_ids` gives; a task may read the gold from `examples` instead)."""

    def decode(self, examples, features, logits, id2label, top_k: int = 1) -> list[dict]:
        """One answer per example, as users and the server see it."""

    def split_windows(self, tokenizer, examples: list[dict], window: int, stride: int):
        """Per example, the features of its overlapping windows (`data.windows`); an example
        that fits is one window, encoded as `encode` encodes it."""

    def merge_windows(self, features: list[dict], logits: list, aggregate: str) -> tuple:
        """(feature, logits) for one example from its windows', for `evaluate` and `decode`;
        `aggregate` ("mean" or "max") is how a task with one answer per text joins them."""

    def report_sections(self, metrics: dict) -> list[str]:
        """HTML sections of the run report for one split's metrics (beyond the metric table)."""

    def loss(self, model, batch: dict) -> Any:
        """The training loss of `model` on `batch` (its `labels` popped), summed over the
        labelled items (one of `tasks.losses`' functions)."""

    def to_text(self, example: dict, task: Any = None) -> Any:
        """The raw input `from_text` makes this example from (without its gold): what predict
        takes, e.g. to time a model on a labelled file."""


def headline(task_name: str) -> str:
    """The metric that ranks models of `task_name`."""
    return registry.task(task_name).HEADLINE


def summary(task_name: str, metrics: dict) -> str:
    """`accuracy 0.8658  macro_f1 0.8650`: the metrics a log line shows for this task."""
    keys = registry.task(task_name).SHOWN
    return "  ".join(f"{k} {metrics[k]:.4f}" for k in keys if k in metrics)
