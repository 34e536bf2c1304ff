"""`graft serve --ray`: the same app as `graft serve`, as a Ray Serve deployment.

    handle = deploy(specs, config, token, replicas=2)   # or autoscale=(1, 4); returns when up
    ...                                                  # http://HOST:PORT/v1/models/…/predict
    stop()                                               # drains every replica, then returns

Each replica is a Ray actor that loads the bundles itself (`load_models`) and builds the app
`graft serve` runs (`create_app`) inside it (`__serve_build_asgi_app__`: the app is made in the
replica, never pickled), so graftwork's dynamic batching, long-text windows, Host and token
checks (the Guard), limits, errors and `/metrics` all work per replica, unchanged. Ray Serve
runs the app's lifespan (batchers start, warm-up; on shutdown everything queued is answered).
Ray Serve's proxy (one per node by default, bound to --host:--port) takes the connections and
routes each request to a replica; a replica takes `--threads` CPUs of Ray's (1 by default) so
Ray places replicas where cores are free, and `--autoscale MIN,MAX` lets Ray add replicas
while each has more than one batch's worth (`--max-batch-size`) of requests in flight.

This is Ray Serve's own deployment API; graftwork adds only the glue: paths made absolute
(replicas do not share the driver's working folder), a banner, and the start and stop.

Left out: the header deadline and connection limit of `graft serve` (settings of its own
uvicorn; Ray's proxy runs its own), one `/metrics` for the whole deployment (each replica
counts its own requests, and the proxy picks the replica a scrape reaches; Ray exports its
own metrics per replica), moving bundles to the nodes (they must be at the same path on
every node, e.g. shared storage), and TLS.
"""

from __future__ import annotations

import logging
import os
import shlex
import signal
import threading

import ray
from ray import serve

from graftwork.bundle.tasks import expand, parse_spec
from graftwork.errors import GraftError
from graftwork.serve import listen
from graftwork.serve.app import create_app
from graftwork.serve.config import ServeConfig, make_config
from graftwork.serve.model import load_models

APP = "graftwork"  # the Ray Serve application's name
DEPLOYMENT = "graftwork"


@serve.deployment
@serve.ingress()
class Replica:
    """One replica: the bundles loaded, and `graft serve`'s app over them."""

    def __init__(self, specs: list[str], settings: dict, token: str | None):
        self.specs, self.settings, self.token = specs, settings, token
        self.models = []

    def __serve_build_asgi_app__(self):
        config = make_config(**self.settings)
        self.models = load_models(self.specs, config)
        return create_app(self.models, config, token=self.token)

    def served(self) -> list[dict]:
        """Each model's name, task and example input (for the banner)."""
        return [
            {"name": m.name, "task": m.task_name, "example": m.predictor.task.EXAMPLE}
            for m in self.models
        ]


def absolute_specs(specs: list[str]) -> list[str]:
    """`specs` with absolute paths (NAME= kept), after checking each names a bundle here."""
    out = []
    for spec in specs:
        name, path = parse_spec(spec)
        if not path.is_dir():
            raise GraftError(f"bundle {path} is not a folder; give a bundle folder to serve")
        full = str(path.resolve())
        out.append(f"{name}={full}" if name else full)
    expand(out)  # a broken multi-task manifest is refused here, not in every replica
    return out


def parse_autoscale(value: str) -> tuple[int, int]:
    """'MIN,MAX' → (MIN, MAX), 0 ≤ MIN ≤ MAX, MAX ≥ 1."""
    try:
        low, high = (int(part) for part in value.split(","))
    except ValueError:
        low = high = -1
    if not 0 <= low <= high or high < 1:
        raise GraftError(
            f"--autoscale {value!r}: give MIN,MAX replicas, e.g. --autoscale 1,4 "
            "(0 <= MIN <= MAX, MAX >= 1)"
        )
    return low, high


def application(
    specs: list[str],
    config: ServeConfig,
    token: str | None,
    replicas: int = 1,
    autoscale: tuple[int, int] | None = None,
):
    """The Ray Serve application: `Replica` with its scaling, CPUs and shutdown settings."""
    threads = config.threads or 1
    settings = {**config.model_dump(exclude={"token_file"}), "threads": threads}
    scaling: dict = {"num_replicas": replicas}
    if autoscale is not None:
        low, high = autoscale
        scaling = {
            "autoscaling_config": {
                "min_replicas": low,
                "initial_replicas": max(low, 1),
                "max_replicas": high,
                "target_ongoing_requests": config.max_batch_size,
            }
        }
    return Replica.options(
        name=DEPLOYMENT,
        ray_actor_options={"num_cpus": threads},
        # graftwork's own queue limit (--max-queue, 503) applies inside the replica
        max_ongoing_requests=max(config.max_connections, config.max_batch_size),
        graceful_shutdown_timeout_s=config.request_timeout + 5,
        **scaling,
    ).bind(absolute_specs(specs), settings, token)


