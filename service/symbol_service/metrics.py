"""The service's Prometheus metrics. Labels are bounded: operation names and status codes only,
never a request name, a client key or anything from a header."""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter, Histogram

__all__ = ["Metrics"]


class Metrics:
    def __init__(self, registry: CollectorRegistry) -> None:
        self.registry = registry
        self.requests = Counter(
            "symservice_requests_total",
            "API calls by operation and HTTP status.",
            ["operation", "status"],
            registry=registry,
        )
        self.uploaded_bytes = Counter(
            "symservice_uploaded_bytes_total", "Bytes received in blob and block uploads.", registry=registry
        )
        self.blobs = Counter(
            "symservice_blobs_total",
            "Blob uploads by result: stored, deduplicated (already stored), rejected (hash mismatch).",
            ["result"],
            registry=registry,
        )
        self.entries = Counter(
            "symservice_debug_entries_total",
            "Debug entries answered by status (created, blobMissing) and skipped.",
            ["status"],
            registry=registry,
        )
        self.seals = Counter("symservice_requests_sealed_total", "Requests sealed.", registry=registry)
        self.seal_duration = Histogram(
            "symservice_seal_duration_seconds",
            "Time to seal a request in the service (count its manifest and record it); publishing the "
            "sealed entries is the operator's and measured there.",
            buckets=(0.01, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0),
            registry=registry,
        )
