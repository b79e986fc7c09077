"""The service's Prometheus metrics. Labels are bounded: operation names and status codes only,
never a request name, a client key or anything from a header."""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter

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
