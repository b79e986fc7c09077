"""Symbol requests: create, read, list, update (seal, expiry) and delete (spec §4, §11)."""

from __future__ import annotations

import asyncio
import dataclasses
import datetime
import time
from typing import Any

import pydantic
from aiohttp import web

from symbol_service import errors, handlers, routes, tokens, wire
from symbol_service.requeststore import RequestRecord, new_request_id

__all__ = ["RequestHandlers"]


def _query_number(query: dict[str, str], name: str, low: int, high: int) -> int | None:
    """A numeric query parameter in ``low..high``, with the typeKeys of spec §4.2 when it is not."""
    text = query.get(name)
    if text is None:
        return None
    try:
        value = int(text)
    except ValueError:
        raise errors.ServiceError("QueryParameterIsNotNumericException", f"{name} is not a number.") from None
    if value < 0:
        raise errors.ServiceError("QueryParameterMustNotBeNegativeException", f"{name} must not be negative.")
    if not low <= value <= high:
        raise errors.ServiceError(
            "RequestListInvalidQueryParameterValuesException", f"{name} must be between {low} and {high}."
        )
    return value


UPDATE_ATTEMPTS = 8
"""Read-modify-write rounds of an update without ``storageETag`` before its 409 reaches the client.
Right after a create the operator writes the object several times (its finalizer, kopf's
annotations, conditions), and a seal is two writes (spec, then status); three rounds lost that race
on a busy control plane, so there are more, each after a short growing pause."""

UPDATE_BACKOFF_SECONDS = 0.05
"""The pause before round ``n`` is ``n - 1`` times this (0.05 s, …, 0.35 s: 1.4 s in all at most)."""


