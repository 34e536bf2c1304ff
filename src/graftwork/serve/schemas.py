"""The HTTP protocol: pydantic models of requests, answers and errors (and so /openapi.json).

Requests are strict (no coercion of `"3"` to 3, unknown keys are errors) so a client's mistake
comes back as a 422 that names it. Answers are what `graft predict` prints for the same text
(each registered task's `Output` model), plus `windows`, the number of windows the text was
split into; the answer union is built from the registry, so a new task brings its own.

Left out: server-side limits (they depend on the settings; app.py checks them and the
descriptions name them).
"""

from __future__ import annotations

from typing import Literal, Union

from pydantic import BaseModel, ConfigDict, Field, create_model

from graftwork import registry


class PredictRequest(BaseModel):
    model_config = ConfigDict(extra="forbid", strict=True)

    inputs: list[str] = Field(
        ...,
        min_length=1,
        description="Texts to label (at most --max-inputs, each at most --max-input-chars).",
        examples=[[registry.task(name).EXAMPLE for name in registry.TASKS]],
    )
    top_k: int = Field(1, ge=1, le=1000, description="Classification: list the k best labels.")
    aggregate: Literal["mean", "max"] = Field(
        "mean",
        description="Classification of long texts: average the windows' logits, or take each "
        "label's maximum (a label strong in any window wins). NER ignores it.",
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
        404: "No such model",
        413: "Request body too large",
        422: "Malformed JSON, wrong types, or a limit on inputs exceeded",
        500: "The model failed on the batch holding this request",
        503: "Queue full (see Retry-After), or not ready yet",
        504: "The request took longer than --request-timeout",
    }
    return {code: {"model": ErrorResponse, "description": reasons[code]} for code in codes}
