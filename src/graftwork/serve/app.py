"""The HTTP layer: thin FastAPI routes over `ServedModel`s, with auth, limits and errors.

    POST /v1/models/{name}/predict   {"inputs": [...], "top_k": 1, "aggregate": "mean"}
    GET  /v1/models, /v1/models/{name}, /health, /ready, /metrics, /openapi.json
    GET  /  (a page to try the models: page.py); /docs and /redoc with --docs
    /v2/...  the Open Inference Protocol (KServe v2: v2.py), errors as `{"error": "..."}`

Every error is JSON, `{"error": {"message": ..., "type": ..., ...}}`, with the status that says
what happened: 400 (a Host not served), 401 (token), 404 (model or route), 408 (the body took
too long), 413 (body size; more characters or windows than one request may have), 422
(malformed JSON, wrong types, too many inputs, too long or an empty input, with the offending
`index`), 500 (the model failed on this request's batch), 503 (queue full, with Retry-After;
or not ready), 504 (timeout). Every limit is checked before the request waits for the model:
the count and length of inputs by the request model itself (`schemas.request_model`), the
rest here, the windows before they are queued (model.py). The guard in front of the app
(guard.py) checks the Host, the token and the body before anything is parsed. A server
started without a token says so in its log.

Left out: the model work (model.py, batcher.py, windows.py) and starting uvicorn (__init__.py).
"""

from __future__ import annotations

import asyncio
import logging
import re
from contextlib import asynccontextmanager, suppress
from functools import partial

from fastapi import FastAPI, Path, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import PlainTextResponse
from starlette.exceptions import HTTPException as StarletteHTTPException

from graftwork.errors import GraftError
from graftwork.inference.predictor import EMPTY, blank_text
from graftwork.serve.admin import add_admin_routes
from graftwork.serve.batcher import QueueFull
from graftwork.serve.config import ServeConfig
from graftwork.serve.generate import add_generate_route
from graftwork.serve.guard import Guard
from graftwork.serve.metrics import CONTENT_TYPE as PROMETHEUS
from graftwork.serve.metrics import ServerMetrics
from graftwork.serve.model import ServedModel, TooManyWindows
from graftwork.serve.page import router as page_router
from graftwork.serve.schemas import (
    ApiError,
    ModelInfo,
    ModelList,
    PredictRequest,
    PredictResponse,
    Status,
    error_json,
    error_responses,
    request_model,
    takes_objects,
)
from graftwork.serve.v2 import add_v2_routes
from graftwork.serve.validation import MEMBERS, describe_validation, input_text, wrong_member

log = logging.getLogger("graftwork.serve")

SURROGATE = re.compile("[\ud800-\udfff]")