class RequestHandlers(handlers.ApiBase):
    """The request operations."""

    async def _create_request(
        self, request: web.Request, op: routes.Operation, who: tokens.Principal | None
    ) -> web.StreamResponse:
        body = await self._model(request, wire.Request)
        name = (body.name or "").strip()
        if not name:
            raise errors.ServiceError("RequestNameRequiredException", "A request needs a name.")
        if len(name) > self.limits.max_name_length:
            raise errors.ServiceError(
                "InvalidEndpointParameterException",
                f"A request name may have at most {self.limits.max_name_length} characters.",
            )
        if body.is_chunked:
            raise errors.ServiceError(
                "DebugEntryNotChunkedException",
                "Chunk dedup (isChunked: true) is not supported; send isChunked: false.",
            )
        now = self.clock()
        expiration = self._future(body.expiration_date)
        record = await self.requests.create(
            RequestRecord(
                id=new_request_id(),
                name=name,
                description=body.description,
                expiration_date=expiration
                or now + datetime.timedelta(days=self.limits.default_expiration_days),
                status=wire.RequestStatus.CREATED,
                created_by=who.name if who else "",
                created_date=now,
                domain_id=body.domain_id or "0",
            )
        )
        return handlers.json_response(wire.dump(self._request_model(request, op, record)), status=201)

    async def _get_request(
        self, request: web.Request, op: routes.Operation, who: tokens.Principal | None
    ) -> web.StreamResponse:
        record = await self._record(op)
        return handlers.json_response(wire.dump(self._request_model(request, op, record)))

    async def _list_requests(
        self, request: web.Request, op: routes.Operation, who: tokens.Principal | None
    ) -> web.StreamResponse:
        """The live requests (§4.2), ordered by id, with ``requestStatus`` as a filter and paging by
        ``pageSize`` (1..10000) and ``continueFromRequestId`` (the requests after that id; whether Azure
        includes the id itself is not documented, so a client never sees one request twice)."""
        query = {name.lower(): value for name, value in request.query.items()}
        page_size = _query_number(query, "pagesize", 1, 10_000)
        status = query.get("requeststatus")
        wanted = None
        if status is not None:
            try:
                wanted = wire.Request.model_validate({"status": status}).status
            except pydantic.ValidationError:
                raise errors.ServiceError(
                    "RequestListInvalidQueryParameterValuesException",
                    f"requestStatus {status!r} is not a status.",
                ) from None
        after = (query.get("continuefromrequestid") or "").lower()
        records = sorted(
            (
                r
                for r in await self.requests.list()
                if r.status != wire.RequestStatus.UNAVAILABLE
                and not self._expired(r)
                and (wanted in (None, wire.RequestStatus.NONE) or r.status == wanted)
                and r.id > after
            ),
            key=lambda r: r.id,
        )
        if page_size is not None:
            records = records[:page_size]
        return handlers.json_response(wire.collection(self._request_model(request, op, r) for r in records))

    async def _update_request(
        self, request: web.Request, op: routes.Operation, who: tokens.Principal | None
    ) -> web.StreamResponse:
        body = await self._model(request, wire.Request)
        for attempt in range(1, UPDATE_ATTEMPTS + 1):
            try:
                record = await self._apply_update(op, body)
                break
            except errors.ServiceError as exc:
                # A client that sent no storageETag asked for "seal it", not "seal the version I
                # read": a write that slipped in (the operator's finalizer, say) is no reason to fail.
                retry = exc.type_key == "RequestUpdateConflictException" and body.storage_e_tag is None
                if not retry or attempt == UPDATE_ATTEMPTS:
                    raise
            await asyncio.sleep(UPDATE_BACKOFF_SECONDS * attempt)
        return handlers.json_response(wire.dump(self._request_model(request, op, record)))

    async def _apply_update(self, op: routes.Operation, body: wire.Request) -> RequestRecord:
        record = await self._record(op)
        if body.storage_e_tag is not None and body.storage_e_tag != record.etag:
            raise errors.ServiceError(
                "RequestUpdateConflictException",
                f"Request '{record.name}' was changed since it was read; read it again and retry.",
            )
        if record.status == wire.RequestStatus.UNAVAILABLE:
            raise errors.ServiceError(
                "RequestNotFoundException", f"Request '{record.name}' is being deleted."
            )
        status = body.status or wire.RequestStatus.NONE
        changes: dict[str, Any] = {}
        if body.expiration_date is not None:
            changes["expiration_date"] = self._future(body.expiration_date)
        sealing = status == wire.RequestStatus.SEALED and record.sealed_segments is None
        if sealing and record.status != wire.RequestStatus.SEALED:
            changes["status"] = wire.RequestStatus.SEALED
        elif not sealing and status not in (wire.RequestStatus.NONE, record.status):
            raise errors.ServiceError(
                "RequestUpdateInvalidException",
                f"A request can be sealed or get a new expirationDate; not status {status.name.lower()}.",
            )
        if changes:
            record = await self.requests.replace(dataclasses.replace(record, **changes))
        if sealing:
            record = await self._finish_seal(record)
        return record

    async def _finish_seal(self, record: RequestRecord) -> RequestRecord:
        """The seal's second step: fix which manifest segments are the request's.

        The first step (status ``sealed``) stops new batches from starting; a batch that was
        already past its check may still write a segment. Every segment written before this count
        belongs to the request; a batch whose segment comes later sees the count and answers 403
        (see ``_create_entries``). A seal interrupted between the steps is finished by sealing again.
        """
        started = time.monotonic()
        count = await self.manifest_store.segment_count(record.id)
        live = await self.manifest_store.entries(record.id, segments=count)
        record = await self.requests.replace(
            dataclasses.replace(
                record,
                sealed_segments=count,
                sealed_date=self.clock(),
                entry_count=len(live),
                size=sum(int(e.get("size") or 0) for e in live.values()),
            )
        )
        self.metrics.seals.inc()
        self.metrics.seal_duration.observe(time.monotonic() - started)
        return record

    async def _delete_request(
        self, request: web.Request, op: routes.Operation, who: tokens.Principal | None
    ) -> web.StreamResponse:
        synchronous = request.query.get("synchronous", "").lower() == "true"
        for attempt in range(1, UPDATE_ATTEMPTS + 1):
            record = await self._record(op, expired_ok=True)
            if synchronous:
                await self.manifest_store.remove(record.id)
                await self.requests.delete(record.id)
                break
            if record.status == wire.RequestStatus.UNAVAILABLE:
                break
            gone = dataclasses.replace(record, status=wire.RequestStatus.UNAVAILABLE)
            try:
                await self.requests.replace(gone)
                break
            except errors.ServiceError as exc:
                # A delete names no version: a write that slipped in since the read (the operator's
                # conditions, say) is no reason to fail it. Read again and retry, as an update does.
                if exc.type_key != "RequestUpdateConflictException" or attempt == UPDATE_ATTEMPTS:
                    raise
            await asyncio.sleep(UPDATE_BACKOFF_SECONDS * attempt)
        return handlers.json_response({"message": f"Request '{record.name}' no longer exists."})
