"""The HTTP protocol: pydantic models of requests, answers and errors (and so /openapi.json).

Requests are strict (no coercion of `"3"` to 3, unknown keys are errors) so a client's mistake
comes back as a 422 that names it. Answers are what `graft predict` prints for the same text
(each registered task's `Output` model), plus `windows`, the number of windows the text was
split into; the answer union is built from the registry, so a new task brings its own. Every
error is an `ErrorResponse` (`ApiError`, `error_json`).

The limits on `inputs` (how many texts, how long each) are part of the request model that
`request_model` builds from the settings, so validation stops at the first text over the limit
(a body of millions of items costs one error, not millions) and /openapi.json states them.
Left out: the limits that need the whole request (total characters and windows: app.py and
model.py check them).
"""

from __future__ import annotations

from typing import Annotated, Any, Literal, Union

from fastapi.responses import JSONResponse
from pydantic import BaseModel, ConfigDict, Field, create_model, model_validator

from graftwork import registry
from graftwork.errors import GraftError


class QuestionInput(BaseModel):
    """One extractive-QA input: the question and the context its answer is taken from."""

    model_config = ConfigDict(extra="forbid", strict=True)

    question: str = Field(..., min_length=1)
    context: str = Field(..., min_length=1)


def takes_objects(task) -> bool:
    """Whether a task reads objects ({question, context}) rather than texts: its EXAMPLE is one."""
    return task.EXAMPLE.lstrip().startswith("{")


class PredictRequest(BaseModel):
    model_config = ConfigDict(extra="forbid", strict=True)

    inputs: list[str | QuestionInput] = Field(
        ...,
        min_length=1,
        description="Texts to label (at most --max-inputs, each at most --max-input-chars); "
        "for an extractive-QA model, {question, context} objects.",
        examples=[[registry.task(name).EXAMPLE for name in registry.TASKS]],
    )
    top_k: int = Field(1, ge=1, le=1000, description="Classification: list the k best labels.")
    aggregate: Literal["mean", "max"] = Field(
        "mean",
        description="Classification of long texts: average the windows' logits, or take each "
        "label's maximum (a label strong in any window wins). NER ignores it.",
    )

    @model_validator(mode="before")
    @classmethod
    def _few_keys(cls, data: Any) -> Any:
        """One error for a body of many unknown keys (pydantic would build one per key)."""
        if isinstance(data, dict) and len(data) > len(cls.model_fields):
            unknown = [str(key)[:40] for key in data if key not in cls.model_fields]
            names = ", ".join(unknown[:3]) + (", ..." if len(unknown) > 3 else "")
            raise ValueError(
                f"{len(data)} keys, {len(unknown)} of them unknown ({names}); a request has "
                f"{', '.join(cls.model_fields)}"
            )
        return data


def request_model(max_inputs: int, max_input_chars: int) -> type[PredictRequest]:
    """`PredictRequest` with the server's limits on `inputs` in its schema."""
    text = Annotated[str, Field(min_length=1, max_length=max_input_chars)]
    pair = create_model(
        "QuestionInput", __base__=QuestionInput, question=(text, ...), context=(text, ...)
    )
    return create_model(
        "PredictRequest",
        __base__=PredictRequest,
        inputs=(
            list[Union[text, pair]],  # type: ignore[valid-type]  # noqa: UP007
            Field(
                ...,
                min_length=1,
                max_length=max_inputs,
                description=f"Texts to label: at most {max_inputs} (--max-inputs), each of 1 "
                f"to {max_input_chars} characters (--max-input-chars) and not only whitespace; "
                "for an extractive-QA model, {question, context} objects.",
                examples=PredictRequest.model_fields["inputs"].examples,
            ),
        ),
    )


def served_output(output: type[BaseModel]) -> type[BaseModel]:
    """A task's answer model as served: the same fields, plus `windows`."""
    return create_model(
        output.__name__,
        __base__=output,
        windows=(int, Field(..., description="Windows the text was split into (1 if it fit).")),
    )


OUTPUTS = tuple(served_output(registry.task(name).Output) for name in registry.TASKS)


class PredictResponse(BaseModel):
    model: str
    task: str
    outputs: list[Union[OUTPUTS]] = Field(  # type: ignore[valid-type]  # noqa: UP007
        ..., description="One per input, in order."
    )


class Artifact(BaseModel):
    path: str
    backend: str = Field(..., description="What runs the model: torch, onnx-fp32 or onnx-int8.")
    format: str | None = None
    backbone: str | None = None
    method: str | None = None
    created: str | None = None


class ModelInfo(BaseModel):
    name: str
    task: str
    labels: list[str]
    max_length: int = Field(..., description="Tokens the model was trained on (data.max_length).")
    window: int
    stride: int
    ready: bool
    artifact: Artifact


class ModelList(BaseModel):
    models: list[ModelInfo]


class Status(BaseModel):
    status: str


class ApiError(GraftError):
    """An error answered to an HTTP client: status, a stable type, a message, extra fields."""

    def __init__(self, status: int, kind: str, message: str, headers=None, **extra):
        super().__init__(message)
        self.status, self.kind, self.message = status, kind, message
        self.headers, self.extra = headers or {}, extra

    def response(self) -> JSONResponse:
        return error_json(self.status, self.kind, self.message, self.headers, **self.extra)


def error_json(status: int, kind: str, message: str, headers=None, **extra) -> JSONResponse:
    """The response for every error: `{"error": {"message": ..., "type": ..., ...}}`."""
    body = {"error": {"message": message, "type": kind, **extra}}
    return JSONResponse(body, status_code=status, headers=headers)


class ErrorDetail(BaseModel):
    model_config = ConfigDict(extra="allow")

    message: str = Field(..., description="What was wrong and what to do.")
    type: str = Field(..., description="A stable name for the kind of error.")
    index: int | None = Field(None, description="The offending input's index, when there is one.")


class ErrorResponse(BaseModel):
    error: ErrorDetail


def error_responses(*codes: int) -> dict:
    """OpenAPI `responses` entries for the error statuses an endpoint can give."""
    reasons = {
        401: "Missing or wrong bearer token",
        408: "The request body took longer than --body-timeout to arrive",
        404: "No such model",
        400: "Host header not allowed (--allowed-hosts)",
        413: "Request body too large, or more characters or windows than a request may hold",
        422: "Malformed JSON, wrong types, or a limit on inputs exceeded",
        500: "The model failed on the batch holding this request",
        503: "Queue full (see Retry-After), or not ready yet",
        504: "The request took longer than --request-timeout",
    }
    return {code: {"model": ErrorResponse, "description": reasons[code]} for code in codes}