class Server:
    """The state behind the routes: models by name, settings, metrics, requests in flight."""

    def __init__(self, models: list[ServedModel], config: ServeConfig):
        self.models = {m.name: m for m in models}
        self.config = config
        self.in_flight = dict.fromkeys(self.models, 0)
        self.metrics = ServerMetrics(
            queue=lambda: {
                (n,): (m.batcher.depth if m.batcher else 0) for n, m in self.models.items()
            },
            in_flight=lambda: {(n,): v for n, v in self.in_flight.items()},
        )

    def model(self, name: str) -> ServedModel:
        if name not in self.models:
            served = ", ".join(self.models)
            raise ApiError(404, "not_found", f"no model named '{name}'; served: {served}")
        return self.models[name]

    # The limits: each error says which setting it is and what to do ---------------------------

    def too_many_inputs(self, count: int) -> ApiError:
        limit = self.config.max_inputs
        return ApiError(
            422,
            "too_many_inputs",
            f"inputs holds {count} texts; the limit is {limit} per request "
            "(--max-inputs, GRAFT_MAX_INPUTS): send the rest in further requests",
            index=limit,
            limit=limit,
        )

    def too_long(self, index: int, length: int) -> ApiError:
        limit = self.config.max_input_chars
        return ApiError(
            422,
            "input_too_long",
            f"inputs[{index}] has {length} characters; the limit is {limit} "
            "(--max-input-chars, GRAFT_MAX_INPUT_CHARS): split the text",
            index=index,
            limit=limit,
        )

    @staticmethod
    def empty(index: int) -> ApiError:
        return ApiError(422, "empty_input", f"inputs[{index}] {EMPTY}", index=index)

    @staticmethod
    def check_kind(model: ServedModel, inputs: list) -> None:
        """Texts for a model that reads texts, {question, context} objects for a QA model."""
        task = model.predictor.task
        for i, item in enumerate(inputs):
            if isinstance(item, dict) and not takes_objects(task):
                raise ApiError(
                    422,
                    "invalid_input",
                    f"inputs[{i}] is an object, but model '{model.name}' ({model.task_name}) "
                    "reads texts; send a string",
                    index=i,
                )
            try:
                task.from_text(item, model.predictor.task_config)
            except GraftError as exc:
                raise ApiError(422, "invalid_input", f"inputs[{i}]: {exc}", index=i) from None

    def check_limits(self, inputs: list) -> None:
        """What the request model cannot check: valid Unicode, blank texts, the total size (a
        QA input's question and context count together)."""
        for i, text in enumerate(map(input_text, inputs)):
            if SURROGATE.search(text):
                raise ApiError(
                    422,
                    "invalid_text",
                    f"inputs[{i}] holds an unpaired UTF-16 surrogate, which is not text; "
                    "send valid Unicode",
                    index=i,
                )
        index = blank_text(inputs)
        if index is not None:
            raise self.empty(index)
        total, limit = sum(len(input_text(i)) for i in inputs), self.config.max_request_chars
        if total > limit:
            raise ApiError(
                413,
                "request_too_large",
                f"inputs hold {total} characters in all; the limit is {limit} per request "
                "(--max-request-chars, GRAFT_MAX_REQUEST_CHARS), so that a request is answered "
                "within --request-timeout: send fewer or shorter texts per request",
                limit=limit,
            )

    def invalid(self, errors: list[dict]) -> ApiError:
        """A request model's validation errors as the limit's own error, or as invalid_request."""
        errors = [e for e in errors if not wrong_member(e)] or errors
        first = errors[0]
        loc = [part for part in first.get("loc", ()) if part not in ("body", *MEMBERS)]
        kind = first.get("type")
        if loc == ["inputs"] and kind == "too_long" and isinstance(first.get("input"), list):
            return self.too_many_inputs(len(first["input"]))
        if len(loc) == 3 and loc[0] == "inputs" and kind == "string_too_long":  # a QA part
            return self.too_long(loc[1], len(first.get("input", "")))
        if len(loc) == 2 and loc[0] == "inputs" and isinstance(loc[1], int):
            if kind == "string_too_long":
                return self.too_long(loc[1], len(first.get("input", "")))
            if kind == "string_too_short":
                return self.empty(loc[1])
        message, extra = describe_validation(errors)
        return ApiError(422, "invalid_request", message, **extra)

    async def predict(self, model: ServedModel, request: PredictRequest) -> list[dict]:
        """The model's answers, within the timeout; every outcome is counted."""
        name, code = model.name, 500
        self.in_flight[name] += 1
        start = asyncio.get_running_loop().time()
        try:
            outputs = await asyncio.wait_for(
                model.predict(request.inputs, request.top_k, request.aggregate),
                self.config.request_timeout,
            )
            code = 200
            return outputs
        except TooManyWindows as exc:
            code = 413
            raise ApiError(
                413,
                "too_many_windows",
                f"the inputs split into {exc.count} windows of {model.window} tokens; one "
                f"request may have {exc.limit} (--max-request-windows, and --max-queue), so "
                "that it is answered within --request-timeout: send fewer or shorter texts",
                limit=exc.limit,
            ) from None
        except QueueFull:
            code = 503
            raise ApiError(
                503,
                "queue_full",
                f"model '{name}' has {model.batcher.depth} windows queued (limit "
                f"{self.config.max_queue}, --max-queue); retry after a second",
                headers={"Retry-After": "1"},
            ) from None
        except asyncio.TimeoutError:
            code = 504
            raise ApiError(
                504,
                "timeout",
                f"the request took longer than {self.config.request_timeout:g} s "
                "(--request-timeout); send fewer or shorter texts, or retry",
            ) from None
        except Exception as exc:
            log.exception("model '%s' failed on a request", name)
            raise ApiError(
                500,
                "model_error",
                f"model '{name}' failed on this request ({type(exc).__name__}: {exc}); "
                "requests in other batches are unaffected",
            ) from None
        finally:
            self.in_flight[name] -= 1
            seconds = asyncio.get_running_loop().time() - start
            self.metrics.request(name, code, len(request.inputs), seconds)

    def on_batch(self, name: str, size: int, tokens: int, seconds: float) -> None:
        self.metrics.windows.labels(name).inc(size)
        self.metrics.batch_size.labels(name).observe(size)
        self.metrics.batch_seconds.labels(name).observe(seconds)

    async def warm_up(self) -> None:
        for model in self.models.values():
            try:
                await model.warm_up()
            except Exception:
                log.exception("model '%s' failed to warm up; /ready stays 503", model.name)


def _document_bearer(app: FastAPI) -> None:
    """Declare the bearer token in /openapi.json (every operation but /health needs it)."""
    build = app.openapi

    def openapi() -> dict:
        if app.openapi_schema is None:
            schema = build()
            schema.setdefault("components", {})["securitySchemes"] = {
                "bearer": {"type": "http", "scheme": "bearer"}
            }
            schema["security"] = [{"bearer": []}]
            schema["paths"]["/health"]["get"]["security"] = []
        return app.openapi_schema

    app.openapi = openapi


