"""What stands between a client and the routes: deadlines, the Host check, the token, the body.

Two layers, each doing what the other cannot:

- `protocol(header_timeout)`: uvicorn's HTTP/1.1 protocol with a deadline on each request's
  headers. uvicorn closes idle keep-alive connections, but waits without end for the rest of
  a request whose headers have begun (or for a connection that sends nothing); past the
  deadline the connection gets 408 (or, if it sent nothing, is closed).
- `Guard`, ASGI middleware in front of the app, in this order: the Host header (while bound to
  a loopback address, only loopback names, and those of --allowed-hosts: a web page cannot
  reach the server through DNS rebinding), the bearer token (as bytes, UTF-8 on both sides,
  compared in constant time; every endpoint but /health, /v2/health/live and the page's files
  needs it when a token is set), the body size and the time to receive the body (408 past
  --body-timeout). It also counts every error response. The body is read whole here, before
  anything parses it.

Left out: the routes and their errors (app.py), and the number of connections (uvicorn's
`limit_concurrency`, set from --max-connections in `graftwork.serve.run`).
"""

from __future__ import annotations

import asyncio
import hmac
import json

import h11
from uvicorn.protocols.http.h11_impl import H11Protocol

from graftwork.serve import page
from graftwork.serve.config import host_name
from graftwork.serve.schemas import error_json


def protocol(header_timeout: float) -> type[H11Protocol]:
    """uvicorn's h11 protocol class, closing a connection whose headers take too long."""

    class DeadlineProtocol(H11Protocol):
        _deadline: asyncio.TimerHandle | None = None
        _started = False  # bytes of the next request have arrived

        def connection_made(self, transport) -> None:
            super().connection_made(transport)
            self._arm()

        def data_received(self, data: bytes) -> None:
            if self.conn.their_state is h11.IDLE:
                if self._deadline is None:  # the first bytes after a keep-alive pause
                    self._arm()
                self._started = True
            super().data_received(data)
            if self.conn.their_state is not h11.IDLE:  # the headers are in
                self._disarm()

        def connection_lost(self, exc) -> None:
            self._disarm()
            super().connection_lost(exc)

        def _arm(self) -> None:
            loop = asyncio.get_running_loop()
            self._deadline = loop.call_later(header_timeout, self._expired)

        def _disarm(self) -> None:
            if self._deadline is not None:
                self._deadline.cancel()
                self._deadline = None
            self._started = False

        def _expired(self) -> None:
            self._deadline = None
            if self.transport.is_closing() or self.conn.their_state is not h11.IDLE:
                return
            if self._started:  # h11 cannot answer a request it has not parsed: written here
                self.transport.write(header_timeout_response(header_timeout))
            self.transport.close()

    return DeadlineProtocol


def header_timeout_response(seconds: float) -> bytes:
    body = json.dumps(
        {
            "error": {
                "message": f"the request headers did not arrive within {seconds:g} s "
                "(--header-timeout, GRAFT_HEADER_TIMEOUT); send the request at once",
                "type": "header_timeout",
            }
        }
    ).encode()
    head = (
        "HTTP/1.1 408 Request Timeout\r\ncontent-type: application/json\r\n"
        f"content-length: {len(body)}\r\nconnection: close\r\n\r\n"
    )
    return head.encode() + body


# what needs no token: liveness (/health, and the Open Inference Protocol's: v2.py), and the
# page's files (page.py; its API calls need the token)
PUBLIC = frozenset({"/health", "/v2/health/live", *page.PUBLIC})


def header(scope, name: bytes) -> bytes | None:
    for key, value in scope["headers"]:
        if key == name:
            return value
    return None


class Guard:
    """ASGI middleware: Host, bearer token, body size and time, and the count of every error."""

    def __init__(self, app, server, token: str | None):
        self.app, self.server = app, server
        self.token = None if token is None else token.encode("utf-8")
        config = server.config
        self.max_body, self.body_timeout = config.max_body_bytes, config.body_timeout
        self.hosts = config.host_allowlist()
        self.bound = config.host

    async def __call__(self, scope, receive, send):
        if scope["type"] != "http":
            return await self.app(scope, receive, send)
        errors = self.server.metrics.errors

        async def counted(message):
            if message["type"] == "http.response.start" and message["status"] >= 400:
                errors.labels(str(message["status"])).inc()
            await send(message)

        refusal = self.refusal(scope)
        if refusal is not None:
            return await refusal(scope, receive, counted)
        if scope["method"] in ("POST", "PUT", "PATCH"):
            try:
                body = await asyncio.wait_for(self.read_body(scope, receive), self.body_timeout)
            except asyncio.TimeoutError:
                response = error_json(
                    408,
                    "body_timeout",
                    f"the request body did not arrive within {self.body_timeout:g} s "
                    "(--body-timeout, GRAFT_BODY_TIMEOUT); send it at once",
                    headers={"Connection": "close"},
                )
                return await response(scope, receive, counted)
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

    def refusal(self, scope):
        """The error response for a Host not served or a missing or wrong token, or None."""
        if self.hosts is not None:
            host = host_name((header(scope, b"host") or b"").decode("latin-1"))
            if host not in self.hosts:
                return error_json(
                    400,
                    "host_not_allowed",
                    f"Host '{host[:100]}' is not served here: bound to {self.bound}, the server "
                    f"answers {', '.join(sorted(self.hosts))} (a guard against DNS rebinding); "
                    "add names with --allowed-hosts (GRAFT_ALLOWED_HOSTS)",
                )
        if self.token is not None and scope["path"] not in PUBLIC and not self.authorized(scope):
            return error_json(
                401,
                "unauthorized",
                "missing or wrong API token: send the header 'Authorization: Bearer <token>'",
                headers={"WWW-Authenticate": "Bearer"},
            )
        return None

    def authorized(self, scope) -> bool:
        """The header's bytes against the token's UTF-8 bytes (a header is not decoded)."""
        value = header(scope, b"authorization")
        if value is None:
            return False
        scheme, _, credential = value.partition(b" ")
        return scheme.lower() == b"bearer" and hmac.compare_digest(credential.strip(), self.token)

    async def read_body(self, scope, receive) -> bytes | None:
        """The whole body, or None if it is (or says it is) over the limit."""
        length = header(scope, b"content-length")
        if length is not None and length.isdigit() and int(length) > self.max_body:
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
