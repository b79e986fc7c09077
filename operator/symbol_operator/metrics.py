"""The operator's own Prometheus metrics, and the small aiohttp server that exposes them.

Every metric is declared here, on a registry the caller passes (a fresh one per operator run, so
several runs in one test process do not collide). Labels have bounded values: the kind of object,
an outcome from a fixed set, a Secret operation, and the namespace — bounded by the cluster, and the
unit the operator renders for.

=====================================================  =========  ==================================
name                                                   type       labels
=====================================================  =========  ==================================
``symbol_operator_reconciles_total``                   counter    kind (SymbolSource, ProxyConfig),
                                                                  outcome
``symbol_operator_sources_rendered``                   gauge      namespace
``symbol_operator_render_duration_seconds``            histogram  —
``symbol_operator_secret_writes_total``                counter    operation (create, update, delete)
``symbol_operator_triggers_total``                     counter    kind (SymbolSource, Secret)
``symbol_operator_request_seal_to_publish_seconds``    histogram  —
``symbol_operator_request_withdraw_seconds``           histogram  —
``symbol_operator_requests``                           gauge      phase (created, sealed,
                                                                  published, unavailable)
=====================================================  =========  ==================================

The SymbolRequest series move only with ``--publish-config`` (``lifecycle``): seal-to-publish runs
from the seal's second step (``status.sealedTime``, written by the service) to the files being in
the store and the publication announced; withdraw is the finalizer's sweep of an expired or deleted
request (its files and manifest), start to end; ``requests`` counts the SymbolRequests the operator
has seen, by phase.

Outcomes: for ``SymbolSource`` the ``Ready`` reasons (Rendered, SecretNotFound, SecretKeyMissing,
Invalid); for ``ProxyConfig`` (one rendered Secret per namespace) unchanged, written, deleted, error.
"""

from __future__ import annotations

from aiohttp import web
from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram
from prometheus_client.aiohttp import make_aiohttp_handler

from symbol_operator.models import Reason

__all__ = ["CONFIG_OUTCOMES", "REQUEST_PHASES", "Metrics", "MetricsServer"]

CONFIG_OUTCOMES = ("unchanged", "written", "deleted", "error")
REQUEST_PHASES = ("created", "sealed", "published", "unavailable")


class Metrics:
    def __init__(self, registry: CollectorRegistry) -> None:
        self.registry = registry
        self.reconciles = Counter(
            "symbol_operator_reconciles_total",
            "Reconciles by kind of object and outcome.",
            ["kind", "outcome"],
            registry=registry,
        )
        self.sources_rendered = Gauge(
            "symbol_operator_sources_rendered",
            "Sources in the rendered proxy configuration of a namespace.",
            ["namespace"],
            registry=registry,
        )
        self.render_duration = Histogram(
            "symbol_operator_render_duration_seconds",
            "Time to render and validate one namespace's proxy configuration.",
            buckets=(0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5),
            registry=registry,
        )
        self.secret_writes = Counter(
            "symbol_operator_secret_writes_total",
            "Writes of rendered proxy configuration Secrets.",
            ["operation"],
            registry=registry,
        )
        self.triggers = Counter(
            "symbol_operator_triggers_total",
            "Watch events that scheduled a namespace reconcile.",
            ["kind"],
            registry=registry,
        )
        self.request_seal_to_publish = Histogram(
            "symbol_operator_request_seal_to_publish_seconds",
            "Time from a SymbolRequest's seal to its files being published in the store.",
            buckets=(0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 120.0, 300.0, 900.0),
            registry=registry,
        )
        self.request_withdraw = Histogram(
            "symbol_operator_request_withdraw_seconds",
            "Time to withdraw an expired or deleted SymbolRequest's files and manifest.",
            buckets=(0.01, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 300.0),
            registry=registry,
        )
        self.requests = Gauge(
            "symbol_operator_requests", "SymbolRequests by lifecycle phase.", ["phase"], registry=registry
        )
        # Pre-create the known series so dashboards see zeros instead of gaps.
        for phase in REQUEST_PHASES:
            self.requests.labels(phase)
        for reason in Reason:
            self.reconciles.labels("SymbolSource", reason.value)
        for outcome in CONFIG_OUTCOMES:
            self.reconciles.labels("ProxyConfig", outcome)
        for operation in ("create", "update", "delete"):
            self.secret_writes.labels(operation)
        for kind in ("SymbolSource", "Secret"):
            self.triggers.labels(kind)


class MetricsServer:
    """``GET /metrics`` on its own port; started and stopped by the operator's startup/cleanup."""

    def __init__(self, registry: CollectorRegistry, host: str, port: int) -> None:
        app = web.Application()
        app.router.add_get("/metrics", make_aiohttp_handler(registry))
        self._runner = web.AppRunner(app, handle_signals=False, access_log=None)
        self._host = host
        self._port = port
        self.port = port

    async def start(self) -> None:
        await self._runner.setup()
        site = web.TCPSite(self._runner, self._host, self._port)
        await site.start()
        server = site._server
        sockets = getattr(server, "sockets", None) or []
        if sockets:
            self.port = int(sockets[0].getsockname()[1])

    async def stop(self) -> None:
        await self._runner.cleanup()
