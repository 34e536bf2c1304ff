"""The Open Inference Protocol's wire format (KServe v2, as Triton speaks it): the request,
response and metadata models, errors in the protocol's format, binary tensor data.

Errors are the protocol's `{"error": "message"}`, with /v1's status codes except 422, which
is 400 here (the protocol's status for a bad request). A route's errors are made so by
`V2Route`; those from outside a route (the guard's, an unknown path) by `V2Errors`, which
reshapes the error bodies of every path under /v2.

Binary tensor data (Triton's extension, and tritonclient's default for inputs): inputs with
`parameters.binary_data_size` are read from the bytes after the JSON header
(`Inference-Header-Content-Length`), a BYTES element as a 4-byte little-endian length and its
UTF-8 bytes. Written here because it is a few lines and tritonclient is a client library, not
a server's dependency. A body without a Content-Type is read as JSON, as Triton reads it.

Left out: binary outputs (outputs are always JSON, which tritonclient reads), and the
other Triton extensions (shared memory, statistics, classification, sequences).
"""

from __future__ import annotations

import json
import struct
from typing import Annotated, Literal, Union

from fastapi import Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from fastapi.routing import APIRoute
from pydantic import BaseModel, ConfigDict, Field

from graftwork.serve import validation
from graftwork.serve.schemas import ApiError, error_responses

BINARY_HEADER = "inference-header-content-length"
EXAMPLE = '{"inputs": [{"name": "text", "shape": [1], "datatype": "BYTES", "data": ["a text"]}]}'


Parameter = Union[str, int, float, bool]  # noqa: UP007  # the protocol's $parameter values


class Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", strict=True)


class RequestInput(Strict):
    name: str = Field(..., description="text; or question and context for an extractive-QA model.")
    shape: list[Annotated[int, Field(ge=0)]] = Field(..., max_length=8)
    datatype: Literal["BYTES"]
    parameters: dict[str, Parameter] | None = None
    data: list[str | list[str]] | None = Field(None, description="One text per element.")


class RequestOutput(Strict):
    name: str
    parameters: dict[str, Parameter] | None = None


class InferRequest(Strict):
    id: str | None = None
    parameters: dict[str, Parameter] | None = Field(
        None, description="top_k and aggregate, as in /v1's predict; others are ignored."
    )
    inputs: list[RequestInput] = Field(..., min_length=1, max_length=8)
    outputs: list[RequestOutput] | None = Field(None, max_length=64)


class ResponseOutput(BaseModel):
    name: str
    shape: list[int]
    datatype: str
    data: list[str | int | float]


class InferResponse(BaseModel):
    model_name: str
    id: str | None = None
    outputs: list[ResponseOutput]


class TensorMetadata(BaseModel):
    name: str
    datatype: str
    shape: list[int]


class ModelMetadata(BaseModel):
    name: str
    platform: str = Field(..., description="graftwork_ and the backend that runs the model.")
    inputs: list[TensorMetadata]
    outputs: list[TensorMetadata]


class ServerMetadata(BaseModel):
    name: str
    version: str
    extensions: list[str]


class Live(BaseModel):
    live: bool


class Ready(BaseModel):
    ready: bool


class ModelReady(BaseModel):
    name: str
    ready: bool


class V2Error(BaseModel):
    error: str = Field(..., description="What was wrong and what to do.")


def v2_error(status: int, message: str, headers=None) -> JSONResponse:
    return JSONResponse({"error": message}, status_code=status, headers=headers)


def responses(*codes: int) -> dict:
    """OpenAPI entries for the error statuses of a /v2 endpoint, in the protocol's format."""
    entries = {code: {**entry, "model": V2Error} for code, entry in error_responses(*codes).items()}
    if 400 in entries:
        entries[400]["description"] = (
            "A malformed request, a limit on inputs exceeded, or a Host header not allowed"
        )
    return entries


# Binary tensor data ----------------------------------------------------------------------


def bytes_elements(chunk: bytes, name: str) -> list[str]:
    """A BYTES tensor's elements: each a 4-byte little-endian length, then UTF-8 bytes."""
    out, at = [], 0
    while at < len(chunk):
        size = struct.unpack_from("<I", chunk, at)[0] if at + 4 <= len(chunk) else -1
        if size < 0 or at + 4 + size > len(chunk):
            raise ApiError(400, "invalid_input", f"input '{name}': element {len(out)} is cut short")
        try:
            out.append(chunk[at + 4 : at + 4 + size].decode("utf-8"))
        except UnicodeDecodeError:
            raise ApiError(
                400, "invalid_text", f"input '{name}': element {len(out)} is not UTF-8 text"
            ) from None
        at += 4 + size
    return out


