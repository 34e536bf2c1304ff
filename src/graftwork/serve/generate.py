"""`POST /v1/models/{name}/generate`: text from a served causal_lm bundle, whole or streamed.

    {"inputs": ["prompt", ...], "max_new_tokens": 64, "temperature": 0.7, "top_p": 0.9,
     "greedy": true, "stream": false}

Without `stream` the answer is JSON, one `{"generated_text", "tokens"}` per input (generated
together, in batches: `inference.generate`). With `"stream": true` (one input) it is
server-sent events (`text/event-stream`): `data: {"text": "…"}` for each piece as it is
generated, then `data: {"done": true, "generated_text": "…"}`, or `event: error` with the
error's JSON if generation fails midway. The settings default to the bundle's `generation`
section; a request's fields change them (`Generator.settings_with`).

The same guard (host, token, body size), input limits (count, characters, blank text) and
metrics (requests by code, inputs, latency, in flight) as `predict`; generation runs in a
worker thread, one request at a time per model (a model's CPU threads are not shared by two
generations), and waits at most `--request-timeout` for its turn; at most `--max-queue`
requests wait per model (503 beyond). A client that leaves mid-stream stops its generation
at the next token (the model's turn goes to the next request), and the request is counted as
499, client closed, not as a server error. Left out: the batcher (generated
answers are not windows; a request is its own batch).
"""

from __future__ import annotations

import asyncio
import json
import threading
from collections.abc import AsyncIterator

from fastapi import FastAPI, Request
from fastapi.responses import StreamingResponse
from pydantic import BaseModel, ConfigDict, Field

from graftwork.errors import GraftError
from graftwork.inference.generate import Generator
from graftwork.serve.schemas import ApiError, error_responses
from graftwork.tasks import generation as gen

EVENT_STREAM = "text/event-stream"
CLIENT_CLOSED = 499  # the code /metrics counts a stream under when its client left (nginx's)


class GenerateRequest(BaseModel):
    # NaN and infinities are refused as such ("must be a finite number"), not as out of range
    model_config = ConfigDict(allow_inf_nan=False)

    inputs: list[str] = Field(..., min_length=1, description="Prompts (one when streaming).")
    max_new_tokens: int | None = Field(None, ge=1, le=8192)
    # 0 passes here to be refused by the rule `graft generate` has too (`check_temperature`)
    temperature: float | None = Field(None, ge=0, le=10, description="Sample at this temperature.")
    top_p: float | None = Field(None, gt=0, le=1, description="Sample from this nucleus mass.")
    greedy: bool | None = Field(None, description="Greedy decoding (the bundle's default).")
    stream: bool = Field(False, description="Server-sent events, piece by piece (one input).")


class Generated(BaseModel):
    generated_text: str
    tokens: int


class GenerateResponse(BaseModel):
    model: str
    outputs: list[Generated]


class Turns:
    """One generation at a time per model; at most `limit` waiting."""

    def __init__(self, limit: int):
        self.lock = threading.Lock()
        self.waiting = 0
        self.limit = limit


def generator_of(model) -> Generator:
    """The served bundle's model as a Generator (made once, on first use)."""
    if getattr(model, "generator", None) is None:
        p = model.predictor
        settings = gen.settings(p.manifest.recipe.get("generation"))
        model.generator = Generator(p.model, p.tokenizer, settings, p.task_config, model.name)
    return model.generator


def sse(data: dict, event: str | None = None) -> str:
    head = f"event: {event}\n" if event else ""
    return f"{head}data: {json.dumps(data, ensure_ascii=False)}\n\n"


