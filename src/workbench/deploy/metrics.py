"""Prometheus collectors of the inference service, in their own registry (one per app, so tests can
run several apps in one process and /metrics shows only the service's own series)."""

from __future__ import annotations

from prometheus_client import (
    CONTENT_TYPE_LATEST,  # noqa: F401  (re-exported for the service)
    CollectorRegistry,
    Counter,
    Gauge,
    Histogram,
    generate_latest,
)

# Seconds. Batch-1 CPU inference of these models takes ~0.1 ms, a batch of 4096 tens of ms; a Hailo-8
# call ~1 ms per window. Fine buckets at the bottom, so p99 at batch 1 is readable from the histogram.
LATENCY_BUCKETS = (0.00005, 0.0001, 0.0002, 0.0005, 0.001, 0.002, 0.005, 0.01, 0.02, 0.05, 0.1, 0.2, 0.5, 1.0, 2.0, 5.0)
STAGES = ("normalise", "npu", "host", "total")


class ServiceMetrics:
    """Requests, errors by kind, windows served and per-stage latency histograms."""

    def __init__(self, backend: str, run_id: str):
        self.registry = CollectorRegistry(auto_describe=True)
        self.requests = Counter(
            "edgeinfer_requests",
            "HTTP requests by endpoint and status code",
            ["endpoint", "status"],
            registry=self.registry,
        )
        self.errors = Counter(
            "edgeinfer_errors", "rejected or failed /infer requests by kind", ["kind"], registry=self.registry
        )
        self.windows = Counter("edgeinfer_windows", "windows inferred", ["backend"], registry=self.registry)
        self.latency = Histogram(
            "edgeinfer_latency_seconds",
            "time per /infer request in each stage (total: body read to response built)",
            ["stage", "backend"],
            buckets=LATENCY_BUCKETS,
            registry=self.registry,
        )
        self.batch = Histogram(
            "edgeinfer_batch_windows",
            "windows per /infer request",
            ["backend"],
            buckets=(1, 2, 4, 8, 16, 32, 64, 128, 256, 512, 1024, 2048, 4096),
            registry=self.registry,
        )
        info = Gauge(
            "edgeinfer_model_info", "the model being served (value 1)", ["backend", "run_id"], registry=self.registry
        )
        info.labels(backend=backend, run_id=run_id).set(1)
        self.backend = backend
        # children resolved once: label lookup costs more than the observation itself
        self._lat = {s: self.latency.labels(stage=s, backend=backend) for s in STAGES}
        self._win = self.windows.labels(backend=backend)
        self._batch = self.batch.labels(backend=backend)
        self._ok = self.requests.labels(endpoint="/infer", status="200")

    def observe_inference(self, n_windows: int, timings: dict[str, float], total: float) -> None:
        for stage, seconds in timings.items():
            self._lat[stage].observe(seconds)
        self._lat["total"].observe(total)
        self._win.inc(n_windows)
        self._batch.observe(n_windows)
        self._ok.inc()

    def request(self, endpoint: str, status: int) -> None:
        self.requests.labels(endpoint=endpoint, status=str(status)).inc()

    def error(self, kind: str) -> None:
        self.errors.labels(kind=kind).inc()

    def render(self) -> bytes:
        return generate_latest(self.registry)
