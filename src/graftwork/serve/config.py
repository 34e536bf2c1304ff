"""The server's settings: one validated object, each field a `graft serve` flag and a variable.

Each setting is declared once, as a field here: `graft serve` builds its options from these
fields (name, default, description), and pydantic-settings reads the environment. A field
`max_batch_size` is the flag `--max-batch-size` and the environment variable
`GRAFT_MAX_BATCH_SIZE`, as in TEI; the flag wins over the variable, and the variable over the
default. The API token itself is read only from `GRAFT_API_TOKEN` or a token file, never
from the command line, where other users could see it in the process list; one that is set but
empty is refused (it would otherwise mean "no auth"). The limits are meant to hold together:
a request within `max_request_chars` and `max_request_windows` is one the model can answer well
within `request_timeout`, so a request that cannot be answered in time is refused at once
(413) instead of holding the model until its 504.

Left out: TLS and several worker processes (put a reverse proxy in front for those), and
`.env` files (the environment and the flags are the two sources).
"""

from __future__ import annotations

import ipaddress
import os
from pathlib import Path
from typing import Literal

from pydantic import Field, ValidationError, field_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

from graftwork import registry
from graftwork.errors import GraftError

ENV_PREFIX = "GRAFT_"
# what a --backend flag accepts: auto, every registered backend, and their aliases
BACKEND_NAMES = ("auto", *registry.BACKENDS, *registry.BACKEND_ALIASES)
BackendName = Literal[BACKEND_NAMES]  # type: ignore[valid-type]
BACKEND_HELP = f"auto (fastest in the bundle) | {' | '.join(BACKEND_NAMES[1:])}."
# Host header values a loopback-bound server always answers (any port)
LOOPBACK_HOSTS = ("localhost", "127.0.0.1", "[::1]")
CONTROL = {chr(c) for c in (*range(32), 127)}


