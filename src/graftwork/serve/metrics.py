"""The server's metrics for `/metrics`, kept and written by `prometheus_client`.

Requests and errors by status, inputs and windows, requests in flight, queue depth, batch
sizes and latencies. Each `ServerMetrics` has its own `CollectorRegistry`, so several apps in
one process (the tests make many) count apart. Queue depth and requests in flight are read
from the server's live state when scraped, by a custom collector (a labelled gauge has no
callback in `prometheus_client`). The text is the Prometheus text format 0.0.4, with the
library's content type for it; labels come out in name order, as the library writes them.
The `_created` series the library adds to counters and histograms are switched off (for the
process: the library has one switch), so `/metrics` shows the series below and nothing else.

Left out: summaries, exemplars, OpenMetrics negotiation and process metrics.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator

from prometheus_client import CollectorRegistry, Counter, Histogram, disable_created_metrics
from prometheus_client.core import GaugeMetricFamily
from prometheus_client.exposition import choose_encoder
from prometheus_client.registry import Collector

LATENCY_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60)
SIZE_BUCKETS = (1, 2, 4, 8, 16, 32, 64, 128, 256, 512)

# What the library answers a client that asks for no particular format: the text format 0.0.4.
_ENCODE, CONTENT_TYPE = choose_encoder("")

disable_created_metrics()


class LiveGauges(Collector):
    """Gauges read when scraped: each `read()` returns {label values: value}."""

    def __init__(self, gauges: list[tuple[str, str, tuple[str, ...], Callable[[], dict]]]):
        self.gauges = gauges

    def describe(self) -> Iterator[GaugeMetricFamily]:
        for name, help, labels, _ in self.gauges:
            yield GaugeMetricFamily(name, help, labels=labels)

    def collect(self) -> Iterator[GaugeMetricFamily]:
        for name, help, labels, read in self.gauges:
            family = GaugeMetricFamily(name, help, labels=labels)
            for key, value in sorted(read().items()):
                family.add_metric([str(v) for v in key], value)
            yield family


class ServerMetrics:
    """Every metric `/metrics` shows; `queue` and `in_flight` read the live state."""

    def __init__(self, queue: Callable[[], dict], in_flight: Callable[[], dict]):
        self.registry = registry = CollectorRegistry()
        model = ("model",)
        self.requests = Counter(
            "graft_requests_total",
            "Valid predict requests for a served model, by status code.",
            ("model", "code"),
            registry=registry,
        )
        self.errors = Counter(
            "graft_errors_total",
            "Error responses on any endpoint, by status code.",
            ("code",),
            registry=registry,
        )
        self.inputs = Counter("graft_inputs_total", "Texts predicted.", model, registry=registry)
        self.windows = Counter(
            "graft_windows_total", "Windows run through the model.", model, registry=registry
        )
        registry.register(
            LiveGauges(
                [
                    ("graft_queue_depth", "Windows waiting for or in a model batch.", model, queue),
                    (
                        "graft_requests_in_flight",
                        "Predict requests being answered.",
                        model,
                        in_flight,
                    ),
                ]
            )
        )
        self.latency = Histogram(
            "graft_request_duration_seconds",
            "Predict request latency, from parsed request to answer.",
            model,
            buckets=LATENCY_BUCKETS,
            registry=registry,
        )
        self.batch_size = Histogram(
            "graft_batch_size",
            "Windows per model batch.",
            model,
            buckets=SIZE_BUCKETS,
            registry=registry,
        )
        self.batch_seconds = Histogram(
            "graft_batch_duration_seconds",
            "Model time per batch.",
            model,
            buckets=LATENCY_BUCKETS,
            registry=registry,
        )

    def request(self, name: str, code: int, inputs: int, seconds: float) -> None:
        """Count one answered request of model `name`: its status code, its inputs (when it
        succeeded) and its latency. The predict and the generate routes both count here."""
        self.requests.labels(name, str(code)).inc()
        if code == 200:
            self.inputs.labels(name).inc(inputs)
        self.latency.labels(name).observe(seconds)

    def render(self) -> str:
        return _ENCODE(self.registry).decode()
