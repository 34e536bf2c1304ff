"""`graft serve`: its options are built from the fields of `ServeConfig`, declared once.

Each field of `graftwork.serve.config.ServeConfig` becomes an option: its flag, default,
description and `GRAFT_…` variable come from the field, so a new server setting is one new
field there and nothing here. Values are checked by `make_config` (errors name the flag and
the variable), not by the command line parser. Left out: settings that are not flags (the
API token: only `GRAFT_API_TOKEN` or `--token-file`, never on the command line).
"""

from __future__ import annotations

import inspect
import types
import typing

import typer

from graftwork import serve as serving
from graftwork.backbones.quiet import quiet_libraries
from graftwork.cli import render
from graftwork.serve.config import ServeConfig, env_var, flag

BUNDLES = typer.Argument(..., help="Bundle folders; NAME=PATH chooses the name.")


def _option_type(annotation) -> type:
    """The type the command line parses a field as; `make_config` checks the value."""
    origin = typing.get_origin(annotation)
    if origin is typing.Literal:
        return str
    if origin in (typing.Union, types.UnionType):
        return _option_type(next(a for a in typing.get_args(annotation) if a is not type(None)))
    return annotation


def _option(name: str, field) -> inspect.Parameter:
    kind = _option_type(field.annotation)
    decls = [f"{flag(name)}/--no-{flag(name)[2:]}"] if kind is bool else [flag(name)]
    option = typer.Option(field.default, *decls, envvar=env_var(name), help=field.description)
    return inspect.Parameter(name, inspect.Parameter.KEYWORD_ONLY, default=option, annotation=kind)


def serve(bundles: list[str], **settings):
    """Serve bundles over HTTP (dynamic batching, long-text windows, auth, limits, metrics)."""
    quiet_libraries()
    config = serving.make_config(**settings)
    token = config.api_token()
    models = serving.load_models(bundles, config)
    server_app = serving.create_app(models, config, token=token)
    sock = serving.listen(config.host, config.port)
    hint = None if token is None else "$GRAFT_API_TOKEN"
    if token is not None and config.token_file is not None:
        hint = f"$(cat {config.token_file})"
    render.lines(serving.banner(models, sock, hint))
    serving.run(server_app, sock, config)


_parameters = [
    inspect.Parameter(
        "bundles", inspect.Parameter.POSITIONAL_OR_KEYWORD, default=BUNDLES, annotation=list[str]
    ),
    *(_option(name, field) for name, field in ServeConfig.model_fields.items()),
]
serve.__signature__ = inspect.Signature(_parameters)
serve.__annotations__ = {p.name: p.annotation for p in _parameters}
