"""The operator's part of a SymbolRequest's life: publish when sealed, withdraw at expiry and deletion.

Registered only when the operator is given the publish store (``symbol-operator run
--publish-config service.yaml``: the service's own configuration file, so both read one ``store``),
with :func:`register`. The rules (``docs/publishing.md``):

- **Sealed** (``spec.sealed`` and the seal's second step done, ``status.sealedSegments`` set): every
  created entry's blob is copied to its SymSrv key and the paths the proxy's layouts give it
  (:mod:`symbol_service.publication`), then the condition ``Published=True`` is written. Copies
  replace whole objects, so a publish cut short is simply done again.
- **Expired** (``expirationDate`` passed) or soft-deleted through REST (``UnavailableReadOnly``): the
  status says ``UnavailableReadOnly`` and the object is deleted, which hands over to the finalizer.
- **Deleted** (REST or ``kubectl``): kopf's finalizer on the object runs :func:`finalize`: the paths
  no other live sealed request provides are deleted (a sweep over their manifests, not a counter,
  so a repeat after a crash computes the same answer), then the request's manifest; only then the
  finalizer is removed and the object goes. Until then the service reports the request as being
  deleted.

- **Another store** (``spec.store`` names a store other than the one the operator was given, the
  id of the ``store`` in ``--publish-config``): refused. The condition ``Published=False`` with
  reason ``StoreMismatch`` and a Warning event say so, once; nothing is published, expired or
  withdrawn (its manifest and blobs are not in this store, and its paths may be another request's
  here). Deleting it lets the object go without touching the store. A request without
  ``spec.store`` (created before the field existed) belongs to the operator's store.
- **A publish the store refuses** (a backend error: the bucket is gone, access denied, the disk is
  full): the condition ``Published=False`` with reason ``PublishFailed`` and a Warning event carry
  the store's one-line error, once per distinct error; the timer tries again. No traceback: the
  line says everything.

Triggers: every watch event of a SymbolRequest (the seal's second step is a status write, which
kopf's change handlers would not see) and a timer (``interval`` seconds) that retries failures and
notices expiry. Publishing and withdrawing run one at a time (one lock), so a sweep never deletes a
path that a request being published at that moment provides.

Metrics (``symbol_operator.metrics``, when the operator's startup has made them; handlers find them
in kopf's memo): seal-to-publish latency, withdraw duration, and the requests by :func:`phase`.
"""

from __future__ import annotations

import asyncio
import datetime
import logging
import time
from collections.abc import Mapping
from typing import Any

import kopf

from symbol_operator import kubeapi
from symbol_operator.metrics import REQUEST_PHASES, Metrics
from symbol_operator.models import GROUP, PUBLICATION_ANNOTATION, VERSION
from symbol_proxy.backends.base import BackendError
from symbol_service.kuberequests import record_from_object
from symbol_service.publication import Publisher
from symbol_service.requeststore import RequestRecord
from symbol_service.wire import RequestStatus

__all__ = ["PUBLISHED", "PUBLISH_FAILED", "STORE_MISMATCH", "phase", "register"]

log = logging.getLogger(__name__)

PLURAL = "symbolrequests"
PUBLISHED = "Published"
STORE_MISMATCH = "StoreMismatch"
PUBLISH_FAILED = "PublishFailed"

STORE_ERRORS = (BackendError, OSError)
"""What a store raises when it cannot do a copy or a delete (each backend translates its library's
errors into :class:`BackendError`; the filesystem's are ``OSError``)."""


def _now() -> datetime.datetime:
    return datetime.datetime.now(datetime.UTC)


def _condition(status: bool, reason: str, message: str) -> dict[str, Any]:
    return {
        "type": PUBLISHED,
        "status": "True" if status else "False",
        "lastTransitionTime": _now().replace(microsecond=0).isoformat().replace("+00:00", "Z"),
        "reason": reason,
        "message": message,
    }


def _is_published(body: Mapping[str, Any]) -> bool:
    conditions = (body.get("status") or {}).get("conditions") or []
    return any(c.get("type") == PUBLISHED and c.get("status") == "True" for c in conditions)


def phase(body: Mapping[str, Any], now: datetime.datetime) -> str | None:
    """The request's phase for the metrics (``REQUEST_PHASES``); ``None`` for an object the service
    did not create."""
    record = record_from_object(dict(body))
    if record is None:
        return None
    # Being deleted (``deletionTimestamp``) reads as UNAVAILABLE, as the service reports it.
    if record.status == RequestStatus.UNAVAILABLE or record.expiration_date <= now:
        return "unavailable"
    if record.status == RequestStatus.SEALED:
        return "published" if _is_published(body) else "sealed"
    return "created"


