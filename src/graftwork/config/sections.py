"""The recipe's backbone, task, data and multitask sections."""

from __future__ import annotations

import re
from typing import Any, Literal

from pydantic import Field, ValidationInfo, field_validator, model_validator

from graftwork import registry
from graftwork.config.base import NAME
from graftwork.config.base import Section as _Section

TaskType = Literal[tuple(registry.TASKS)]  # type: ignore[valid-type]


class BackboneConfig(_Section):
    name: str = Field("minilm-l6", description="Short name, local folder, or hub id.")
    allow_pickle: bool = Field(False, description="Also load .bin/.pt weights (runs pickle).")
    trust_remote_code: bool = Field(False, description="Run modelling code shipped with weights.")
    revision: str | None = Field(None, description="Hub revision, when loading by hub id.")
    decoder: str | None = Field(
        None,
        description="seq2seq: warm-start an encoder-decoder from `name` (the encoder) and this "
        "checkpoint (the decoder, cross-attention new), as in Rothe et al. 2020; "
        "see graftwork.backbones.warmstart.",
    )


class TaskConfig(_Section):
    type: TaskType = "classification"
    text: str = Field("sentence", description="Column (name or 0-based index) with the text.")
    text_pair: str | None = Field(None, description="Second text column, for pair tasks.")
    label: str = Field("label", description="Column with the label.")
    label_names: dict[str, str] = Field(
        default_factory=dict,
        description="Classification: names of labels as the training data spells them, e.g. "
        "{0: negative, 1: positive}, shown by the bundle, predictions, report and server.",
    )
    # extractive QA (type: qa) only; see graftwork.tasks.qa
    question: str = Field("question", description="QA, JSON lines: field with the question.")
    context: str = Field("context", description="QA, JSON lines: field with the context.")
    answers: str = Field("answers", description="QA, JSON lines: field with the answers.")
    doc_stride: int | None = Field(
        None, ge=1, description="QA: context tokens two windows share (default: a quarter)."
    )
    max_answer_length: int = Field(30, ge=1, description="QA: longest answer, in tokens.")
    n_best: int = Field(20, ge=1, description="QA: start and end candidates tried per window.")
    no_answer: bool = Field(
        False, description="QA: questions may have no answer (SQuAD v2: is_impossible)."
    )

    # sequence-to-sequence (type: seq2seq) only; see graftwork.tasks.seq2seq
    source: str = Field(
        "source", description="seq2seq: source column/field, or file suffix (data.format parallel)."
    )
    target: str = Field(
        "target", description="seq2seq: target column/field, or file suffix (data.format parallel)."
    )
    prefix: str = Field("", description="seq2seq: text put before every source (T5's task prefix).")

    @model_validator(mode="after")
    def _seq2seq_options(self) -> TaskConfig:
        """seq2seq options on another task are a mistake to name (as QA's are)."""
        fields = type(self).model_fields
        given = [k for k in ("source", "target", "prefix") if getattr(self, k) != fields[k].default]
        if self.type not in ("seq2seq", "causal_lm") and given:
            raise ValueError(
                f"task.{given[0]} is an option of sequence-to-sequence and causal_lm (task types "
                f"seq2seq, causal_lm), not of {self.type}; remove it, or set task.type"
            )
        return self

    @model_validator(mode="after")
    def _qa_options(self) -> TaskConfig:
        """QA options on another task are a mistake to name, not a key to ignore (a dumped
        recipe holds every key at its default, so a default value is not a mistake)."""
        qa = ("question", "context", "answers", "doc_stride", "max_answer_length", "n_best")
        fields = type(self).model_fields
        given = [k for k in (*qa, "no_answer") if getattr(self, k) != fields[k].default]
        if self.type != "qa" and given:
            raise ValueError(
                f"task.{given[0]} is an option of extractive QA (task type qa), not of "
                f"{self.type}; remove it, or set task.type: qa"
            )
        return self

    @field_validator("label_names", mode="before")
    @classmethod
    def _label_names(cls, value: Any, info: ValidationInfo) -> Any:
        """Keys as text (YAML reads `0:` as a number); one name per label, for classification."""
        if not isinstance(value, dict) or not value:
            return value
        if info.data.get("type", "classification") != "classification":
            raise ValueError("label names are for classification labels; NER keeps its tags")
        out: dict[str, str] = {}
        for key, name in value.items():
            if isinstance(key, bool) or not isinstance(key, (int, str)):
                raise ValueError(f"label {key!r}: give a label as the data spells it, e.g. 0")
            if not isinstance(name, str) or not name.strip():
                raise ValueError(f"label {key}: the name must be text (got {name!r}); quote it")
            if name.strip() in out.values():
                raise ValueError(f"two labels are named {name.strip()!r}; they would merge")
            out[str(key).strip()] = name.strip()
        return out


