"""Level-triggered reconciliation of one namespace: SymbolSources + Secrets → one rendered Secret.

The proxy configuration is a function of *all* SymbolSources of a namespace, so the unit of work is
the namespace, not the object. Watch events (delivered by kopf to ``handlers.py``) only mark a
namespace dirty; one worker task per namespace then waits a short debounce, lists the namespace's
SymbolSources and reads the Secrets they reference straight from the API server, renders, and
writes only what differs:

* the rendered Secret, when the sha256 of the document differs from the one stored (so an operator
  restart, or a status-only change, writes nothing);
* a SymbolSource's status, when its ``Ready`` condition, ``observedGeneration`` or facts differ;
* an Event, when a source's ``Ready`` status or reason changes.

Reading the current state from the API on every pass (instead of trusting the watch stream's order)
makes the result independent of how events were batched, reordered or missed, and means a partial
initial listing can never produce a partial configuration. Deleting the last SymbolSource deletes
the rendered Secret; there are no finalizers, so nothing waits on the operator to delete objects.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import datetime
import hashlib
import logging
import time
from collections.abc import Mapping
from typing import Any

from symbol_operator import kubeapi
from symbol_operator.metrics import Metrics
from symbol_operator.models import READY, SourceSpec, SymbolSource, parse_source
from symbol_operator.options import OperatorOptions
from symbol_operator.render import (
    RenderError,
    Rendering,
    desired_status,
    ready_condition,
    render,
    status_differs,
)

__all__ = ["CONFIG_HASH_ANNOTATION", "MANAGED_BY", "Reconciler"]

logger = logging.getLogger("symbol_operator")

MANAGED_BY = ("app.kubernetes.io/managed-by", "symbol-operator")
CONFIG_HASH_ANNOTATION = "symbols.symbol-operator.dev/config-hash"
SOURCES_ANNOTATION = "symbols.symbol-operator.dev/sources"


def _now() -> str:
    return datetime.datetime.now(datetime.UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def _decode(secret: Mapping[str, Any]) -> dict[str, bytes]:
    data = secret.get("data") or {}
    return {key: base64.b64decode(value) for key, value in data.items() if isinstance(value, str)}


def _refs(source: SymbolSource) -> frozenset[str]:
    if isinstance(source.spec, SourceSpec):
        return frozenset(ref.name for ref in source.spec.secret_refs())
    return frozenset()


class Reconciler:
    """Owns the per-namespace workers; ``stop()`` cancels them all."""

    def __init__(self, api: kubeapi.KubeApi, metrics: Metrics, options: OperatorOptions) -> None:
        self.api = api
        self.metrics = metrics
        self.options = options
        self._dirty: dict[str, asyncio.Event] = {}
        self._workers: dict[str, asyncio.Task[None]] = {}
        self._limit = asyncio.Semaphore(options.concurrency)
        self._source_refs: dict[tuple[str, str], frozenset[str]] = {}
        self._generations: dict[tuple[str, str], tuple[int, str | None]] = {}
        """What of each source is rendered: its generation, and its publication annotation."""
        self._written: dict[str, str] = {}
        self._busy = 0
        self.passes = 0
        """Completed reconcile passes, successful or not (for the liveness probe and tests)."""

    # ----------------------------------------------------------------------------------------------
    # Triggers, called from the kopf event handlers.

    def trigger(self, namespace: str) -> None:
        event = self._dirty.get(namespace)
        if event is None:
            event = self._dirty[namespace] = asyncio.Event()
            self._workers[namespace] = asyncio.create_task(
                self._worker(namespace), name=f"reconcile {namespace}"
            )
        event.set()

    def referenced(self, namespace: str, name: str) -> bool:
        return any(ns == namespace and name in refs for (ns, _), refs in self._source_refs.items())

    def on_source_event(self, event_type: str | None, body: Mapping[str, Any]) -> bool:
        """Note a SymbolSource event; trigger its namespace unless only its status (or an
        annotation other than the publication) changed."""
        source = parse_source(body)
        key = (source.namespace, source.name)
        if event_type == "DELETED":
            self._source_refs.pop(key, None)
            self._generations.pop(key, None)
            self.metrics.triggers.labels("SymbolSource").inc()
            self.trigger(source.namespace)
            return True
        self._source_refs[key] = _refs(source)
        seen = self._generations.get(key)
        self._generations[key] = (source.generation, source.publication)
        observed = source.status.get("observedGeneration")
        changed = seen != (source.generation, source.publication)
        if event_type in (None, "ADDED") or changed or observed != source.generation:
            self.metrics.triggers.labels("SymbolSource").inc()
            self.trigger(source.namespace)
            return True
        return False

    def wants_secret(self, namespace: str, name: str, labels: Mapping[str, str]) -> bool:
        """Is a Secret event worth a reconcile: a referenced Secret, or our own rendered one."""
        if name == self.options.config_secret and labels.get(MANAGED_BY[0]) == MANAGED_BY[1]:
            return True
        return self.referenced(namespace, name)

    def on_secret_event(self, event_type: str | None, body: Mapping[str, Any]) -> bool:
        metadata = body.get("metadata") or {}
        namespace, name = str(metadata.get("namespace", "")), str(metadata.get("name", ""))
        if (
            name == self.options.config_secret
            and event_type not in (None, "DELETED")
            and not self.referenced(namespace, name)
        ):
            # Our own write coming back through the watch: nothing to do when it is what we wrote.
            text = _decode(body).get(self.options.config_key, b"")
            if hashlib.sha256(text).hexdigest() == self._written.get(namespace):
                return False
        self.metrics.triggers.labels("Secret").inc()
        self.trigger(namespace)
        return True

    # ----------------------------------------------------------------------------------------------
    # Workers.

    @property
    def idle(self) -> bool:
        """No namespace is dirty or being reconciled."""
        return self._busy == 0 and not any(event.is_set() for event in self._dirty.values())

    async def _worker(self, namespace: str) -> None:
        event = self._dirty[namespace]
        failures = 0
        while True:
            await event.wait()
            self._busy += 1
            try:
                await asyncio.sleep(self.options.debounce)
                event.clear()
                async with self._limit:
                    await self.reconcile(namespace)
                failures = 0
            except asyncio.CancelledError:
                raise
            except Exception as exc:
                failures += 1
                delay = min(self.options.retry_delay * 2 ** (failures - 1), self.options.retry_max)
                self.metrics.reconciles.labels("ProxyConfig", "error").inc()
                if isinstance(exc, kubeapi.ApiError | RenderError):
                    logger.warning(
                        "reconciling namespace %s failed, retrying in %.0fs: %s", namespace, delay, exc
                    )
                else:
                    logger.exception("reconciling namespace %s failed, retrying in %.0fs", namespace, delay)
                await asyncio.sleep(delay)
                event.set()
            finally:
                self.passes += 1
                self._busy -= 1

    async def stop(self) -> None:
        workers = list(self._workers.values())
        for task in workers:
            task.cancel()
        for task in workers:
            with contextlib.suppress(asyncio.CancelledError):
                await task
        self._workers.clear()
        self._dirty.clear()

    # ----------------------------------------------------------------------------------------------
    # One pass.

    async def reconcile(self, namespace: str) -> None:
        bodies = await self.api.list_sources(namespace)
        sources = [
            parse_source(body) for body in bodies if not (body.get("metadata") or {}).get("deletionTimestamp")
        ]
        for key in [key for key in self._source_refs if key[0] == namespace]:
            del self._source_refs[key]
        for source in sources:
            self._source_refs[(namespace, source.name)] = _refs(source)

        if not sources:
            await self._remove_config(namespace)
            return

        secrets: dict[str, dict[str, bytes]] = {}
        for name in sorted(set().union(*(_refs(source) for source in sources))):
            secret = await self.api.get_secret(namespace, name)
            if secret is not None:
                secrets[name] = _decode(secret)

        started = time.perf_counter()
        rendering = render(namespace, sources, secrets, self.options.base)
        self.metrics.render_duration.observe(time.perf_counter() - started)

        await self._apply_config(namespace, rendering)
        self.metrics.sources_rendered.labels(namespace).set(len(rendering.rendered))
        for source in sources:
            await self._apply_status(source, rendering)

    async def _remove_config(self, namespace: str) -> None:
        current = await self.api.get_secret(namespace, self.options.config_secret)
        self._written.pop(namespace, None)
        with contextlib.suppress(KeyError):
            self.metrics.sources_rendered.remove(namespace)
        if current is None or not self._managed(current):
            self.metrics.reconciles.labels("ProxyConfig", "unchanged").inc()
            return
        with contextlib.suppress(kubeapi.NotFound):
            await self.api.delete_secret(
                namespace, self.options.config_secret, current["metadata"]["resourceVersion"]
            )
        self.metrics.secret_writes.labels("delete").inc()
        self.metrics.reconciles.labels("ProxyConfig", "deleted").inc()
        logger.info(
            "namespace %s has no SymbolSources: deleted Secret %s", namespace, self.options.config_secret
        )

    @staticmethod
    def _managed(secret: Mapping[str, Any]) -> bool:
        labels = (secret.get("metadata") or {}).get("labels") or {}
        return bool(labels.get(MANAGED_BY[0]) == MANAGED_BY[1])

    def _secret_metadata(self, rendering: Rendering) -> dict[str, Any]:
        return {
            "labels": {
                MANAGED_BY[0]: MANAGED_BY[1],
                "app.kubernetes.io/name": "symbol-proxy-config",
                "app.kubernetes.io/part-of": "symbol-operator",
            },
            "annotations": {
                CONFIG_HASH_ANNOTATION: f"sha256:{rendering.digest}",
                SOURCES_ANNOTATION: str(len(rendering.rendered)),
            },
        }

    async def _apply_config(self, namespace: str, rendering: Rendering) -> None:
        name, key = self.options.config_secret, self.options.config_key
        encoded = base64.b64encode(rendering.text.encode()).decode()
        metadata = self._secret_metadata(rendering)
        current = await self.api.get_secret(namespace, name)
        if current is None:
            body = {
                "apiVersion": "v1",
                "kind": "Secret",
                "type": "Opaque",
                "metadata": {"name": name, "namespace": namespace, **metadata},
                "data": {key: encoded},
            }
            await self.api.create_secret(namespace, body)
            operation = "create"
        else:
            if not self._managed(current):
                raise RenderError(
                    f"Secret {name!r} in namespace {namespace!r} exists but is not managed by "
                    f"symbol-operator (label {MANAGED_BY[0]}={MANAGED_BY[1]}); refusing to overwrite it"
                )
            stored = hashlib.sha256(_decode(current).get(key, b"")).hexdigest()
            annotations = (current.get("metadata") or {}).get("annotations") or {}
            if stored == rendering.digest and all(
                annotations.get(k) == v for k, v in metadata["annotations"].items()
            ):
                self._written[namespace] = rendering.digest
                self.metrics.reconciles.labels("ProxyConfig", "unchanged").inc()
                return
            patch = {
                "metadata": {**metadata, "resourceVersion": current["metadata"]["resourceVersion"]},
                "data": {key: encoded},
            }
            await self.api.patch_secret(namespace, name, patch)
            operation = "update"
        self._written[namespace] = rendering.digest
        self.metrics.secret_writes.labels(operation).inc()
        self.metrics.reconciles.labels("ProxyConfig", "written").inc()
        logger.info(
            "namespace %s: %s Secret %s with %d of %d sources (%s)",
            namespace,
            "created" if operation == "create" else "updated",
            name,
            len(rendering.rendered),
            len(rendering.outcomes),
            rendering.digest[:12],
        )

    async def _apply_status(self, source: SymbolSource, rendering: Rendering) -> None:
        outcome = rendering.outcomes[source.name]
        self.metrics.reconciles.labels("SymbolSource", outcome.reason.value).inc()
        desired = desired_status(source, outcome, self.options.config_secret, _now())
        if not status_differs(source.status, desired):
            return
        try:
            await self.api.patch_source_status(source.namespace, source.name, desired)
        except kubeapi.NotFound:
            return  # deleted since the listing; the DELETED event triggers another pass
        old = source.condition(READY)
        new = ready_condition(source, outcome)
        if old is None or (old.status, old.reason) != (new.status, new.reason):
            level = logging.INFO if outcome.ready else logging.WARNING
            logger.log(
                level,
                "SymbolSource %s/%s: Ready=%s %s %s",
                source.namespace,
                source.name,
                new.status,
                new.reason,
                new.message,
            )
            try:
                await self.api.post_event(
                    source.namespace,
                    {"name": source.name, "uid": source.uid},
                    type_="Normal" if outcome.ready else "Warning",
                    reason=outcome.reason.value,
                    message=outcome.message or outcome.reason.value,
                )
            except kubeapi.ApiError as exc:
                # Events are best effort (they expire after an hour; the condition is the record).
                logger.warning(
                    "posting an Event on SymbolSource %s/%s failed: %s", source.namespace, source.name, exc
                )