def free_port(host: str) -> int:
    """A port free on `host` now (Ray Serve's proxy cannot be given port 0)."""
    sock = listen(host, 0)
    try:
        return sock.getsockname()[1]
    finally:
        sock.close()


def start_ray() -> bool:
    """Join the cluster $RAY_ADDRESS names, else start Ray on this machine alone (never a
    cluster that merely runs here); True when this process started it (and so stops it)."""
    if ray.is_initialized():
        return False
    where = os.environ.get("RAY_ADDRESS")
    try:
        ray.init(address=where or "local", include_dashboard=False, logging_level=logging.WARNING)
    except (ConnectionError, RuntimeError, ValueError) as exc:
        hint = f"is a Ray cluster running at RAY_ADDRESS={where}?" if where else "see Ray's log"
        raise GraftError(f"cannot start Ray ({exc}); {hint}") from None
    return not where


def deploy(
    specs: list[str],
    config: ServeConfig,
    token: str | None,
    replicas: int = 1,
    autoscale: tuple[int, int] | None = None,
) -> tuple[str, list[dict]]:
    """Run the application on Ray (already started, or started here) with its proxy on
    config.host:config.port; returns once every replica is up: (URL, the served models)."""
    app = application(specs, config, token, replicas, autoscale)
    start_ray()
    port = config.port or free_port(config.host)
    serve.start(http_options={"host": config.host, "port": port})
    try:
        handle = serve.run(app, name=APP, route_prefix="/")
    except RuntimeError as exc:
        raise GraftError(f"the Ray Serve deployment failed to start: {exc}") from None
    served = handle.served.remote().result()
    host = f"[{config.host}]" if ":" in config.host else config.host
    return f"http://{host}:{port}", served


def stop(started: bool) -> None:
    """Delete the application (each replica drains: queued requests are answered); stop
    Serve and Ray too when this process `started` them."""
    serve.delete(APP)
    if started:
        serve.shutdown()
        ray.shutdown()


def banner(url: str, served: list[dict], scale: str, hint: str | None) -> list[str]:
    """What `graft serve --ray` prints: where Ray Serve listens, the replicas, each model."""
    local = url.replace("0.0.0.0", "127.0.0.1").replace("[::]", "[::1]")
    lines = [f"graft serve --ray: {scale}, listening on {url} (Ray Serve's proxy)"]
    lines += [f"  {m['name']} ({m['task']}): {url}/v1/models/{m['name']}/predict" for m in served]
    auth = f' -H "Authorization: Bearer {hint}"' if hint else ""
    body = '{"inputs": ["' + served[0]["example"] + '"]}'
    lines.append(
        f"try: curl -s {local}/v1/models/{served[0]['name']}/predict{auth} "
        f"-H 'Content-Type: application/json' -d {shlex.quote(body)}"
    )
    lines.append("stop: Ctrl+C or SIGTERM (every replica drains first)")
    return lines


def run(
    specs: list[str],
    config: ServeConfig,
    token: str | None,
    replicas: int | None,
    autoscale: str | None,
    hint: str | None,
    say,
) -> None:
    """`graft serve --ray`: deploy, `say` the banner, serve until SIGINT/SIGTERM, then stop."""
    if replicas is not None and autoscale is not None:
        raise GraftError("give --replicas N or --autoscale MIN,MAX, not both")
    scaling = parse_autoscale(autoscale) if autoscale is not None else None
    count = replicas or 1
    started = start_ray()
    try:
        url, served = deploy(specs, config, token, count, scaling)
    except BaseException:
        if started:
            ray.shutdown()
        raise
    try:
        scale = f"{count} replica{'s' * (count > 1)}"
        if scaling is not None:
            scale = f"{scaling[0]} to {scaling[1]} replicas (autoscaling)"
        say(banner(url, served, scale, hint))
        wait_for_signal()
    finally:
        stop(started)


def wait_for_signal() -> None:
    """Block until SIGINT or SIGTERM."""
    done = threading.Event()
    for number in (signal.SIGINT, signal.SIGTERM):
        signal.signal(number, lambda *_: done.set())
    while not done.wait(1.0):
        pass
