"""The Open Inference Protocol (KServe v2) beside the native `/v1` API.

    GET  /v2/health/live, /v2/health/ready, /v2 (server metadata)
    GET  /v2/models/{name} (model metadata), /v2/models/{name}/ready
    POST /v2/models/{name}/infer

Inputs are BYTES tensors, one text per element: `text` (every task but QA), or `question` and
`context` (extractive QA: element i of each makes input i). Any shape whose elements match its
data is taken (`[N]`, `[N, 1]`), the data flat or nested. The outputs are the fields of the
task's answer, as `graft predict` and `/v1` give them, one tensor of shape `[N]` each: text →
BYTES, floats → FP32, integers → INT64 (-1 for none: the start and end of a QA no-answer),
lists and objects (NER's `entities` and `tags`, `top_k`) → BYTES holding JSON; and `windows`
(INT64). `outputs` in a request picks some of them. Request parameters `top_k` and
`aggregate` are /v1's; others (tritonclient's `binary_data_output`, ...) are ignored.

An infer request becomes the /v1 request for the same texts, validated by the same request
model and checks (`Server.invalid`, `check_limits`, `check_kind`) and answered by
`Server.predict`: the same batcher (v1 and v2 requests share batches), timeout and metrics.
The guard in front (Host, token, body size and time) is the same; `/v2/health/live` needs no
token, as `/health`. The wire format (models, errors, binary data) is v2_protocol.py.

Left out: model versions (`/versions/` paths), the repository API (load, unload), gRPC, text
pairs (no served path takes them: /v1 neither) and streamed generation (`/v1/.../generate`).
"""

from __future__ import annotations

import json
import math
from importlib.metadata import version
from types import UnionType
from typing import Union, get_args, get_origin

import numpy as np
from fastapi import FastAPI
from fastapi.responses import JSONResponse
from fastapi.routing import APIRouter
from pydantic import ValidationError

from graftwork.serve.schemas import (
    ApiError,
    QuestionInput,
    request_model,
    served_output,
    takes_objects,
)
from graftwork.serve.v2_protocol import (
    InferRequest,
    InferResponse,
    Live,
    ModelMetadata,
    ModelReady,
    Ready,
    ServerMetadata,
    V2Errors,
    V2Route,
    responses,
)

OPTIONS = ("top_k", "aggregate")  # the request parameters that are /v1's fields


# What a model reads and answers ------------------------------------------------------------


def input_names(model) -> list[str]:
    return list(QuestionInput.model_fields) if takes_objects(model.predictor.task) else ["text"]


def datatype(annotation) -> str:
    """The tensor datatype of an answer field: BYTES for text and for JSON (lists, objects)."""
    if get_origin(annotation) in (Union, UnionType):
        args = [a for a in get_args(annotation) if a is not type(None)]
        annotation = args[0] if len(args) == 1 else None
    return {str: "BYTES", bool: "BOOL", int: "INT64", float: "FP32"}.get(annotation, "BYTES")


def output_types(model) -> dict[str, tuple[str, bool]]:
    """Each answer field: (datatype, whether every answer has it)."""
    fields = served_output(model.predictor.task.Output).model_fields
    return {name: (datatype(f.annotation), f.is_required()) for name, f in fields.items()}


def tensor_value(value, kind: str):
    if kind == "FP32":
        return float(np.float32(value))
    if kind == "INT64":
        return -1 if value is None else int(value)
    if kind == "BOOL":
        return bool(value)
    return value if isinstance(value, str) else json.dumps(value, ensure_ascii=False)


def metadata(model) -> dict:
    backend = getattr(model.predictor, "backend", "torch")
    return {
        "name": model.name,
        "platform": f"graftwork_{backend}",
        "inputs": [{"name": n, "datatype": "BYTES", "shape": [-1]} for n in input_names(model)],
        "outputs": [
            {"name": n, "datatype": kind, "shape": [-1]}
            for n, (kind, always) in output_types(model).items()
            if always
        ],
    }


# From a v2 request to /v1's, and back ------------------------------------------------------


def flat(data: list) -> list:
    return [x for item in data for x in (flat(item) if isinstance(item, list) else [item])]


def no_such(model, what: str, name: str, known: str) -> ApiError:
    return ApiError(
        400, f"invalid_{what}", f"model '{model.name}' has no {what} '{name[:60]}'; {known}"
    )


def texts_of(model, body: InferRequest) -> list:
    """The request's texts (QA: {question, context} objects), in the order /v1 takes them."""
    names = input_names(model)
    given = {}
    for tensor in body.inputs:
        if tensor.name not in names:
            known = f"it reads {' and '.join(names)} (BYTES, one text per element)"
            raise no_such(model, "input", tensor.name, known)
        if tensor.name in given:
            raise ApiError(400, "invalid_input", f"input '{tensor.name}' is given twice")
        if tensor.data is None:
            raise ApiError(400, "invalid_input", f"input '{tensor.name}' has no data")
        data = flat(tensor.data)
        if math.prod(tensor.shape) != len(data):
            raise ApiError(
                400,
                "invalid_input",
                f"input '{tensor.name}' has shape {tensor.shape} "
                f"({math.prod(tensor.shape)} elements) but {len(data)} in its data",
            )
        given[tensor.name] = data
    missing = [n for n in names if n not in given]
    if missing:
        raise ApiError(400, "invalid_input", f"model '{model.name}' needs input '{missing[0]}'")
    if len(names) == 1:
        return given[names[0]]
    counts = {n: len(given[n]) for n in names}
    if len(set(counts.values())) > 1:
        raise ApiError(400, "invalid_input", f"the inputs differ in length: {counts}")
    return [dict(zip(names, parts, strict=True)) for parts in zip(*given.values(), strict=True)]