def add_generate_route(app: FastAPI, server, model_name) -> None:
    """Register the generate route on `app` (the `Server` of `serve.app` holds the models)."""
    turns = {name: Turns(server.config.max_queue) for name in server.models}

    def checked(name: str, body: GenerateRequest):
        model = server.model(name)
        if model.task_name != "causal_lm":
            raise ApiError(
                422,
                "not_generative",
                f"model '{name}' is a {model.task_name} model; generate serves causal_lm "
                "bundles (use /predict for this one)",
            )
        if len(body.inputs) > server.config.max_inputs:
            raise server.too_many_inputs(len(body.inputs))
        for i, text in enumerate(body.inputs):
            if len(text) > server.config.max_input_chars:
                raise server.too_long(i, len(text))
        server.check_limits(body.inputs)
        if body.stream and len(body.inputs) != 1:
            raise ApiError(
                422, "invalid_request", "stream answers one prompt: send one input, or stream false"
            )
        generator = generator_of(model)
        try:
            settings = generator.settings_with(
                body.max_new_tokens, body.temperature, body.top_p, body.greedy
            )
        except GraftError as exc:
            raise ApiError(422, "invalid_request", str(exc)) from None
        return model, generator, settings

    def take_turn(name: str) -> Turns:
        turn = turns[name]
        if turn.waiting >= turn.limit:
            raise ApiError(
                503,
                "queue_full",
                f"model '{name}' has {turn.waiting} generate requests waiting (limit "
                f"{turn.limit}, --max-queue); retry after a second",
                headers={"Retry-After": "1"},
            )
        return turn

    def run_in_turn(turn: Turns, work):
        """Run `work()` holding the model's turn (waiting at most the request timeout)."""
        turn.waiting += 1
        try:
            if not turn.lock.acquire(timeout=server.config.request_timeout):
                raise TimeoutError
        finally:
            turn.waiting -= 1
        try:
            return work()
        finally:
            turn.lock.release()

    def count(name: str, code: int, inputs: int, started: float) -> None:
        server.metrics.request(name, code, inputs, asyncio.get_running_loop().time() - started)

    async def generate(body: GenerateRequest, request: Request, name: str = model_name):
        """Text generated from each prompt (causal_lm bundles), whole or as server-sent events."""
        model, generator, settings = checked(name, body)
        turn = take_turn(name)
        started = asyncio.get_running_loop().time()
        if body.stream:
            return StreamingResponse(
                streamed(name, generator, settings, body.inputs[0], turn, started),
                media_type=EVENT_STREAM,
                headers={"Cache-Control": "no-cache"},
            )
        server.in_flight[name] += 1
        code = 500
        try:
            outputs = await asyncio.wait_for(
                asyncio.to_thread(
                    run_in_turn, turn, lambda: generator.generate(body.inputs, settings)
                ),
                server.config.request_timeout,
            )
            code = 200
            return {"model": name, "outputs": outputs}
        except (asyncio.TimeoutError, TimeoutError):
            code = 504
            raise ApiError(
                504,
                "timeout",
                f"generating took longer than {server.config.request_timeout:g} s "
                "(--request-timeout); ask for fewer tokens or prompts, or retry",
            ) from None
        except ApiError:
            raise
        except Exception as exc:
            raise ApiError(
                500, "model_error", f"model '{name}' failed ({type(exc).__name__}: {exc})"
            ) from None
        finally:
            server.in_flight[name] -= 1
            count(name, code, len(body.inputs), started)

    async def streamed(name, generator, settings, prompt, turn, started) -> AsyncIterator[str]:
        """The SSE events of one prompt's answer; the generator runs in a worker thread, which
        stops at its next token once the client is gone."""
        loop = asyncio.get_running_loop()
        queue: asyncio.Queue = asyncio.Queue()
        done = object()
        stop = threading.Event()

        pieces: list[str] = []

        def produce() -> None:
            if stop.is_set():  # the client left while this request waited for its turn
                return
            for piece in generator.stream(prompt, settings, stop):
                pieces.append(piece)
                loop.call_soon_threadsafe(queue.put_nowait, piece)

        def work() -> None:
            try:
                run_in_turn(turn, produce)
            except BaseException as exc:  # sent to the client as an error event
                loop.call_soon_threadsafe(queue.put_nowait, exc)
            loop.call_soon_threadsafe(queue.put_nowait, done)

        server.in_flight[name] += 1
        code = 500
        thread = threading.Thread(target=work, daemon=True)
        thread.start()
        try:
            while True:
                item = await queue.get()
                if item is done:
                    break
                if isinstance(item, BaseException):
                    timeout = isinstance(item, TimeoutError)
                    code = 504 if timeout else 500
                    message = "waited longer than --request-timeout" if timeout else str(item)
                    yield sse({"message": message, "type": type(item).__name__}, "error")
                    return
                if item:
                    yield sse({"text": item})
            code = 200
            yield sse({"done": True, "generated_text": "".join(pieces).strip()})
        except (asyncio.CancelledError, GeneratorExit):  # the client closed the stream
            code = CLIENT_CLOSED
            raise
        finally:
            stop.set()
            server.in_flight[name] -= 1
            count(name, code, 1, started)

    app.post(
        "/v1/models/{name}/generate",
        response_model=GenerateResponse,
        responses={
            200: {"content": {EVENT_STREAM: {}}},
            **error_responses(400, 401, 404, 413, 422, 500, 503, 504),
        },
    )(generate)