def with_binary_data(body: bytes, header: str) -> bytes:
    """The JSON request with each binary input's elements as its `data`."""
    size = int(header) if header.isdigit() else -1
    if not 0 <= size <= len(body):
        raise ApiError(
            400,
            "invalid_request",
            f"Inference-Header-Content-Length {header[:20]!r} is not "
            f"a length within the body's {len(body)} bytes",
        )
    try:
        request = json.loads(body[:size])
    except ValueError as exc:
        raise ApiError(
            400, "invalid_request", f"the JSON header is not valid JSON ({exc})"
        ) from None
    at = size
    tensors = request.get("inputs") if isinstance(request, dict) else None
    for tensor in tensors if isinstance(tensors, list) else []:
        parameters = tensor.get("parameters") if isinstance(tensor, dict) else None
        length = parameters.get("binary_data_size") if isinstance(parameters, dict) else None
        if not isinstance(length, int) or isinstance(length, bool) or length < 0:
            continue
        del parameters["binary_data_size"]
        tensor["data"] = bytes_elements(body[at : at + length], str(tensor.get("name")))
        at += length
    if at != len(body):
        raise ApiError(
            400,
            "invalid_request",
            f"the body holds {len(body) - size} bytes after its JSON header; the inputs' "
            f"binary_data_size add up to {at - size}",
        )
    return json.dumps(request).encode()


class V2Route(APIRoute):
    """A /v2 route: binary tensor data read into the JSON body (a body without a Content-Type
    read as JSON, as Triton does), and every error in the protocol's format."""

    def get_route_handler(self):
        handler = super().get_route_handler()

        async def route(request: Request):
            try:
                return await handler(await as_json(request))
            except RequestValidationError as exc:
                message, _ = validation.describe_validation(list(exc.errors()))
                return v2_error(400, message.replace(validation.EXAMPLE, EXAMPLE))
            except ApiError as exc:
                return v2_error(400 if exc.status == 422 else exc.status, exc.message, exc.headers)

        return route


async def as_json(request: Request) -> Request:
    if request.method != "POST":
        return request
    binary = request.headers.get(BINARY_HEADER)
    if binary is None and request.headers.get("content-type"):
        return request
    headers = [(k, v) for k, v in request.scope["headers"] if k != b"content-type"]
    scope = {**request.scope, "headers": [*headers, (b"content-type", b"application/json")]}
    reread = Request(scope, request.receive)
    if binary is not None:
        reread._body = with_binary_data(await request.body(), binary)  # what body() returns
    return reread


class V2Errors:
    """ASGI middleware: an error from outside a /v2 route (the guard's, an unknown path) in the
    protocol's format, `{"error": "message"}`."""

    def __init__(self, app):
        self.app = app

    async def __call__(self, scope, receive, send):
        path = scope.get("path", "") if scope["type"] == "http" else ""
        if path != "/v2" and not path.startswith("/v2/"):
            return await self.app(scope, receive, send)
        start, chunks = None, []

        async def reshaped(message):
            nonlocal start
            if message["type"] == "http.response.start" and message["status"] >= 400:
                start = message
                return
            if start is None or message["type"] != "http.response.body":
                return await send(message)
            chunks.append(message.get("body", b""))
            if message.get("more_body"):
                return
            body = protocol_error(b"".join(chunks))
            headers = [(k, v) for k, v in start["headers"] if k.lower() != b"content-length"]
            headers.append((b"content-length", str(len(body)).encode()))
            await send({**start, "headers": headers})
            await send({"type": "http.response.body", "body": body})

        await self.app(scope, receive, reshaped)


def protocol_error(body: bytes) -> bytes:
    """`{"error": {"message": m, ...}}` as `{"error": m}`; any other body as it is."""
    try:
        error = json.loads(body).get("error")
    except (ValueError, AttributeError):
        return body
    if isinstance(error, dict) and isinstance(error.get("message"), str):
        return json.dumps({"error": error["message"]}).encode()
    return body
