"""The product's ``RequestStore``: every request is a ``SymbolRequest`` custom resource.

``kubectl get symbolrequests`` and the REST API are two views of one object, and several service
replicas share it. The Kubernetes calls go through the operator's client module
(:mod:`symbol_operator.kubeapi`, the only module that imports ``kubernetes`` and translates its
errors); this module maps those errors onto the Azure ``typeKey`` the API answers with.

**Where each field lives** (``crds/``, generated from ``symbol_operator.crds``):

- ``metadata.name`` is ``req-`` + SHA-256 of the lower-cased request name, so the API server itself
  enforces name uniqueness (case-insensitively, as Azure does): two creates of one name race on one
  object name, and the loser's 409 becomes ``RequestExistsException``.
- ``spec``: the request name, ``description``, ``expirationTime`` (Azure's ``expirationDate``),
  ``sealed``, and the identity fixed at creation — ``requestId``, ``createdBy``, ``createdDate``,
  ``domainId`` and ``store`` (the id of the publish store the service writes the request's blobs and
  manifest to, so the operator can refuse a request of another store) — immutable by CEL rule.
  Identity is in the spec, not the status, because a create cannot write the status subresource:
  one POST makes a complete request or none.
- ``status`` (subresource): ``requestStatus`` (Created / Sealed / UnavailableReadOnly), ``size``,
  ``debugEntries``, ``sealedSegments`` and a copy of ``requestId`` for ``kubectl``; the operator adds
  its ``conditions``.
- ``metadata.resourceVersion`` is the ``storageETag``. A label carries the first 63 characters of the
  request id (a label value's limit) so a lookup by id is one list call filtered by the server.

**Replace** reads the object, checks the etag, and sends a JSON merge patch carrying the etag as
``metadata.resourceVersion``, which the API server treats as a precondition (409 → our
``RequestUpdateConflictException``). Spec and status are separate subresources, so a change that
touches both is two patches, the second conditional on the first's version: only the seal does
(``spec.sealed``, then ``status.requestStatus``). If another writer slips between the two, the caller
gets the 409 with the spec already sealed, and the record reads as sealed (the spec decides); the
handler's "seal again finishes an interrupted seal" covers it. A replace that changes nothing writes
nothing and keeps its etag (the API server does not bump a version for a no-op).
"""

from __future__ import annotations

import dataclasses
import datetime
import hashlib
import logging
from typing import Any

from symbol_operator import kubeapi
from symbol_operator.models import API_VERSION, GROUP
from symbol_service import errors
from symbol_service.requeststore import RequestRecord
from symbol_service.wire import RequestStatus

__all__ = ["ID_LABEL", "KubeRequestStore", "object_name", "record_from_object"]

log = logging.getLogger(__name__)

ID_LABEL = f"{GROUP}/request-id"
MANAGED_BY = {"app.kubernetes.io/managed-by": "symbol-service"}
_STATUS_NAMES = {
    RequestStatus.CREATED: "Created",
    RequestStatus.SEALED: "Sealed",
    RequestStatus.UNAVAILABLE: "UnavailableReadOnly",
}


def object_name(request_name: str) -> str:
    """The SymbolRequest's metadata.name: one per request name, whatever its case or length."""
    return "req-" + hashlib.sha256(request_name.lower().encode("utf-8")).hexdigest()


def _time(value: datetime.datetime) -> str:
    return value.astimezone(datetime.UTC).isoformat().replace("+00:00", "Z")


def _parse_time(value: Any) -> datetime.datetime:
    parsed = datetime.datetime.fromisoformat(str(value))
    return parsed if parsed.tzinfo else parsed.replace(tzinfo=datetime.UTC)


def _spec(record: RequestRecord) -> dict[str, Any]:
    spec: dict[str, Any] = {
        "name": record.name,
        "description": record.description,
        "expirationTime": _time(record.expiration_date),
        "sealed": record.status == RequestStatus.SEALED,
        "requestId": record.id,
        "createdBy": record.created_by,
        "createdDate": _time(record.created_date),
        "domainId": record.domain_id,
        "store": record.store,
    }
    return spec


def _status(record: RequestRecord) -> dict[str, Any]:
    status = {
        "requestStatus": _STATUS_NAMES[record.status],
        "requestId": record.id,
        "size": record.size,
        "debugEntries": record.entry_count,
        "sealedSegments": record.sealed_segments,
    }
    if record.sealed_date is not None:
        status["sealedTime"] = _time(record.sealed_date)
    return status


def record_from_object(body: dict[str, Any]) -> RequestRecord | None:
    """The record of a SymbolRequest, or ``None`` for one the service did not create (no requestId)."""
    spec = body.get("spec") or {}
    status = body.get("status") or {}
    metadata = body.get("metadata") or {}
    if not spec.get("requestId"):
        return None
    state = RequestStatus.SEALED if spec.get("sealed") else RequestStatus.CREATED
    if status.get("requestStatus") == "UnavailableReadOnly" or metadata.get("deletionTimestamp"):
        state = RequestStatus.UNAVAILABLE
    segments = status.get("sealedSegments")
    return RequestRecord(
        id=str(spec["requestId"]),
        name=str(spec["name"]),
        description=spec.get("description"),
        expiration_date=_parse_time(spec["expirationTime"]),
        status=state,
        created_by=str(spec.get("createdBy") or ""),
        created_date=_parse_time(spec.get("createdDate") or metadata.get("creationTimestamp")),
        etag=str(metadata.get("resourceVersion") or ""),
        size=int(status.get("size") or 0),
        entry_count=int(status.get("debugEntries") or 0),
        domain_id=str(spec.get("domainId") or "0"),
        sealed_segments=None if segments is None else int(segments),
        sealed_date=_parse_time(status["sealedTime"]) if status.get("sealedTime") else None,
        store=str(spec["store"]) if spec.get("store") else None,
    )


