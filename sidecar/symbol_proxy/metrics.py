"""Every Prometheus metric of the proxy, declared in one place.

Names follow Prometheus conventions: a ``symproxy_`` prefix, base units in the name, ``_total`` on
counters. Labels have bounded values only: protocol, result, source *type*, status class. Never a
path, an id or a user-typed source id (they would explode cardinality and can carry secrets).
A ``Metrics`` object is built per registry so tests get a fresh ``CollectorRegistry``.
"""

from __future__ import annotations

import os
from typing import Literal

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, generate_latest

__all__ = ["MULTIPROCESS_ENV", "PROTOCOLS", "REQUEST_RESULTS", "UPSTREAM_RESULTS", "Metrics", "exposition"]

PROTOCOLS = ("symsrv", "unified", "debuginfod")
REQUEST_RESULTS = ("hit", "miss", "negative_hit", "not_found", "error", "invalid")
UPSTREAM_RESULTS = ("ok", "not_found", "denied", "timeout", "error", "malformed", "breaker_open")
SOURCE_TYPES = ("filesystem", "http", "s3", "gcs", "sentry")

_LATENCY_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0)
_BYTES_BUCKETS = tuple(float(4**i * 1024) for i in range(0, 13))  # 1 KiB .. 16 GiB
_GAUGE_MODE: Literal["livemostrecent"] = "livemostrecent"
"""With ``--workers``, each gauge shows the value last set by a live worker (the owner sets them
all; followers only what every worker knows alike, such as the configuration's). Ignored otherwise."""
MULTIPROCESS_ENV = "PROMETHEUS_MULTIPROC_DIR"
"""Set by ``--workers`` for every worker, before ``prometheus_client`` is imported: each process
writes its values to files there, and ``/metrics`` (always the owner) reports their sum."""


def exposition(registry: CollectorRegistry) -> bytes:
    """The text ``/metrics`` answers: ``registry``'s metrics, or with ``--workers`` every worker's."""
    directory = os.environ.get(MULTIPROCESS_ENV)
    if not directory:
        return generate_latest(registry)
    from prometheus_client import multiprocess

    combined = CollectorRegistry()
    multiprocess.MultiProcessCollector(combined, path=directory)  # type: ignore[no-untyped-call]
    return generate_latest(combined)


class Metrics:
    def __init__(self, registry: CollectorRegistry) -> None:
        self.registry = registry
        self.requests = Counter(
            "symproxy_requests_total",
            "Client lookups by protocol and result (hit, miss, negative_hit, not_found, error, invalid).",
            ["protocol", "result"],
            registry=registry,
        )
        self.request_duration = Histogram(
            "symproxy_request_duration_seconds",
            "Time from request to response headers, by protocol.",
            ["protocol"],
            buckets=_LATENCY_BUCKETS,
            registry=registry,
        )
        self.upstream_requests = Counter(
            "symproxy_upstream_requests_total",
            "Requests to sources by source type and result.",
            ["source_type", "result"],
            registry=registry,
        )
        self.upstream_latency = Histogram(
            "symproxy_upstream_latency_seconds",
            "Time until a source answered (headers or error), by source type.",
            ["source_type"],
            buckets=_LATENCY_BUCKETS,
            registry=registry,
        )
        self.upstream_bytes = Histogram(
            "symproxy_upstream_response_bytes",
            "Size of files downloaded from sources, by source type.",
            ["source_type"],
            buckets=_BYTES_BUCKETS,
            registry=registry,
        )
        self.cache_size = Gauge(
            "symproxy_cache_size_bytes",
            "Bytes held by the disk cache.",
            registry=registry,
            multiprocess_mode=_GAUGE_MODE,
        )
        self.cache_entries = Gauge(
            "symproxy_cache_entries",
            "Files held by the disk cache.",
            registry=registry,
            multiprocess_mode=_GAUGE_MODE,
        )
        self.cache_max_size = Gauge(
            "symproxy_cache_max_size_bytes",
            "The configured cap of the disk cache.",
            registry=registry,
            multiprocess_mode=_GAUGE_MODE,
        )
        self.evictions = Counter(
            "symproxy_cache_evictions_total", "Files evicted to stay under the cap.", registry=registry
        )
        self.coalesced = Counter(
            "symproxy_coalesced_waiters_total",
            "Requests that joined a download already in flight instead of starting one.",
            registry=registry,
        )
        self.in_flight = Gauge(
            "symproxy_downloads_in_flight",
            "Upstream downloads currently running.",
            registry=registry,
            multiprocess_mode=_GAUGE_MODE,
        )
        self.unanswerable = Counter(
            "symproxy_unanswerable_lookups_total",
            "Lookups that a source's layout cannot express at all, so the source was never asked (a "
            "debuginfod executable or a Breakpad .sym on a symstore/ssqp store: the request carries "
            "no file name, or the layout has no place for that file type), by layout and file type.",
            ["layout", "filetype"],
            registry=registry,
        )
        self.reloads = Counter(
            "symproxy_config_reloads_total", "Configuration reloads by result.", ["result"], registry=registry
        )
        self.config_sources = Gauge(
            "symproxy_config_sources",
            "Sources in the active configuration.",
            registry=registry,
            multiprocess_mode=_GAUGE_MODE,
        )
        self.sources_unavailable = Gauge(
            "symproxy_config_sources_unavailable",
            "Configured sources that cannot work (a filesystem source's directory is missing).",
            registry=registry,
            multiprocess_mode=_GAUGE_MODE,
        )
        self.downloads_cancelled = Counter(
            "symproxy_downloads_cancelled_total",
            "Downloads cancelled because no client waited for them any more.",
            registry=registry,
        )
        self.config_loaded = Gauge(
            "symproxy_config_last_reload_timestamp_seconds",
            "When the active configuration was loaded.",
            registry=registry,
            multiprocess_mode=_GAUGE_MODE,
        )
        self.lean_answers = Counter(
            "symproxy_lean_path_answers_total",
            "Requests answered on the lean path (hits, remembered 404s, health checks from memory).",
            registry=registry,
        )
        self.lean_handovers = Counter(
            "symproxy_lean_path_handovers_total",
            "Connections handed to the full request path (a request the lean path does not answer); "
            "that request and every later one on the connection take the full path.",
            registry=registry,
        )
        # Pre-create the known series so they exist at zero from the start.
        # The request path looks children up in plain dicts: ``labels()`` costs a lock and a hash
        # of the label tuple on every call.
        self._requests = {(p, r): self.requests.labels(p, r) for p in PROTOCOLS for r in REQUEST_RESULTS}
        self._durations = {p: self.request_duration.labels(p) for p in PROTOCOLS}
        for result in ("success", "failure"):
            self.reloads.labels(result)

    def count_request(self, protocol: str, result: str) -> None:
        self._requests[protocol, result].inc()

    def observe_request(self, protocol: str, seconds: float) -> None:
        self._durations[protocol].observe(seconds)