def no_token_warning(config: ServeConfig) -> str:
    if config.loopback():
        who = "any program on this machine can use the models"
    else:
        who = f"listening on {config.host}, anyone who can reach the port can use the models"
    return f"no API token: {who}; set GRAFT_API_TOKEN or --token-file to require one"


def create_app(models: list[ServedModel], config: ServeConfig, token: str | None = None):
    """The FastAPI app serving `models`; the lifespan starts and drains their batchers."""
    server = Server(models, config)
    # the limits on inputs are in the request model, so validation stops at them
    limited = request_model(config.max_inputs, config.max_input_chars)

    @asynccontextmanager
    async def lifespan(app):
        if token is None:
            log.warning(no_token_warning(config))
        for model in models:
            model.start(on_batch=partial(server.on_batch, model.name))
        warm = asyncio.create_task(server.warm_up())
        try:
            yield
        finally:
            with suppress(Exception):
                await warm
            for model in list(server.models.values()):  # answers all queued (admin-added too)
                await model.close()

    app = FastAPI(
        title="graftwork",
        summary="Predictions from graftwork bundles, with dynamic batching and long-text windows.",
        version="1",
        lifespan=lifespan,
        docs_url="/docs" if config.docs else None,  # Swagger UI and ReDoc load from a CDN
        redoc_url="/redoc" if config.docs else None,
    )
    app.state.server = server
    if token is not None:
        _document_bearer(app)
    # the served names, so /openapi.json (and clients generated from it) list them
    model_name = Path(
        description="A served model.", json_schema_extra={"enum": list(server.models)}
    )
    app.add_middleware(Guard, server=server, token=token)

    @app.exception_handler(ApiError)
    async def api_error(request: Request, exc: ApiError):
        return exc.response()

    @app.exception_handler(RequestValidationError)
    async def invalid(request: Request, exc: RequestValidationError):
        return server.invalid(list(exc.errors())).response()

    @app.exception_handler(StarletteHTTPException)
    async def http_error(request: Request, exc: StarletteHTTPException):
        kind = {404: "not_found", 405: "method_not_allowed"}.get(exc.status_code, "http_error")
        message = f"{request.method} {request.url.path}: {exc.detail}; see /openapi.json"
        return error_json(exc.status_code, kind, message, exc.headers)

    @app.exception_handler(Exception)
    async def internal(request: Request, exc: Exception):
        log.exception("unexpected error on %s %s", request.method, request.url.path)
        return error_json(500, "internal", f"internal error ({type(exc).__name__}); see the log")

    @app.get("/health", response_model=Status, responses=error_responses(400), tags=["status"])
    async def health():
        """Liveness: the process answers (needs no token)."""
        return {"status": "ok"}

    @app.get(
        "/ready", response_model=Status, responses=error_responses(400, 401, 503), tags=["status"]
    )
    async def ready():
        """Readiness: every model is loaded and has run a warm-up batch."""
        waiting = [name for name, m in server.models.items() if not m.ready]
        if waiting:
            raise ApiError(
                503,
                "not_ready",
                f"warming up: {', '.join(waiting)}",
                headers={"Retry-After": "1"},
            )
        return {"status": "ready"}

    @app.get(
        "/metrics",
        response_class=PlainTextResponse,
        responses={200: {"content": {PROMETHEUS: {}}}, **error_responses(400, 401)},
        tags=["status"],
    )
    async def metrics():
        """Prometheus metrics: requests, errors, queue depth, batch sizes, latencies."""
        return PlainTextResponse(server.metrics.render(), media_type=PROMETHEUS)

    @app.get("/v1/models", response_model=ModelList, responses=error_responses(400, 401))
    async def list_models():
        """Every served model with its task, labels, window settings and artifact."""
        return {"models": [m.describe() for m in server.models.values()]}

    @app.get(
        "/v1/models/{name}", response_model=ModelInfo, responses=error_responses(400, 401, 404)
    )
    async def get_model(name: str = model_name):
        """One served model."""
        return server.model(name).describe()

    async def predict(request: PredictRequest, name: str = model_name):
        """Labels with scores (classification) or entities with offsets (NER), one per input."""
        model = server.model(name)
        request.inputs = [i if isinstance(i, str) else i.model_dump() for i in request.inputs]
        server.check_limits(request.inputs)
        server.check_kind(model, request.inputs)
        outputs = await server.predict(model, request)
        return {"model": name, "task": model.task_name, "outputs": outputs}

    predict.__annotations__["request"] = limited  # this server's limits, in /openapi.json
    app.post(
        "/v1/models/{name}/predict",
        response_model=PredictResponse,
        response_model_exclude_none=True,
        responses=error_responses(400, 401, 404, 408, 413, 422, 500, 503, 504),
    )(predict)
    add_generate_route(app, server, model_name)  # causal_lm bundles: whole or streamed text
    add_admin_routes(app, server, token)  # add and remove models at run time (token only)
    add_v2_routes(app, server, model_name)  # the Open Inference Protocol (KServe v2)
    app.include_router(page_router)  # GET /: a page to try the models (page.py)
    return app
