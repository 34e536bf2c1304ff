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
from graftwork.errors import GraftError
from graftwork.serve.config import ServeConfig, env_var, flag

BUNDLES = typer.Argument(..., help="Bundle folders; NAME=PATH chooses the name.")
RAY = typer.Option(
    False,
    "--ray",
    envvar="GRAFT_RAY",
    help="Serve as a Ray Serve deployment: replicas on this machine, or on the Ray cluster "
    "$RAY_ADDRESS names (bundles at the same path on every node).",
)
REPLICAS = typer.Option(
    None, "--replicas", min=1, envvar="GRAFT_REPLICAS", help="With --ray: replicas (default 1)."
)
AUTOSCALE = typer.Option(
    None,
    "--autoscale",
    envvar="GRAFT_AUTOSCALE",
    help="With --ray: MIN,MAX replicas, as many as the load needs.",
)


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


def serve(
    bundles: list[str],
    ray: bool = False,
    replicas: int | None = None,
    autoscale: str | None = None,
    **settings,
):
    """Serve bundles over HTTP (dynamic batching, long-text windows, auth, limits, metrics)."""
    quiet_libraries()
    config = serving.make_config(**settings)
    token = config.api_token()
    if ray or replicas is not None or autoscale is not None:
        _serve_on_ray(bundles, config, token, ray, replicas, autoscale)
        return
    models = serving.load_models(bundles, config)
    server_app = serving.create_app(models, config, token=token)
    sock = serving.listen(config.host, config.port)
    render.lines(serving.banner(models, sock, _token_hint(config, token)))
    serving.run(server_app, sock, config)


def _token_hint(config, token) -> str | None:
    """How a shell gets the token, for the banner's curl line (never the token itself)."""
    if token is None:
        return None
    return f"$(cat {config.token_file})" if config.token_file is not None else "$GRAFT_API_TOKEN"


def _serve_on_ray(bundles, config, token, ray, replicas, autoscale) -> None:
    """`graft serve --ray`: the same app, as Ray Serve replicas (`serve.ray_serve`)."""
    if not ray:
        raise GraftError("--replicas and --autoscale scale a Ray deployment: add --ray")
    try:
        from graftwork.serve import ray_serve  # optional
    except ImportError as exc:
        raise GraftError(
            f"--ray needs Ray Serve ({exc}); install it: pip install 'graftwork[ray]'"
        ) from None
    ray_serve.run(
        bundles, config, token, replicas, autoscale, _token_hint(config, token), render.lines
    )


_parameters = [
    inspect.Parameter(
        "bundles", inspect.Parameter.POSITIONAL_OR_KEYWORD, default=BUNDLES, annotation=list[str]
    ),
    inspect.Parameter("ray", inspect.Parameter.KEYWORD_ONLY, default=RAY, annotation=bool),
    inspect.Parameter("replicas", inspect.Parameter.KEYWORD_ONLY, default=REPLICAS, annotation=int),
    inspect.Parameter(
        "autoscale", inspect.Parameter.KEYWORD_ONLY, default=AUTOSCALE, annotation=str
    ),
    *(_option(name, field) for name, field in ServeConfig.model_fields.items()),
]
serve.__signature__ = inspect.Signature(_parameters)
serve.__annotations__ = {p.name: p.annotation for p in _parameters}
