"""The server's metrics, written in the Prometheus text format (version 0.0.4) by hand.

Counters, gauges and histograms with labels, enough for `/metrics`: requests and errors by
status, inputs and windows, requests in flight, queue depth, batch sizes and latencies. All
updates happen on the event loop's thread, so there are no locks. Written by hand because
the format is a few lines of text; `prometheus_client` would add a dependency for it.

Left out: summaries, exemplars, the OpenMetrics format and process metrics.
"""

from __future__ import annotations

import bisect
from collections.abc import Callable

LATENCY_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60)
SIZE_BUCKETS = (1, 2, 4, 8, 16, 32, 64, 128, 256, 512)


def _labels(names: tuple[str, ...], values: tuple, extra: str = "") -> str:
    pairs = [f'{n}="{_escape(str(v))}"' for n, v in zip(names, values, strict=True)]
    if extra:
        pairs.append(extra)
    return "{" + ",".join(pairs) + "}" if pairs else ""


def _escape(value: str) -> str:
    return value.replace("\\", "\\\\").replace("\n", "\\n").replace('"', '\\"')


def _number(value: float) -> str:
    return str(int(value)) if float(value).is_integer() else repr(float(value))


class Metric:
    kind = "untyped"

    def __init__(self, name: str, help: str, labels: tuple[str, ...] = ()):
        self.name, self.help, self.label_names = name, help, labels

    def header(self) -> list[str]:
        return [f"# HELP {self.name} {self.help}", f"# TYPE {self.name} {self.kind}"]


class Counter(Metric):
    kind = "counter"

    def __init__(self, name: str, help: str, labels: tuple[str, ...] = ()):
        super().__init__(name, help, labels)
        self.values: dict[tuple, float] = {}

    def inc(self, *labels, by: float = 1) -> None:
        self.values[labels] = self.values.get(labels, 0) + by

    def render(self) -> list[str]:
        return self.header() + [
            f"{self.name}{_labels(self.label_names, k)} {_number(v)}"
            for k, v in sorted(self.values.items())
        ]


class Gauge(Metric):
    """A gauge read when rendered: `read()` returns {label values: value}."""

    kind = "gauge"

    def __init__(self, name: str, help: str, labels: tuple[str, ...], read: Callable[[], dict]):
        super().__init__(name, help, labels)
        self.read = read

    def render(self) -> list[str]:
        return self.header() + [
            f"{self.name}{_labels(self.label_names, k)} {_number(v)}"
            for k, v in sorted(self.read().items())
        ]


class Histogram(Metric):
    kind = "histogram"

    def __init__(self, name: str, help: str, labels: tuple[str, ...], buckets: tuple):
        super().__init__(name, help, labels)
        self.buckets = tuple(buckets)
        self.series: dict[tuple, list] = {}  # labels → [bucket counts, sum, count]

    def observe(self, value: float, *labels) -> None:
        counts, total, count = self.series.get(labels) or [[0] * len(self.buckets), 0.0, 0]
        index = bisect.bisect_left(self.buckets, value)
        if index < len(self.buckets):
            counts[index] += 1
        self.series[labels] = [counts, total + value, count + 1]

    def render(self) -> list[str]:
        lines = self.header()
        for key, (counts, total, count) in sorted(self.series.items()):
            running = 0
            for bound, n in zip(self.buckets, counts, strict=True):
                running += n
                le = f'le="{_number(bound)}"'
                lines.append(f"{self.name}_bucket{_labels(self.label_names, key, le)} {running}")
            inf = _labels(self.label_names, key, 'le="+Inf"')
            lines.append(f"{self.name}_bucket{inf} {count}")
            lines.append(f"{self.name}_sum{_labels(self.label_names, key)} {_number(total)}")
            lines.append(f"{self.name}_count{_labels(self.label_names, key)} {count}")
        return lines


class ServerMetrics:
    """Every metric `/metrics` shows; `queue` and `in_flight` read the live state."""

    def __init__(self, queue: Callable[[], dict], in_flight: Callable[[], dict]):
        model = ("model",)
        self.requests = Counter(
            "graft_requests_total",
            "Valid predict requests for a served model, by status code.",
            ("model", "code"),
        )
        self.errors = Counter(
            "graft_errors_total", "Error responses on any endpoint, by status code.", ("code",)
        )
        self.inputs = Counter("graft_inputs_total", "Texts predicted.", model)
        self.windows = Counter("graft_windows_total", "Windows run through the model.", model)
        self.latency = Histogram(
            "graft_request_duration_seconds",
            "Predict request latency, from parsed request to answer.",
            model,
            LATENCY_BUCKETS,
        )
        self.batch_size = Histogram(
            "graft_batch_size", "Windows per model batch.", model, SIZE_BUCKETS
        )
        self.batch_seconds = Histogram(
            "graft_batch_duration_seconds", "Model time per batch.", model, LATENCY_BUCKETS
        )
        self.all: list[Metric] = [
            self.requests,
            self.errors,
            self.inputs,
            self.windows,
            Gauge("graft_queue_depth", "Windows waiting for or in a model batch.", model, queue),
            Gauge("graft_requests_in_flight", "Predict requests being answered.", model, in_flight),
            self.latency,
            self.batch_size,
            self.batch_seconds,
        ]

    def render(self) -> str:
        return "\n".join(line for metric in self.all for line in metric.render()) + "\n"
