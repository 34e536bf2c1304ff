"""Adding and removing served models at run time: `POST /v1/admin/models` with a bundle's
path (and a name), `DELETE /v1/admin/models/{name}`.

Only a server with an API token has them (the `Guard` checks the token as for every route);
without one they answer 403 and say how to turn them on, since anyone who can reach the port
could otherwise make the server read files. The path must be absolute, a folder on the server
holding a bundle (`graftwork.json`); the bundle is read and verified in a thread, started and
warmed up before it is listed, so a request never finds it half loaded. An adapter bundle joins
a served shared backbone of its backbone (`serve.shared_backbone.load_one`), else it loads on
its own. A multi-task bundle adds each of its tasks. Removing takes the name off first (new
requests get 404), answers what its queue holds, then frees its adapter (or its model). One
admin change runs at a time.

Left out: replacing a model under the same name in one step (remove, then add), removing the
last model (the server would serve nothing), and persisting the changes (a restart serves what
the command line names).
"""

from __future__ import annotations

import asyncio
from functools import partial
from pathlib import Path

from fastapi import FastAPI
from pydantic import BaseModel, ConfigDict, Field

from graftwork.bundle.manifest import MANIFEST
from graftwork.bundle.tasks import expand, parse_spec
from graftwork.errors import GraftError
from graftwork.serve.model import NAME, ServedModel, serving_threads
from graftwork.serve.schemas import ApiError, ErrorResponse, ModelList, error_responses
from graftwork.serve.shared_backbone import groups_of, load_one, release

NO_TOKEN = (
    "the admin endpoints add and remove models at run time, and this server has no API token; "
    "start it with GRAFT_API_TOKEN or --token-file set to use them"
)


class AddModel(BaseModel):
    model_config = ConfigDict(extra="forbid")
    path: str = Field(..., min_length=1, description="Absolute path of a bundle on the server.")
    name: str | None = Field(None, description="The served name (default: the bundle's name).")


class Removed(BaseModel):
    removed: str


def _responses(*codes: int) -> dict:
    extra = {
        403: "The server has no API token, so the admin endpoints are off",
        409: "A model of that name is served already, or it is the last one",
    }
    out = error_responses(*(c for c in codes if c not in extra))
    out.update({c: {"model": ErrorResponse, "description": extra[c]} for c in codes if c in extra})
    return out


def checked_path(given: str) -> Path:
    """The bundle folder named by an admin request (422 unless absolute and a bundle)."""
    path = Path(given)
    try:
        is_bundle = path.is_absolute() and (path / MANIFEST).is_file()
    except (OSError, ValueError):  # a name the file system refuses (NUL, too long)
        is_bundle = False
    if not path.is_absolute():
        raise ApiError(
            422, "invalid_path", f"path {given!r} is not absolute; give the bundle's full path"
        )
    if not is_bundle:
        raise ApiError(
            422,
            "invalid_path",
            f"path {given!r} is not a bundle folder on the server (no {MANIFEST} there); "
            "give the folder graft train wrote",
        )
    return path


def load_added(server, path: Path, name: str | None) -> list[ServedModel]:
    """The served models of one bundle (one per task), loaded as `graft serve` loads them."""
    config = server.config
    threads = config.threads or serving_threads()
    groups = groups_of(m.predictor for m in server.models.values()) if config.share_backbone else []
    models: list[ServedModel] = []
    try:
        for spec in expand([f"{name}={path}" if name else str(path)]):
            given, folder = parse_spec(spec)
            predictor = load_one(folder, config.backend, threads, groups)
            taken = given or predictor.manifest.name or path.name
            models.append(ServedModel(taken, predictor, config))
            if not NAME.match(taken):
                raise ApiError(
                    422,
                    "invalid_name",
                    f"'{taken}' cannot be a model name in a URL; use letters, digits, '.', '_' "
                    "and '-'",
                )
            if taken in server.models or [m.name for m in models].count(taken) > 1:
                raise ApiError(409, "name_taken", f"a model named '{taken}' is served already")
    except BaseException:
        for model in models:
            release(model.predictor)
        raise
    return models


def add_admin_routes(app: FastAPI, server, token: str | None) -> None:
    """The admin routes on `app` (403 for every call while the server has no token)."""
    lock = asyncio.Lock()

    def allowed() -> None:
        if token is None:
            raise ApiError(403, "admin_disabled", NO_TOKEN)

    @app.post(
        "/v1/admin/models",
        status_code=201,
        response_model=ModelList,
        responses=_responses(400, 401, 403, 409, 422),
        tags=["admin"],
    )
    async def add_model(request: AddModel):
        """Load a bundle and serve it (each task of a multi-task bundle), without a restart."""
        allowed()
        path = checked_path(request.path)
        async with lock:
            try:
                models = await asyncio.to_thread(load_added, server, path, request.name)
            except GraftError as exc:
                if isinstance(exc, ApiError):
                    raise
                raise ApiError(422, "invalid_bundle", f"bundle {path}: {exc}") from None
            try:
                for model in models:
                    model.start(on_batch=partial(server.on_batch, model.name))
                    await model.warm_up()
            except Exception as exc:
                for model in models:
                    await model.close()
                    release(model.predictor)
                raise ApiError(
                    422, "invalid_bundle", f"bundle {path} failed its warm-up ({exc})"
                ) from None
            for model in models:
                server.in_flight.setdefault(model.name, 0)
                server.models[model.name] = model
        return {"models": [m.describe() for m in models]}

    @app.delete(
        "/v1/admin/models/{name}",
        response_model=Removed,
        responses=_responses(400, 401, 403, 404, 409),
        tags=["admin"],
    )
    async def remove_model(name: str):
        """Stop serving a model: new requests get 404, queued ones are answered first."""
        allowed()
        async with lock:
            model = server.model(name)  # 404 with the served names
            if len(server.models) == 1:
                raise ApiError(
                    409, "last_model", f"'{name}' is the only model served; add another first"
                )
            del server.models[name]
            await model.close()
            release(model.predictor)
        return {"removed": name}