def _unavailable(exc: kubeapi.ApiError) -> errors.ServiceError:
    """The API's answer when the Kubernetes API fails us (the cause goes to the log, not the client)."""
    log.warning("SymbolRequest store: %s", exc)
    if isinstance(exc, kubeapi.Unavailable):
        return errors.ServiceError(
            "ServiceUnavailableException", "The request store is unavailable; retry later."
        )
    return errors.ServiceError("InternalServerErrorException", "The request store refused the operation.")


class KubeRequestStore:
    """SymbolRequest resources of one namespace as the service's ``RequestStore``; the requests it
    creates record ``store`` (the publish store's id) as ``spec.store``."""

    def __init__(self, api: kubeapi.KubeApi, namespace: str, *, store: str | None = None) -> None:
        self.api = api
        self.namespace = namespace
        self.store = store

    async def create(self, record: RequestRecord) -> RequestRecord:
        if self.store is not None:
            record = dataclasses.replace(record, store=self.store)
        body = {
            "apiVersion": API_VERSION,
            "kind": "SymbolRequest",
            "metadata": {
                "name": object_name(record.name),
                "labels": {**MANAGED_BY, ID_LABEL: record.id[:63]},
            },
            "spec": {key: value for key, value in _spec(record).items() if value is not None},
        }
        try:
            created = await self.api.create_request(self.namespace, body)
        except kubeapi.Conflict:
            raise errors.ServiceError(
                "RequestExistsException", f"Request '{record.name}' already exists."
            ) from None
        except kubeapi.ApiError as exc:
            raise _unavailable(exc) from None
        # The status subresource is written by a second call; the record is complete without it.
        patch = {
            "metadata": {"resourceVersion": created["metadata"]["resourceVersion"]},
            "status": _status(record),
        }
        try:
            created = await self.api.patch_request(
                self.namespace, created["metadata"]["name"], patch, status=True
            )
        except kubeapi.ApiError as exc:
            log.info("SymbolRequest %s: status not written yet: %s", created["metadata"]["name"], exc)
        stored = record_from_object(created)
        assert stored is not None
        return stored

    async def _object_by_id(self, request_id: str) -> dict[str, Any] | None:
        request_id = request_id.lower()
        try:
            found = await self.api.list_requests(self.namespace, f"{ID_LABEL}={request_id[:63]}")
        except kubeapi.ApiError as exc:
            raise _unavailable(exc) from None
        return next((o for o in found if (o.get("spec") or {}).get("requestId") == request_id), None)

    async def get(self, request_id: str) -> RequestRecord | None:
        if len(request_id) != 64:
            return None
        found = await self._object_by_id(request_id)
        return None if found is None else record_from_object(found)

    async def find(self, name: str) -> RequestRecord | None:
        try:
            found = await self.api.get_request(self.namespace, object_name(name))
        except kubeapi.ApiError as exc:
            raise _unavailable(exc) from None
        record = None if found is None else record_from_object(found)
        return record if record is not None and record.name.lower() == name.lower() else None

    async def list(self) -> list[RequestRecord]:
        try:
            found = await self.api.list_requests(self.namespace)
        except kubeapi.ApiError as exc:
            raise _unavailable(exc) from None
        records = [r for r in map(record_from_object, found) if r is not None]
        return sorted(records, key=lambda r: (r.created_date, r.id))

    async def replace(self, record: RequestRecord) -> RequestRecord:
        name = object_name(record.name)
        try:
            current = await self.api.get_request(self.namespace, name)
        except kubeapi.ApiError as exc:
            raise _unavailable(exc) from None
        not_found = errors.ServiceError("RequestNotFoundException", f"Request '{record.id}' does not exist.")
        stored = None if current is None else record_from_object(current)
        if current is None or stored is None or stored.id != record.id:
            raise not_found
        conflict = errors.ServiceError(
            "RequestUpdateConflictException",
            f"Request '{record.name}' was changed by someone else; read it again and retry.",
        )
        if stored.etag != record.etag:
            raise conflict
        version = record.etag
        try:
            old_spec, new_spec = _spec(stored), _spec(record)
            # A sealed request stays sealed in the spec (a CEL rule) when it becomes unavailable.
            new_spec["sealed"] = new_spec["sealed"] or bool((current.get("spec") or {}).get("sealed"))
            for status, old, new in ((False, old_spec, new_spec), (True, _status(stored), _status(record))):
                changed = {key: value for key, value in new.items() if old.get(key) != value}
                if not changed:
                    continue
                patch = {"metadata": {"resourceVersion": version}, ("status" if status else "spec"): changed}
                current = await self.api.patch_request(self.namespace, name, patch, status=status)
                version = current["metadata"]["resourceVersion"]
        except kubeapi.Conflict:
            raise conflict from None
        except kubeapi.NotFound:
            raise not_found from None
        except kubeapi.ApiError as exc:
            raise _unavailable(exc) from None
        result = record_from_object(current)
        assert result is not None
        return result

    async def delete(self, request_id: str) -> None:
        found = await self._object_by_id(request_id)
        if found is None:
            return
        metadata = found["metadata"]
        try:
            await self.api.delete_request(self.namespace, metadata["name"], metadata["uid"])
        except kubeapi.Conflict:
            return  # a newer object of that name: ours is gone already
        except kubeapi.ApiError as exc:
            raise _unavailable(exc) from None
