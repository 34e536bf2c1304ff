"""The HTTP layer: thin FastAPI routes over `ServedModel`s, with auth, limits and errors.

    POST /v1/models/{name}/predict   {"inputs": [...], "top_k": 1, "aggregate": "mean"}
    GET  /v1/models, /v1/models/{name}, /health, /ready, /metrics, /openapi.json

Every error is JSON, `{"error": {"message": ..., "type": ..., ...}}`, with the status that says
what happened: 401 (token), 404 (model or route), 413 (body size), 422 (malformed JSON, wrong
types, too many inputs or too long an input, with the offending `index`), 500 (the model
failed on this request's batch), 503 (queue full, with Retry-After; or not ready), 504
(timeout). A guard in front of the app checks the bearer token (constant-time comparison;
every endpoint but /health needs it when a token is set) and the body size before anything
is parsed.

Left out: the model work (model.py, batcher.py, windows.py) and starting uvicorn (__init__.py).
"""

from __future__ import annotations

import asyncio
import hmac
import logging
import re
from contextlib import asynccontextmanager, suppress
from functools import partial

from fastapi import FastAPI, Path, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse, PlainTextResponse
from starlette.exceptions import HTTPException as StarletteHTTPException

from graftwork.errors import GraftError
from graftwork.serve.batcher import QueueFull
from graftwork.serve.config import ServeConfig
from graftwork.serve.metrics import CONTENT_TYPE as PROMETHEUS
from graftwork.serve.metrics import ServerMetrics
from graftwork.serve.model import ServedModel
from graftwork.serve.schemas import (
    ModelInfo,
    ModelList,
    PredictRequest,
    PredictResponse,
    Status,
    error_responses,
)

log = logging.getLogger("graftwork.serve")

EXAMPLE = '{"inputs": ["some text"]}'
SURROGATE = re.compile("[\ud800-\udfff]")


class ApiError(GraftError):
    """An error answered to an HTTP client: status, a stable type, a message, extra fields."""

    def __init__(self, status: int, kind: str, message: str, headers=None, **extra):
        super().__init__(message)
        self.status, self.kind, self.message = status, kind, message
        self.headers, self.extra = headers or {}, extra


def error_json(status: int, kind: str, message: str, headers=None, **extra) -> JSONResponse:
    body = {"error": {"message": message, "type": kind, **extra}}
    return JSONResponse(body, status_code=status, headers=headers)


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

    def check_limits(self, inputs: list[str]) -> None:
        cfg = self.config
        if len(inputs) > cfg.max_inputs:
            raise ApiError(
                422,
                "too_many_inputs",
                f"inputs holds {len(inputs)} texts; the limit is {cfg.max_inputs} per request "
                "(--max-inputs, GRAFT_MAX_INPUTS): send the rest in further requests",
                index=cfg.max_inputs,
                limit=cfg.max_inputs,
            )
        for i, text in enumerate(inputs):
            if SURROGATE.search(text):
                raise ApiError(
                    422,
                    "invalid_text",
                    f"inputs[{i}] holds an unpaired UTF-16 surrogate, which is not text; "
                    "send valid Unicode",
                    index=i,
                )
            if len(text) > cfg.max_input_chars:
                raise ApiError(
                    422,
                    "input_too_long",
                    f"inputs[{i}] has {len(text)} characters; the limit is "
                    f"{cfg.max_input_chars} (--max-input-chars, GRAFT_MAX_INPUT_CHARS): "
                    "split the text",
                    index=i,
                    limit=cfg.max_input_chars,
                )

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
            self.metrics.requests.labels(name, str(code)).inc()
            if code == 200:
                self.metrics.inputs.labels(name).inc(len(request.inputs))
            self.metrics.latency.labels(name).observe(asyncio.get_running_loop().time() - start)

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


class Guard:
    """ASGI middleware: bearer token, body size, and the count of every error response."""

    def __init__(self, app, server: Server, token: str | None):
        self.app, self.server, self.token = app, server, token
        self.max_body = server.config.max_body_bytes

    async def __call__(self, scope, receive, send):
        if scope["type"] != "http":
            return await self.app(scope, receive, send)
        errors = self.server.metrics.errors

        async def counted(message):
            if message["type"] == "http.response.start" and message["status"] >= 400:
                errors.labels(str(message["status"])).inc()
            await send(message)

        if self.token is not None and scope["path"] != "/health" and not self.authorized(scope):
            response = error_json(
                401,
                "unauthorized",
                "missing or wrong API token: send the header 'Authorization: Bearer <token>'",
                headers={"WWW-Authenticate": "Bearer"},
            )
            return await response(scope, receive, counted)
        if scope["method"] in ("POST", "PUT", "PATCH"):
            body = await self.read_body(scope, receive)
            if body is None:
                response = error_json(
                    413,
                    "body_too_large",
                    f"the request body is over {self.max_body} bytes (--max-body-bytes, "
                    "GRAFT_MAX_BODY_BYTES); send fewer texts per request",
                    limit=self.max_body,
                )
                return await response(scope, receive, counted)
            receive = _replay(body, receive)
        await self.app(scope, receive, counted)

    def authorized(self, scope) -> bool:
        for key, value in scope["headers"]:
            if key == b"authorization":
                scheme, _, credential = value.decode("latin-1").partition(" ")
                return scheme.lower() == "bearer" and hmac.compare_digest(
                    credential.strip().encode("utf-8"), self.token.encode("utf-8")
                )
        return False

    async def read_body(self, scope, receive) -> bytes | None:
        """The whole body, or None if it is (or says it is) over the limit."""
        for key, value in scope["headers"]:
            if key == b"content-length" and value.isdigit() and int(value) > self.max_body:
                return None
        chunks, size, more = [], 0, True
        while more:
            message = await receive()
            if message["type"] == "http.disconnect":
                break
            chunk = message.get("body", b"")
            size += len(chunk)
            if size > self.max_body:
                return None
            chunks.append(chunk)
            more = message.get("more_body", False)
        return b"".join(chunks)