class Lifecycle:
    def __init__(
        self,
        api: kubeapi.KubeApi,
        publisher: Publisher,
        *,
        source: str | None = None,
        store: str | None = None,
        metrics: Metrics | None = None,
    ) -> None:
        self.api = api
        self.publisher = publisher
        self.store = store
        """The id of the store ``publisher`` writes to; requests whose ``spec.store`` names another
        are refused. ``None`` checks nothing (tests that hand in a backend of their own)."""
        self.source = source
        """The SymbolSource (in the request's namespace) through which sidecars read the store: its
        publication annotation changes after each publish, so they drop their cached 404s."""
        self.lock = asyncio.Lock()
        self.metrics = metrics
        self.phases: dict[str, str] = {}
        """The phase of every SymbolRequest seen, by uid, for the ``requests`` gauge."""
        self.published: set[str] = set()
        """The uids this process has published (condition written). The watch event and the timer
        can both hold a snapshot from before the condition; the second to get the lock skips."""

    def count(self, body: Mapping[str, Any], *, gone: bool = False) -> None:
        """Note the request's phase (or that it is ``gone``) and update the gauge."""
        uid = str((body.get("metadata") or {}).get("uid") or "")
        found = None if gone else phase(body, _now())
        if found is None:
            self.phases.pop(uid, None)
        else:
            self.phases[uid] = found
        if self.metrics is not None:
            for name in REQUEST_PHASES:
                self.metrics.requests.labels(name).set(sum(1 for p in self.phases.values() if p == name))

    async def _announce(self, namespace: str, request_id: str) -> None:
        if self.source is None:
            return
        generation = f"{_now().strftime('%Y%m%dT%H%M%S.%fZ')}-{request_id[:12]}"
        patch = {"metadata": {"annotations": {PUBLICATION_ANNOTATION: generation}}}
        try:
            await self.api.patch_source(namespace, self.source, patch)
        except kubeapi.NotFound:
            log.warning(
                "publish source %s/%s does not exist: sidecars keep cached 404s", namespace, self.source
            )

    def _foreign(self, record: RequestRecord) -> str | None:
        """Why the request is not this operator's to publish or withdraw, or ``None``."""
        if self.store is None or record.store is None or record.store == self.store:
            return None
        return (
            f"the request was written to store {record.store!r}, this operator publishes into store "
            f"{self.store!r}: nothing is published or withdrawn"
        )

    async def _warn(self, body: Mapping[str, Any], reason: str, message: str) -> None:
        metadata = body.get("metadata") or {}
        namespace = str(metadata.get("namespace") or "")
        involved = {"name": str(metadata.get("name") or ""), "uid": str(metadata.get("uid") or "")}
        log.warning("SymbolRequest %s/%s: %s", namespace, involved["name"], message)
        try:
            await self.api.post_event(
                namespace, involved, type_="Warning", reason=reason, message=message, kind="SymbolRequest"
            )
        except kubeapi.ApiError as exc:
            log.info("SymbolRequest %s/%s: event not posted: %s", namespace, involved["name"], exc)

    async def _not_published(self, body: Mapping[str, Any], reason: str, message: str) -> None:
        """Say in the ``Published=False`` condition and a Warning event why the request is not
        published, once: not again while the condition already says exactly that."""
        conditions = (body.get("status") or {}).get("conditions") or []
        if any(
            c.get("type") == PUBLISHED and c.get("reason") == reason and c.get("message") == message
            for c in conditions
        ):
            return
        metadata = body.get("metadata") or {}
        condition = _condition(False, reason, message)
        await self.api.patch_request(
            str(metadata["namespace"]),
            str(metadata["name"]),
            {"status": {"conditions": [condition]}},
            status=True,
        )
        await self._warn(body, reason, message)

    async def reconcile(self, body: Mapping[str, Any]) -> None:
        """Publish a sealed request, retire an expired or soft-deleted one; refuse another store's."""
        record = record_from_object(dict(body))
        metadata = body.get("metadata") or {}
        if record is None or metadata.get("deletionTimestamp"):
            return
        foreign = self._foreign(record)
        if foreign is not None:
            await self._not_published(body, STORE_MISMATCH, foreign)
            return
        namespace, name = str(metadata["namespace"]), str(metadata["name"])
        if record.status == RequestStatus.UNAVAILABLE or record.expiration_date <= _now():
            await self.api.patch_request(
                namespace, name, {"status": {"requestStatus": "UnavailableReadOnly"}}, status=True
            )
            await self.api.delete_request(namespace, name, str(metadata["uid"]))
            log.info("SymbolRequest %s/%s expired or was deleted: withdrawing its files", namespace, name)
            return
        if record.status != RequestStatus.SEALED or record.sealed_segments is None or _is_published(body):
            return
        uid = str(metadata.get("uid") or "")
        async with self.lock:
            if uid in self.published:
                return
            try:
                written = await self.publisher.publish(record.id, record.sealed_segments)
            except STORE_ERRORS as exc:
                message = f"the store refused the publish (tried again): {exc}"
                await self._not_published(body, PUBLISH_FAILED, message)
                return
            await self._announce(namespace, record.id)
            message = f"{record.entry_count} entries published at {written} paths"
            condition = _condition(True, "Sealed", message)
            await self.api.patch_request(
                namespace,
                name,
                {"status": {"requestStatus": "Sealed", "conditions": [condition]}},
                status=True,
            )
            self.published.add(uid)
        log.info("SymbolRequest %s/%s published: %d paths", namespace, name, written)
        if self.metrics is not None and record.sealed_date is not None:
            latency = (_now() - record.sealed_date).total_seconds()
            self.metrics.request_seal_to_publish.observe(max(latency, 0.0))

    async def finalize(self, body: Mapping[str, Any]) -> None:
        """Withdraw its files (keeping what other live sealed requests provide), then its manifest."""
        record = record_from_object(dict(body))
        if record is None:
            return
        foreign = self._foreign(record)
        if foreign is not None:
            # Letting the object go: this operator can never withdraw it, and a finalizer nobody
            # removes would leave a `kubectl delete` hanging. Its files stay where they are.
            await self._warn(body, STORE_MISMATCH, f"deleted; {foreign}")
            return
        namespace = str((body.get("metadata") or {})["namespace"])
        started = time.monotonic()
        async with self.lock:
            others = [
                (other.id, other.sealed_segments)
                for other in await self._live_sealed(namespace)
                if other.id != record.id and other.sealed_segments is not None
            ]
            removed = await self.publisher.withdraw(record.id, record.sealed_segments, others)
            await self.publisher.forget(record.id)
            self.published.discard(str((body.get("metadata") or {}).get("uid") or ""))
        if self.metrics is not None:
            self.metrics.request_withdraw.observe(time.monotonic() - started)
        log.info("SymbolRequest %s withdrawn: %d paths removed", record.name, removed)

    async def _live_sealed(self, namespace: str) -> list[RequestRecord]:
        now = _now()
        records = [record_from_object(o) for o in await self.api.list_requests(namespace)]
        return [
            r
            for r in records
            if r is not None and r.status == RequestStatus.SEALED and r.expiration_date > now
        ]


