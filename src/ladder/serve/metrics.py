"""Prometheus metrics of one server, in a registry of its own (two apps never share counts).

- ``ladder_requests_total{route, method, status}``
- ``ladder_request_seconds{route}`` (histogram)
- ``ladder_tokens_total{model, kind}`` with kind ``prompt`` or ``completion``
- ``ladder_batch_size`` (histogram of requests per ``generate`` call)
- ``ladder_generate_calls_total``
"""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter, Histogram, generate_latest
from prometheus_client.exposition import CONTENT_TYPE_LATEST

__all__ = ["CONTENT_TYPE_LATEST", "ServerMetrics"]

_LATENCY_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 120)
_BATCH_BUCKETS = (1, 2, 4, 8, 16, 32, 64)


class ServerMetrics:
    """The counters and histograms of one app, and their text exposition."""

    def __init__(self) -> None:
        self.registry = CollectorRegistry()
        self.requests = Counter(
            "ladder_requests",
            "HTTP requests answered.",
            ["route", "method", "status"],
            registry=self.registry,
        )
        self.latency = Histogram(
            "ladder_request_seconds",
            "Time to answer a request (to the last byte for streams).",
            ["route"],
            buckets=_LATENCY_BUCKETS,
            registry=self.registry,
        )
        self.tokens = Counter(
            "ladder_tokens", "Tokens processed.", ["model", "kind"], registry=self.registry
        )
        self.batch_size = Histogram(
            "ladder_batch_size",
            "Requests per generate call.",
            buckets=_BATCH_BUCKETS,
            registry=self.registry,
        )
        self.generate_calls = Counter(
            "ladder_generate_calls", "Calls into the model.", registry=self.registry
        )

    def observe_request(self, route: str, method: str, status: int, seconds: float) -> None:
        """Count one answered request."""
        self.requests.labels(route, method, str(status)).inc()
        self.latency.labels(route).observe(seconds)

    def observe_tokens(self, model: str, prompt: int, completion: int) -> None:
        """Add a request's token usage."""
        self.tokens.labels(model, "prompt").inc(prompt)
        self.tokens.labels(model, "completion").inc(completion)

    def observe_batch(self, size: int) -> None:
        """Count one generate call of ``size`` requests (called on the worker thread)."""
        self.generate_calls.inc()
        self.batch_size.observe(size)

    def exposition(self) -> bytes:
        """The registry in Prometheus text format."""
        return generate_latest(self.registry)