def _replay(body: bytes, receive):
    sent = False

    async def replay():
        nonlocal sent
        if not sent:
            sent = True
            return {"type": "http.request", "body": body, "more_body": False}
        return await receive()

    return replay


def describe_validation(errors: list[dict]) -> tuple[str, dict]:
    """A message naming the first problem (and the input's index), plus every problem."""
    first = errors[0]
    loc = [part for part in first.get("loc", ()) if part != "body"]
    extra: dict = {
        "errors": [
            {"loc": list(e.get("loc", ())), "msg": e.get("msg"), "type": e.get("type")}
            for e in errors[:10]
        ]
    }
    if first.get("type") == "json_invalid":
        reason = first.get("ctx", {}).get("error", "invalid JSON")
        return f"the body is not valid JSON ({reason}); send {EXAMPLE}", extra
    if not loc and first.get("type") == "model_attributes_type":
        return f"the body must be a JSON object (Content-Type: application/json): {EXAMPLE}", extra
    where = "".join(f"[{p}]" if isinstance(p, int) else f".{p}" for p in loc).lstrip(".")
    if len(loc) >= 2 and loc[0] == "inputs" and isinstance(loc[1], int):
        extra["index"] = loc[1]
    return f"{where or 'the body'}: {first.get('msg')}; send {EXAMPLE}", extra


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


def create_app(models: list[ServedModel], config: ServeConfig, token: str | None = None):
    """The FastAPI app serving `models`; the lifespan starts and drains their batchers."""
    server = Server(models, config)

    @asynccontextmanager
    async def lifespan(app):
        for model in models:
            model.start(on_batch=partial(server.on_batch, model.name))
        warm = asyncio.create_task(server.warm_up())
        try:
            yield
        finally:
            with suppress(Exception):
                await warm
            for model in models:  # answers everything still queued
                await model.close()

    app = FastAPI(
        title="graftwork",
        summary="Predictions from graftwork bundles, with dynamic batching and long-text windows.",
        version="1",
        lifespan=lifespan,
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
        return error_json(exc.status, exc.kind, exc.message, exc.headers, **exc.extra)

    @app.exception_handler(RequestValidationError)
    async def invalid(request: Request, exc: RequestValidationError):
        message, extra = describe_validation(list(exc.errors()))
        return error_json(422, "invalid_request", message, **extra)

    @app.exception_handler(StarletteHTTPException)
    async def http_error(request: Request, exc: StarletteHTTPException):
        kind = {404: "not_found", 405: "method_not_allowed"}.get(exc.status_code, "http_error")
        message = f"{request.method} {request.url.path}: {exc.detail}; see /openapi.json"
        return error_json(exc.status_code, kind, message, exc.headers)

    @app.exception_handler(Exception)
    async def internal(request: Request, exc: Exception):
        log.exception("unexpected error on %s %s", request.method, request.url.path)
        return error_json(500, "internal", f"internal error ({type(exc).__name__}); see the log")

    @app.get("/health", response_model=Status, tags=["status"])
    async def health():
        """Liveness: the process answers (needs no token)."""
        return {"status": "ok"}

    @app.get("/ready", response_model=Status, responses=error_responses(401, 503), tags=["status"])
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
        responses={200: {"content": {PROMETHEUS: {}}}, **error_responses(401)},
        tags=["status"],
    )
    async def metrics():
        """Prometheus metrics: requests, errors, queue depth, batch sizes, latencies."""
        return PlainTextResponse(server.metrics.render(), media_type=PROMETHEUS)

    @app.get("/v1/models", response_model=ModelList, responses=error_responses(401))
    async def list_models():
        """Every served model with its task, labels, window settings and artifact."""
        return {"models": [m.describe() for m in server.models.values()]}

    @app.get("/v1/models/{name}", response_model=ModelInfo, responses=error_responses(401, 404))
    async def get_model(name: str = model_name):
        """One served model."""
        return server.model(name).describe()

    @app.post(
        "/v1/models/{name}/predict",
        response_model=PredictResponse,
        response_model_exclude_none=True,
        responses=error_responses(401, 404, 413, 422, 500, 503, 504),
    )
    async def predict(request: PredictRequest, name: str = model_name):
        """Labels with scores (classification) or entities with offsets (NER), one per input."""
        model = server.model(name)
        server.check_limits(request.inputs)
        outputs = await server.predict(model, request)
        return {"model": name, "task": model.task_name, "outputs": outputs}

    return app
