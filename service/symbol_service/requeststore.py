"""Where SymbolRequests are kept: the ``RequestStore`` protocol, and a development store.

In the product every request is a ``SymbolRequest`` custom resource (``crds/``), with
``resourceVersion`` as the ``storageETag``, so ``kubectl`` and the REST API are two views of one
object and several service replicas share it. That implementation belongs with the operator's
Kubernetes client and is **not built yet**. ``MemoryRequestStore`` below is for development and
tests only: it lives in one process, forgets everything on exit, and cannot be shared by replicas.
It is never the product's persistence.

The protocol speaks the API's vocabulary: it raises ``ServiceError`` with the Azure ``typeKey``
(``RequestExistsException`` for a taken name, ``RequestUpdateConflictException`` for a stale
``storageETag``), so a Kubernetes store only has to map its 409s onto them.
"""

from __future__ import annotations

import asyncio
import dataclasses
import datetime
import secrets
from typing import Protocol

from symbol_service import errors
from symbol_service.wire import RequestStatus

__all__ = ["MemoryRequestStore", "RequestRecord", "RequestStore", "new_request_id"]


def new_request_id() -> str:
    """64 lower-case hex characters, like every request id Azure hands out."""
    return secrets.token_hex(32)


@dataclasses.dataclass(frozen=True, slots=True)
class RequestRecord:
    """One symbol request, as the API and the operator see it (the ``SymbolRequest`` spec+status)."""

    id: str
    name: str
    description: str | None
    expiration_date: datetime.datetime
    status: RequestStatus
    created_by: str
    created_date: datetime.datetime
    etag: str = ""
    """The store's version of the record (``resourceVersion`` in Kubernetes); set by the store."""
    size: int = 0
    entry_count: int = 0
    domain_id: str = "0"
    sealed_segments: int | None = None
    """How many manifest segments belong to the sealed request, fixed by the seal's second step;
    a segment written after that lost a race with the seal and is ignored (its batch got 403).
    ``None`` while the request is open, or while a seal is under way."""
    sealed_date: datetime.datetime | None = None
    """When the seal's second step finished: the operator measures seal-to-publish from it."""
    store: str | None = None
    """The id of the store the request is written to (``spec.store``), fixed at creation by the
    request store that knows it (``KubeRequestStore``); ``None`` where there is only one."""


class RequestStore(Protocol):
    async def create(self, record: RequestRecord) -> RequestRecord:
        """Store a new record (its ``etag`` set); ``RequestExistsException`` if the name is taken."""
        ...

    async def get(self, request_id: str) -> RequestRecord | None: ...

    async def find(self, name: str) -> RequestRecord | None:
        """The request of that name (names compare case-insensitively), or ``None``."""
        ...

    async def list(self) -> list[RequestRecord]: ...

    async def replace(self, record: RequestRecord) -> RequestRecord:
        """Store ``record`` if ``record.etag`` is still current, else ``RequestUpdateConflictException``."""
        ...

    async def delete(self, request_id: str) -> None:
        """Forget the record; absent is not an error."""
        ...


class MemoryRequestStore:
    """DEVELOPMENT AND TEST ONLY: one process's dictionary (see the module docstring)."""

    def __init__(self) -> None:
        self._records: dict[str, RequestRecord] = {}
        self._version = 0
        self._lock = asyncio.Lock()

    def _stamp(self, record: RequestRecord) -> RequestRecord:
        self._version += 1
        return dataclasses.replace(record, etag=f'W/"{self._version}"')

    async def create(self, record: RequestRecord) -> RequestRecord:
        async with self._lock:
            if any(r.name.lower() == record.name.lower() for r in self._records.values()):
                raise errors.ServiceError(
                    "RequestExistsException", f"Request '{record.name}' already exists."
                )
            stored = self._stamp(record)
            self._records[record.id] = stored
            return stored

    async def get(self, request_id: str) -> RequestRecord | None:
        return self._records.get(request_id.lower())

    async def find(self, name: str) -> RequestRecord | None:
        return next((r for r in self._records.values() if r.name.lower() == name.lower()), None)

    async def list(self) -> list[RequestRecord]:
        return sorted(self._records.values(), key=lambda r: (r.created_date, r.id))

    async def replace(self, record: RequestRecord) -> RequestRecord:
        async with self._lock:
            current = self._records.get(record.id)
            if current is None:
                raise errors.ServiceError(
                    "RequestNotFoundException", f"Request '{record.id}' does not exist."
                )
            if current.etag != record.etag:
                raise errors.ServiceError(
                    "RequestUpdateConflictException",
                    f"Request '{record.name}' was changed by someone else; read it again and retry.",
                )
            stored = self._stamp(record)
            self._records[record.id] = stored
            return stored

    async def delete(self, request_id: str) -> None:
        async with self._lock:
            self._records.pop(request_id, None)
