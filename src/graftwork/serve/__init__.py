"""Serving bundles over HTTP: `graft serve` and its parts.

    models = load_models(["runs/sst2/bundle", "ner=runs/conll/bundle"], config)
    app = create_app(models, config, token=config.api_token())
    sock = listen(config.host, config.port)       # bound now, so port 0 is known at once
    run(app, sock, config)                        # uvicorn; SIGTERM drains, then returns

The socket is bound before uvicorn starts so that errors (port taken) come out as one
message, and so the address printed is the real one. `server` is uvicorn as `graft serve`
runs it: the header deadline (`guard.protocol`), the connection limit, graceful shutdown, and
graftwork's own log lines in uvicorn's format. Left out: TLS and worker processes.
"""

from __future__ import annotations

import copy
import math
import shlex
import socket

import uvicorn

from graftwork.errors import GraftError
from graftwork.serve.app import create_app
from graftwork.serve.config import ServeConfig, make_config
from graftwork.serve.guard import protocol
from graftwork.serve.model import ServedModel, load_models

__all__ = [
    "ServeConfig",
    "ServedModel",
    "address",
    "banner",
    "create_app",
    "listen",
    "load_models",
    "make_config",
    "run",
    "server",
]


def listen(host: str, port: int) -> socket.socket:
    """A listening TCP socket on (host, port); port 0 picks a free port.

    The socket is made with protocol IPPROTO_TCP (as `getaddrinfo` gives it): asyncio sets
    TCP_NODELAY only on connections accepted from such a socket, and without it a keep-alive
    client waits ~40 ms (Nagle against delayed ACKs) for every response.
    """
    try:
        family, kind, proto, _, addr = socket.getaddrinfo(
            host, port, type=socket.SOCK_STREAM, flags=socket.AI_PASSIVE
        )[0]
        sock = socket.socket(family, kind, proto)
    except OSError as exc:
        raise GraftError(f"cannot listen on {host}:{port} ({exc}); check --host") from None
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind(addr)
        sock.listen(2048)
    except OSError as exc:
        sock.close()
        raise GraftError(
            f"cannot listen on {host}:{port} ({exc.strerror}); is something else using the "
            "port? choose another with --port (or GRAFT_PORT)"
        ) from None
    return sock


def address(sock: socket.socket) -> str:
    host, port = sock.getsockname()[:2]
    return f"http://[{host}]:{port}" if ":" in host else f"http://{host}:{port}"


def banner(models: list[ServedModel], sock: socket.socket, token: str | None) -> list[str]:
    """What `graft serve` prints: where it listens, each model, and a curl line to try.

    `token` is how a shell gets the token (`$GRAFT_API_TOKEN`), never the token itself.
    """
    url = address(sock)
    local = url.replace("0.0.0.0", "127.0.0.1").replace("[::]", "[::1]")
    lines = [f"graft serve: listening on {url}"]
    for model in models:
        lines.append(f"  {model.name} ({model.task_name}): {url}/v1/models/{model.name}/predict")
    first = models[0]
    body = '{"inputs": ["' + first.predictor.task.EXAMPLE + '"]}'
    auth = f' -H "Authorization: Bearer {token}"' if token else ""
    lines.append(
        f"try: curl -s {local}/v1/models/{first.name}/predict"
        f"{auth} -H 'Content-Type: application/json' -d {shlex.quote(body)}"
    )
    lines.append(f"or open {local}/ in a browser (a page to try the models)")
    lines.append(f"schema: {local}/openapi.json  metrics: {local}/metrics  stop: Ctrl+C or SIGTERM")
    return lines


def server(app, config: ServeConfig) -> uvicorn.Server:
    """uvicorn with the server's connection settings; `run` serves with it."""
    log_config = copy.deepcopy(uvicorn.config.LOGGING_CONFIG)  # graftwork logs in its format
    log_config["loggers"]["graftwork"] = {
        "handlers": ["default"],
        "level": config.log_level.upper(),
        "propagate": False,
    }
    return uvicorn.Server(
        uvicorn.Config(
            app,
            http=protocol(config.header_timeout),
            limit_concurrency=config.max_connections,
            log_config=log_config,
            log_level=config.log_level,
            access_log=config.access_log,
            lifespan="on",
            timeout_graceful_shutdown=math.ceil(config.request_timeout) + 5,
        )
    )


def run(app, sock: socket.socket, config: ServeConfig) -> None:
    """Serve until SIGINT/SIGTERM; in-flight requests finish first (graceful shutdown)."""
    server(app, config).run(sockets=[sock])