class ServeConfig(BaseSettings):
    model_config = SettingsConfigDict(env_prefix=ENV_PREFIX, extra="forbid")

    host: str = Field("127.0.0.1", description="Address to listen on (0.0.0.0: every interface).")
    port: int = Field(8080, ge=0, le=65535, description="Port (0: any free port).")
    token_file: Path | None = Field(
        None, description="File holding the API token (else $GRAFT_API_TOKEN; none: no auth)."
    )
    max_batch_size: int = Field(32, ge=1, description="Windows per model batch at most.")
    max_wait_ms: float = Field(
        0.0,
        ge=0,
        description="How long a batch's first window waits for more (0: batches fill "
        "while the model is busy).",
    )
    max_batch_tokens: int = Field(
        16384, ge=1, description="Padded tokens per batch at most (windows × longest)."
    )
    max_queue: int = Field(
        2048, ge=1, description="Windows queued per model; beyond it requests get 503."
    )
    max_inputs: int = Field(64, ge=1, description="Texts per request at most.")
    max_input_chars: int = Field(100_000, ge=1, description="Characters per text at most.")
    max_request_chars: int = Field(
        100_000, ge=1, description="Characters per request at most, all texts together (413)."
    )
    max_request_windows: int = Field(
        512,
        ge=1,
        description="Windows per request at most (413); --max-queue caps it too.",
    )
    max_body_bytes: int = Field(8 << 20, ge=1, description="Request body size in bytes at most.")
    request_timeout: float = Field(
        60.0, gt=0, description="Seconds a predict request may take before it gets 504."
    )
    header_timeout: float = Field(
        10.0, gt=0, description="Seconds a client may take to send a request's headers (408)."
    )
    body_timeout: float = Field(
        30.0, gt=0, description="Seconds a client may take to send a request's body (408)."
    )
    max_connections: int = Field(
        1024, ge=1, description="Open connections at most; beyond it requests get 503."
    )
    allowed_hosts: str = Field(
        "",
        description="Host header names also answered, comma-separated ('*': any). Bound to a "
        "loopback address, only localhost, 127.0.0.1 and [::1] are by default (against DNS "
        "rebinding); bound elsewhere, any is unless this is set.",
    )
    window: int | None = Field(
        None, ge=8, description="Tokens per window (default: the bundle's data.max_length)."
    )
    stride: int | None = Field(
        None, ge=0, description="Tokens shared by consecutive windows (default: window // 4)."
    )
    threads: int | None = Field(
        None, ge=1, description="CPU threads for the model (default: all cores but one)."
    )
    backend: BackendName = Field("auto", description=BACKEND_HELP)
    share_backbone: bool = Field(
        True,
        description="Load adapter bundles (LoRA, DoRA, IA3, bottleneck) of one backbone that run "
        "on PyTorch on one copy of it (exported artifacts are whole graphs: --backend torch).",
    )
    log_level: Literal["debug", "info", "warning", "error"] = Field(
        "info", description="debug|info|warning|error."
    )
    access_log: bool = Field(False, description="Log every request (uvicorn's access log).")
    docs: bool = Field(
        False,
        description="Serve the interactive API docs at /docs and /redoc (Swagger UI and ReDoc, "
        "whose scripts the browser loads from a CDN); /openapi.json is served either way.",
    )

    @field_validator("allowed_hosts")
    @classmethod
    def _host_names(cls, value: str) -> str:
        names = []
        for given in (name.strip() for name in value.split(",")):
            if given and (any(c in given for c in "/@ \\") or not host_name(given)):
                raise ValueError(f"'{given}' is not a host name (e.g. myhost.local, 10.0.0.5)")
            names += [host_name(given)] if given else []
        return ",".join(names)

    def api_token(self) -> str | None:
        """The token every endpoint but /health requires, or None for no auth.

        A variable or a file that is set but holds no token is refused, not read as no auth."""
        env = os.environ.get(env_var("api_token"))
        if self.token_file is None:
            if env is None:
                return None
            return _checked_token(
                env,
                env_var("api_token"),
                "set but empty; set a token in it, or unset it to serve without auth",
            )
        if env is not None:
            raise GraftError("GRAFT_API_TOKEN and --token-file are both set; use one of them")
        if not self.token_file.is_file():
            raise GraftError(f"--token-file {self.token_file} does not exist")
        token = self.token_file.read_text(encoding="utf-8")
        return _checked_token(
            token, f"--token-file {self.token_file}", "empty; put the token in it"
        )

    def loopback(self) -> bool:
        """Whether `host` is a loopback address (reachable from this machine only)."""
        if self.host.lower() == "localhost":
            return True
        try:
            return ipaddress.ip_address(self.host.strip("[]")).is_loopback
        except ValueError:
            return False

    def host_allowlist(self) -> frozenset[str] | None:
        """The Host header names answered (as `host_name` gives them), or None for any."""
        extra = [name for name in self.allowed_hosts.split(",") if name]
        if "*" in extra or (not extra and not self.loopback()):
            return None
        return frozenset({*LOOPBACK_HOSTS, host_name(self.host), *extra})


def host_name(value: str) -> str:
    """A host's name, lower case, without its port: '[::1]:8080' → '[::1]', 'A:80' → 'a'."""
    value = value.strip().lower()
    if value.startswith("["):
        end = value.find("]")
        return value[: end + 1] if end > 0 else ""
    if value.count(":") > 1:  # a bare IPv6 address, as --host takes it
        return f"[{value}]"
    return value.partition(":")[0]


def _checked_token(token: str, source: str, empty: str) -> str:
    """`token` without surrounding whitespace; refused if empty or not sendable in a header."""
    token = token.strip()
    if not token:
        raise GraftError(f"{source} is {empty} (an empty token would turn auth off)")
    if CONTROL & set(token):
        raise GraftError(
            f"{source} holds a control character, which no client can send in a header; "
            "use printable characters"
        )
    return token


def flag(name: str) -> str:
    return "--" + name.replace("_", "-")


def env_var(name: str) -> str:
    return ENV_PREFIX + name.upper()


def make_config(**values) -> ServeConfig:
    """A `ServeConfig` from `values`, then `GRAFT_…` variables, then defaults; errors name
    the flag and variable to fix."""
    try:
        return ServeConfig(**values)
    except ValidationError as exc:
        problems = []
        for error in exc.errors():
            name = str(error["loc"][0]) if error["loc"] else "?"
            problems.append(
                f"{flag(name)} ({env_var(name)}): {error['msg']}, got {error.get('input')!r}"
            )
        raise GraftError("invalid server settings: " + "; ".join(problems)) from None