def renamed(message: str, names: list[str]) -> str:
    """A /v1 message about `inputs` or one of its fields, in the terms of a v2 request."""
    if message.startswith("inputs"):
        return f"input {'/'.join(repr(n) for n in names)}" + message.removeprefix("inputs")
    if message.startswith(OPTIONS):
        return "parameters." + message
    return message


def requested(model, body: InferRequest) -> list[str] | None:
    """The output names the request asks for (None: all), each checked."""
    if body.outputs is None:
        return None
    types = output_types(model)
    for output in body.outputs:
        if output.name not in types:
            known = f"its outputs are {', '.join(types)} (top_k with parameters.top_k > 1)"
            raise no_such(model, "output", output.name, known)
    return [o.name for o in body.outputs]


def outputs_of(model, body: InferRequest, answers: list[dict]) -> list[dict]:
    """The answers as output tensors: every field they hold, or those the request names."""
    types = output_types(model)
    wanted = requested(model, body)
    if wanted is None:  # every field the answers hold
        wanted = [n for n in types if types[n][1] or any(a.get(n) is not None for a in answers)]
    return [
        {
            "name": name,
            "datatype": types[name][0],
            "shape": [len(answers)],
            "data": [tensor_value(a.get(name), types[name][0]) for a in answers],
        }
        for name in wanted
    ]


def add_v2_routes(app: FastAPI, server, model_name) -> None:
    """The Open Inference Protocol's endpoints on `app` (the `Server` of `serve.app`)."""
    config = server.config
    limited = request_model(config.max_inputs, config.max_input_chars)
    router = APIRouter(prefix="/v2", tags=["open inference protocol (v2)"], route_class=V2Route)

    @router.get("/health/live", response_model=Live, responses=responses(400))
    async def live():
        """Liveness: the process answers (needs no token)."""
        return {"live": True}

    @router.get(
        "/health/ready",
        response_model=Ready,
        responses={503: {"model": Ready, "description": "Warming up"}, **responses(400, 401)},
    )
    async def ready():
        """Readiness: every model is loaded and has run a warm-up batch."""
        ok = all(m.ready for m in server.models.values())
        return JSONResponse({"ready": ok}, 200 if ok else 503, None if ok else {"Retry-After": "1"})

    @router.get("", response_model=ServerMetadata, responses=responses(400, 401))
    async def server_metadata():
        """The server's name, version and protocol extensions."""
        return {"name": "graftwork", "version": version("graftwork"), "extensions": []}

    @router.get("/models/{name}", response_model=ModelMetadata, responses=responses(400, 401, 404))
    async def model_metadata(name: str = model_name):
        """A model's inputs and outputs: names, datatypes, shapes."""
        return metadata(server.model(name))

    @router.get(
        "/models/{name}/ready",
        response_model=ModelReady,
        responses={
            503: {"model": ModelReady, "description": "Warming up"},
            **responses(400, 401, 404),
        },
    )
    async def model_ready(name: str = model_name):
        """Whether the model has run its warm-up batch."""
        ok = server.model(name).ready
        body, headers = {"name": name, "ready": ok}, None if ok else {"Retry-After": "1"}
        return JSONResponse(body, 200 if ok else 503, headers)

    @router.post(
        "/models/{name}/infer",
        response_model=InferResponse,
        response_model_exclude_none=True,
        responses=responses(400, 401, 404, 408, 413, 500, 503, 504),
    )
    async def infer(body: InferRequest, name: str = model_name):
        """Labels with scores, entities, answers: one element per input text."""
        model = server.model(name)
        texts, names = texts_of(model, body), input_names(model)
        options = {k: v for k, v in (body.parameters or {}).items() if k in OPTIONS}
        try:
            if len(texts) > config.max_inputs:  # before each text is looked at
                raise server.too_many_inputs(len(texts))
            try:
                request = limited.model_validate({"inputs": texts, **options})
            except ValidationError as exc:
                raise server.invalid(list(exc.errors())) from None
            request.inputs = [t if isinstance(t, str) else t.model_dump() for t in request.inputs]
            server.check_limits(request.inputs)
            server.check_kind(model, request.inputs)
        except ApiError as exc:
            exc.message = renamed(exc.message, names)
            raise
        requested(model, body)  # a wrong output name is refused before the model runs
        answers = await server.predict(model, request)
        return {"model_name": name, "id": body.id, "outputs": outputs_of(model, body, answers)}

    app.include_router(router)
    app.add_middleware(V2Errors)  # outermost: it also sees the guard's errors
