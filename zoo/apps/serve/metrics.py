"""The server's Prometheus metrics, in a registry of its own (two apps in one process keep separate counts):
requests by model and status, items by model and modality, batch sizes, queue depth, request latency and errors
by type."""

from __future__ import annotations

from collections.abc import Callable

#: Latency buckets in seconds: a short text embeds in milliseconds, a batch of images in seconds.
LATENCY_BUCKETS = (0.002, 0.005, 0.01, 0.02, 0.05, 0.1, 0.2, 0.5, 1.0, 2.0, 5.0, 10.0, 30.0)
BATCH_BUCKETS = (1, 2, 4, 8, 16, 32, 64, 128, 256, 512)


class Metrics:
    def __init__(self, queue_depths: Callable[[], dict[str, int]]):
        from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram

        self.registry = CollectorRegistry()
        self.requests = Counter("zoo_requests", "Embedding requests answered", ["model", "status"],
                                registry=self.registry)
        self.items = Counter("zoo_items", "Items embedded", ["model", "modality"], registry=self.registry)
        self.batch_items = Histogram("zoo_batch_items", "Items per embed call of the batcher", ["model"],
                                     buckets=BATCH_BUCKETS, registry=self.registry)
        self.batch_requests = Histogram("zoo_batch_requests", "Requests per embed call of the batcher", ["model"],
                                        buckets=BATCH_BUCKETS, registry=self.registry)
        self.latency = Histogram("zoo_request_latency_seconds", "Time from request to response", ["model"],
                                 buckets=LATENCY_BUCKETS, registry=self.registry)
        self.errors = Counter("zoo_errors", "Requests answered with an error, by error type", ["type"],
                              registry=self.registry)
        depth = Gauge("zoo_queue_items", "Items waiting for their model", ["model"], registry=self.registry)
        self._depth, self._queue_depths = depth, queue_depths

    def batch(self, model: str, jobs: int, items: int) -> None:
        self.batch_items.labels(model).observe(items)
        self.batch_requests.labels(model).observe(jobs)

    def exposition(self) -> tuple[bytes, str]:
        """The metrics in Prometheus' text format, and its content type."""
        from prometheus_client import CONTENT_TYPE_LATEST, generate_latest

        for model, depth in self._queue_depths().items():
            self._depth.labels(model).set(depth)
        return generate_latest(self.registry), CONTENT_TYPE_LATEST
