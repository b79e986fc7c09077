"""kopf handlers: only decorators, the wiring of settings, and calls into the reconciler.

All resource handlers are *event-watching* handlers (``@kopf.on.event``): they note the event and
mark the namespace dirty; ``reconciling.Reconciler`` does the work. Such handlers keep no handler
progress and no diff-base, and add no finalizers, so kopf never writes to a SymbolSource or a Secret
on its own. The persistence settings below still name annotations with our prefix rather than
``status``, so that a change-handler added later keeps its bookkeeping out of the user-facing
status (kopf ≥ 1.44 defaults to annotations as well).

Run it with ``symbol-operator run`` (``cli.py``), or with kopf's CLI for tests:
``kopf run --standalone --namespace NS -m symbol_operator.handlers``.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Mapping
from typing import Any

import kopf
from prometheus_client import CollectorRegistry

from symbol_operator import kubeapi
from symbol_operator.metrics import Metrics, MetricsServer
from symbol_operator.models import GROUP, VERSION
from symbol_operator.options import OperatorOptions
from symbol_operator.reconciling import Reconciler

logger = logging.getLogger("symbol_operator")


def configure(settings: kopf.OperatorSettings) -> None:
    """kopf settings for this operator (also used by tests that build their own settings)."""
    settings.peering.standalone = True  # one replica; no peering objects, no peering RBAC
    settings.scanning.disabled = True  # no CRD/namespace listing: works with namespaced RBAC (kopf#1153)
    settings.posting.enabled = False  # kopf would post a "Handler succeeded" Event per Secret event
    settings.persistence.progress_storage = kopf.AnnotationsProgressStorage(prefix=GROUP)
    settings.persistence.diffbase_storage = kopf.AnnotationsDiffBaseStorage(
        prefix=GROUP, key="last-handled-configuration"
    )
    settings.persistence.finalizer = f"{GROUP}/finalizer"
    settings.watching.server_timeout = 300  # re-list every few minutes at most; bookmarks cover the rest
    settings.networking.request_timeout = 60


def _reconciler(memo: Any) -> Reconciler:
    reconciler: Reconciler = memo.reconciler
    return reconciler


@kopf.on.login()
def login(**_: Any) -> kopf.ConnectionInfo:
    """kopf's watches log in with the credentials ``kubeapi`` uses (ServiceAccount, else kubeconfig)."""
    found = kubeapi.connection()
    return kopf.ConnectionInfo(
        server=found.server,
        ca_path=found.ca_path,
        insecure=found.insecure,
        scheme=found.scheme,
        token=found.token,
        certificate_path=found.certificate_path,
        private_key_path=found.private_key_path,
    )


@kopf.on.startup()
async def startup(settings: kopf.OperatorSettings, memo: kopf.Memo, **_: Any) -> None:
    configure(settings)
    options = memo.get("options")
    if not isinstance(options, OperatorOptions):
        options = OperatorOptions.from_env(os.environ)
    metrics = Metrics(CollectorRegistry())
    server = None
    if options.metrics_port is not None:
        server = MetricsServer(metrics.registry, options.metrics_host, options.metrics_port)
        await server.start()
        logger.info("serving metrics on %s:%d/metrics", options.metrics_host, server.port)
    memo.options = options
    memo.metrics = metrics
    memo.metrics_server = server
    memo.api = kubeapi.KubeApi()
    memo.reconciler = Reconciler(memo.api, metrics, options)


@kopf.on.cleanup()
async def cleanup(memo: kopf.Memo, **_: Any) -> None:
    reconciler = memo.get("reconciler")
    if reconciler is not None:
        await reconciler.stop()
    if memo.get("api") is not None:
        await memo.api.close()
    if memo.get("metrics_server") is not None:
        await memo.metrics_server.stop()


@kopf.on.probe(id="reconciles")
async def probe(memo: kopf.Memo, **_: Any) -> int:
    """Reported by the liveness endpoint (``--liveness``): completed reconcile passes."""
    reconciler = memo.get("reconciler")
    return reconciler.passes if reconciler is not None else 0


# The handlers are coroutines on purpose: kopf runs plain functions in a thread pool, and the
# reconciler's triggers must run in the operator's event loop.


@kopf.on.event(GROUP, VERSION, "symbolsources")
async def source_event(event: Mapping[str, Any], memo: kopf.Memo, **_: Any) -> None:
    _reconciler(memo).on_source_event(event.get("type"), event["object"])


def _secret_matters(*, name: str, namespace: str | None, labels: kopf.Labels, memo: Any, **_: Any) -> bool:
    reconciler = memo.get("reconciler")
    return reconciler is not None and reconciler.wants_secret(namespace or "", name, labels)


@kopf.on.event("", "v1", "secrets", when=_secret_matters)
async def secret_event(event: Mapping[str, Any], memo: kopf.Memo, **_: Any) -> None:
    _reconciler(memo).on_secret_event(event.get("type"), event["object"])
