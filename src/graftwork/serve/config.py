"""The server's settings: one validated object, each field a `graft serve` flag and a variable.

Each setting is declared once, as a field here: `graft serve` builds its options from these
fields (name, default, description), and pydantic-settings reads the environment. A field
`max_batch_size` is the flag `--max-batch-size` and the environment variable
`GRAFT_MAX_BATCH_SIZE`, as in TEI; the flag wins over the variable, and the variable over the
default. The API token itself is read only from `GRAFT_API_TOKEN` or a token file, never
from the command line, where other users could see it in the process list.

Left out: TLS and several worker processes (put a reverse proxy in front for those), and
`.env` files (the environment and the flags are the two sources).
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Literal

from pydantic import Field, ValidationError
from pydantic_settings import BaseSettings, SettingsConfigDict

from graftwork import registry
from graftwork.errors import GraftError

ENV_PREFIX = "GRAFT_"
# what a --backend flag accepts: auto, every registered backend, and their aliases
BACKEND_NAMES = ("auto", *registry.BACKENDS, *registry.BACKEND_ALIASES)
BackendName = Literal[BACKEND_NAMES]  # type: ignore[valid-type]
BACKEND_HELP = f"auto (fastest in the bundle) | {' | '.join(BACKEND_NAMES[1:])}."


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
    max_body_bytes: int = Field(8 << 20, ge=1, description="Request body size in bytes at most.")
    request_timeout: float = Field(
        60.0, gt=0, description="Seconds a predict request may take before it gets 504."
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
    log_level: Literal["debug", "info", "warning", "error"] = Field(
        "info", description="debug|info|warning|error."
    )
    access_log: bool = Field(False, description="Log every request (uvicorn's access log).")

    def api_token(self) -> str | None:
        """The token every endpoint but /health requires, or None for no auth."""
        env = os.environ.get(env_var("api_token")) or None
        if self.token_file is None:
            return env
        if env is not None:
            raise GraftError("GRAFT_API_TOKEN and --token-file are both set; use one of them")
        if not self.token_file.is_file():
            raise GraftError(f"--token-file {self.token_file} does not exist")
        token = self.token_file.read_text(encoding="utf-8").strip()
        if not token:
            raise GraftError(f"--token-file {self.token_file} is empty; put the token in it")
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