def register(registry: kopf.OperatorRegistry, lifecycle: Lifecycle, *, interval: float = 30.0) -> None:
    """Add the SymbolRequest handlers to ``registry`` (kopf's default one in ``symbol-operator run``)."""

    def metrics(memo: kopf.Memo) -> None:
        """The operator's metrics, once its startup has made them (tests may run without them)."""
        found = memo.get("metrics")
        if isinstance(found, Metrics):
            lifecycle.metrics = found

    async def guarded(body: Mapping[str, Any]) -> None:
        try:
            await lifecycle.reconcile(body)
        except (kubeapi.ApiError, *STORE_ERRORS, ValueError) as exc:
            # The timer tries again; a traceback would say nothing more than this line.
            log.warning("SymbolRequest %s: %s (will retry)", (body.get("metadata") or {}).get("name"), exc)

    @kopf.on.event(GROUP, VERSION, PLURAL, registry=registry)
    async def request_event(event: Mapping[str, Any], memo: kopf.Memo, **_: Any) -> None:
        metrics(memo)
        gone = event.get("type") == "DELETED"
        lifecycle.count(event["object"], gone=gone)
        if not gone:
            await guarded(event["object"])

    @kopf.timer(GROUP, VERSION, PLURAL, interval=interval, registry=registry)
    async def request_timer(body: Mapping[str, Any], memo: kopf.Memo, **_: Any) -> None:
        metrics(memo)
        await guarded(body)

    @kopf.on.delete(GROUP, VERSION, PLURAL, registry=registry)
    async def request_deleted(body: Mapping[str, Any], memo: kopf.Memo, **_: Any) -> None:
        metrics(memo)
        try:
            await lifecycle.finalize(body)
        except (kubeapi.ApiError, *STORE_ERRORS, ValueError) as exc:
            raise kopf.TemporaryError(f"withdrawing the request's files: {exc}", delay=interval) from None

    @kopf.on.startup(registry=registry)
    def exit_timers_promptly(settings: kopf.OperatorSettings, **_: Any) -> None:
        """kopf keeps a deleted object's finalizer until the object's timer has exited. A timer whose
        call is under way when the deletion arrives (its own reconcile often made that deletion) is
        checked again only after ``background.cancellation_polling``, 60 s by default: an expiry
        would then take a minute longer than its work. Check every second instead (a patch of the
        object each time, only while a timer is exiting)."""
        settings.background.cancellation_polling = min(settings.background.cancellation_polling, 1.0)

    @kopf.on.cleanup(registry=registry)
    async def close_store(**_: Any) -> None:
        """Close the store's connections when the operator stops (an S3 client, the HTTP session a
        GCS backend opened for itself)."""
        await lifecycle.publisher.backend.aclose()