class DataConfig(_Section):
    """`iob` is strict by default: IOB2 data with a slip (an I-X with no B-X) is then a located
    error rather than a silently different entity; `repair` is for data annotated the looser way
    on purpose (WNUT-17), and its count of rewritten tags goes to the log and metrics.json."""

    train: str | None = None
    eval: str | None = None
    test: str | None = None
    format: Literal["auto", "tsv", "csv", "jsonl", "conll", "parallel"] = "auto"
    header: bool = Field(True, description="TSV/CSV: the first row names the columns.")
    token_column: int = Field(0, description="CoNLL: column of the token.")
    tag_column: int = Field(-1, description="CoNLL: column of the tag (-1 = last).")
    max_length: int = Field(128, ge=8, le=8192)
    max_train_examples: int | None = Field(
        None, ge=1, description="Train on a seeded random sample of this many examples."
    )
    holdout: float | None = Field(
        None,
        gt=0,
        le=0.5,
        description="Hold out this seeded fraction of data.train as the eval split (for data "
        "that ships without one); the run trains on the rest.",
    )
    holdout_seed: int = Field(0, description="The seed of the data.holdout split.")
    on_bad_rows: Literal["error", "skip"] = "error"
    iob: Literal["strict", "repair"] = Field(
        "strict", description="NER: repair = read I-X after O/another type as B-X (conlleval)."
    )
    drop_labels: list[str] = Field(
        default_factory=list,
        description="NER: entity types read as O in every split, e.g. [MISC] (B-MISC, I-MISC).",
    )

    @model_validator(mode="after")
    def _one_eval_split(self) -> DataConfig:
        if self.holdout is not None and self.eval is not None:
            raise ValueError(
                "data.holdout holds part of data.train out as the eval split, and data.eval "
                "names an eval file too; give one of them"
            )
        return self

    @field_validator("drop_labels")
    @classmethod
    def _entity_types(cls, value: list[str]) -> list[str]:
        for kind in value:
            if not re.fullmatch(r"[^\s]+", kind) or kind == "O" or kind[:2] in ("B-", "I-"):
                raise ValueError(
                    f"{kind!r} is not an entity type; give types without the B-/I- prefix, "
                    "e.g. [MISC]"
                )
        return value


# the fewest tokens a QA window gives the question and the context it has not shared: one each
QA_ROOM = 2


def check_doc_stride(task: TaskConfig, data: DataConfig) -> None:
    """A QA `doc_stride` must leave a window room for the special tokens, the question and new
    context (the question's own length is checked when the data is read)."""
    if task.type != "qa" or task.doc_stride is None:
        return
    special = 3  # [CLS] question [SEP] context [SEP]; the tokenizer may add fewer
    most = data.max_length - special - QA_ROOM
    if task.doc_stride > most:
        raise ValueError(
            f"task.doc_stride {task.doc_stride} is the context two windows share, and must be "
            f"smaller than a window (data.max_length {data.max_length}) less its special "
            f"tokens and the question: at most {most}, less the question's tokens; lower "
            f"task.doc_stride (e.g. {data.max_length // 4}) or raise data.max_length"
        )


class TaskEntry(_Section):
    task: TaskConfig = Field(description="This task's `task` section (type, text, label).")
    data: DataConfig = Field(description="This task's `data` section (train, eval, test, …).")

    @model_validator(mode="after")
    def _stride_fits(self) -> TaskEntry:
        check_doc_stride(self.task, self.data)
        return self


class MultiTaskConfig(_Section):
    """Several tasks on one shared encoder (see `graftwork.runs.multitask`)."""

    tasks: dict[str, TaskEntry] = Field(description="Task name → its task and data sections.")
    sampling: Literal["proportional", "temperature", "equal"] = "temperature"
    temperature: float = Field(2.0, ge=1, description="T in p_t ∝ n_t^(1/T).")

    @field_validator("tasks")
    @classmethod
    def _names(cls, tasks: dict) -> dict:
        if len(tasks) < 2:
            raise ValueError("give at least two tasks (one task needs no multitask section)")
        bad = [name for name in tasks if not NAME.fullmatch(name)]
        if bad:
            raise ValueError(f"task names {bad} must be letters, digits, '.', '_', '-'")
        return tasks
