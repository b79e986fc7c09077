"""The operations of the API, one method each, over a request store, the blobs and the manifests.

``Api.handle`` receives an already resolved and authorised ``Operation`` (see ``app``) and returns
a response or raises ``ServiceError``. Debug entries follow the publish flow of the spec (§6): an
entry whose blob is stored is ``created``; otherwise it is ``blobMissing`` with a ``blobUri`` to upload
to, and the re-post (with ``blobDetails`` after a multi-block upload) turns it into ``created`` once
the blob is stored, which implies its VSO-Hash was verified (``blobs``).
"""

from __future__ import annotations

import asyncio
import dataclasses
import datetime
import json
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any

import pydantic
from aiohttp import web

from symbol_proxy.backends import base
from symbol_service import blobs, entries, errors, manifests, routes, tokens, vsohash, wire
from symbol_service.config import Limits
from symbol_service.metrics import Metrics
from symbol_service.requeststore import RequestRecord, RequestStore, new_request_id
from symbol_service.routes import Op

__all__ = ["LOCATIONS", "Api"]

# (id, area, resourceName, routeTemplate) of spec §3 and §7, for ``OPTIONS /_apis``.
LOCATIONS = [
    ("97c893cc-e861-4ef4-8c43-9bad4a963dee", "Symbol", "availability", "_apis/{area}/{resource}"),
    ("79c83865-4de3-460c-8a16-01be238e0818", "Symbol", "client", "_apis/{area}/{resource}/{clientType}"),
    ("ebc09fe3-1b20-4667-abc5-f2b60fe8de52", "Symbol", "requests", "_apis/{area}/{resource}/{requestId}"),
    (
        "54213640-76f5-4e0e-b3f1-c78b5a0a0606",
        "Symbol",
        "requests",
        "_apis/{area}/{resource}/{requestId}/{collection}/{*debugEntryId}",
    ),
    (
        "bf49e7f3-5005-4f2a-902e-9426a229d1f3",
        "Symbol",
        "debugentries",
        "_apis/{area}/{resource}/{*debugEntryClientKey}",
    ),
    (
        "0f98d9f5-caf7-44fd-a5c9-55f3a9b34399",
        "Symbol",
        "contents",
        "_apis/{area}/requests/{requestId}/{resource}/{debugEntryId}",
    ),
    (
        "9648e256-c9f9-4f16-8a27-630b06396942",
        "Symbol",
        "symsrv",
        "_apis/{area}/{resource}/{*debugEntryClientKey}",
    ),
    ("d56223df-8ccd-45c9-89b4-eddf69240690", "blob", "blobs", "_apis/{area}/{resource}/{blobId}"),
    ("1d1857e7-3f76-4766-ac71-c443ab9093ef", "blob", "url", "_apis/{area}/blobs/{blobId}/{resource}"),
    ("3e5abb16-5c5b-4c87-9d73-88cb68fa9509", "blob", "referencesbatch", "_apis/{area}/{resource}"),
]


UPLOAD_PIECE = 1024 * 1024
SEAL_WAIT_STEP = 0.05
SEAL_WAIT_STEPS = 200
"""A batch that meets a seal under way waits up to 10 s for it to fix its count."""


AREAS = [("af607f94-69ba-4821-8159-f04e37b66350", "Symbol"), ("5294ef93-12a1-4d13-8671-9d9d014072c8", "blob")]


def _now() -> datetime.datetime:
    return datetime.datetime.now(datetime.UTC)


def _json(data: Any, status: int = 200) -> web.Response:
    return web.Response(
        status=status,
        body=json.dumps(data, separators=(",", ":")).encode(),
        content_type="application/json",
        charset="utf-8",
    )


def _parse_blob_id(text: str | None) -> vsohash.BlobId:
    try:
        blob_id = vsohash.BlobId.from_hex(text or "")
    except ValueError:
        raise errors.ServiceError(
            "InvalidEndpointParameterException", "The blob id is 33 bytes of upper-case hex."
        ) from None
    _check_algorithm(blob_id)
    return blob_id


def _check_algorithm(blob_id: vsohash.BlobId) -> None:
    if blob_id.algorithm != vsohash.ALGORITHM_FILE or len(blob_id.raw) != 33:
        raise errors.ServiceError(
            "DebugEntryNotChunkedException",
            "Only file-level blob ids (VSO-Hash, algorithm 0) are supported; chunk dedup is not.",
        )


async def _read_limited(request: web.Request, limit: int, what: str) -> bytes:
    """The whole body, or 413 as soon as it passes ``limit`` bytes."""
    data = bytearray()
    async for chunk in request.content.iter_any():
        data += chunk
        if len(data) > limit:
            raise errors.ServiceError(
                "RequestEntityTooLargeException", f"{what} may have at most {limit} bytes."
            )
    return bytes(data)


def _same_entry(one: dict[str, Any], other: dict[str, Any]) -> bool:
    """Whether two entry records differ only in who wrote them and when."""
    ignored = ("createdBy", "createdDate")
    return {k: v for k, v in one.items() if k not in ignored} == {
        k: v for k, v in other.items() if k not in ignored
    }


@dataclasses.dataclass
class Api:
    requests: RequestStore
    blob_store: blobs.BlobStore
    manifest_store: manifests.ManifestStore
    limits: Limits
    metrics: Metrics
    public_url: str | None = None
    clock: Callable[[], datetime.datetime] = _now
    """The time, for expiry; tests move it instead of sleeping."""

    async def handle(
        self, request: web.Request, operation: routes.Operation, principal: tokens.Principal | None
    ) -> web.StreamResponse:
        handler: Callable[
            [web.Request, routes.Operation, tokens.Principal | None], Awaitable[web.StreamResponse]
        ]
        handler = getattr(self, f"_{operation.op.value}", self._not_built)
        return await handler(request, operation, principal)

    # ---------------------------------------------------------------------------------------------
    # Helpers

    def _base(self, request: web.Request, operation: routes.Operation) -> str:
        root = (self.public_url or f"{request.scheme}://{request.host}").rstrip("/")
        return f"{root}/{operation.organization}" if operation.organization else root

    async def _body(self, request: web.Request) -> Any:
        if request.content_length is not None and request.content_length > self.limits.max_json_body:
            raise errors.ServiceError(
                "RequestEntityTooLargeException",
                f"A JSON body may have at most {self.limits.max_json_body} bytes.",
            )
        data = await request.content.read(self.limits.max_json_body + 1)
        if len(data) > self.limits.max_json_body:
            raise errors.ServiceError(
                "RequestEntityTooLargeException",
                f"A JSON body may have at most {self.limits.max_json_body} bytes.",
            )
        try:
            return json.loads(data or b"null")
        except (UnicodeDecodeError, ValueError):
            raise errors.ServiceError("SerializationException", "The body is not valid JSON.") from None

    async def _model(self, request: web.Request, model: type[wire.M]) -> wire.M:
        document = await self._body(request)
        if not isinstance(document, dict):
            raise errors.ServiceError(
                "SerializationException", f"The body must be a JSON {model.__name__} object."
            )
        try:
            return model.model_validate(document)
        except pydantic.ValidationError as exc:
            problems = "; ".join(
                f"{'.'.join(str(p) for p in error['loc']) or 'body'}: {error['msg']}"
                for error in exc.errors()
            )
            raise errors.ServiceError(
                "SerializationException", f"Invalid {model.__name__}: {problems}"
            ) from None

    async def _record(self, operation: routes.Operation, *, expired_ok: bool = False) -> RequestRecord:
        """The request the operation names. An expired one is gone for every caller (spec §11)
        even before the operator removes it, except for deleting it."""
        record = None
        if operation.request_id is not None:
            record = await self.requests.get(operation.request_id)
        elif operation.request_name is not None:
            record = await self.requests.find(operation.request_name)
        if record is None:
            which = operation.request_id or operation.request_name
            raise errors.ServiceError("RequestNotFoundException", f"Request '{which}' does not exist.")
        if not expired_ok and self._expired(record):
            raise errors.ServiceError("RequestNotFoundException", f"Request '{record.name}' has expired.")
        return record

    def _expired(self, record: RequestRecord) -> bool:
        return record.expiration_date <= self.clock()

    def _future(self, date: datetime.datetime | None) -> datetime.datetime | None:
        if date is not None and date <= self.clock():
            raise errors.ServiceError("InvalidEndpointParameterException", "expirationDate is in the past.")
        return date

    def _request_model(
        self, request: web.Request, operation: routes.Operation, record: RequestRecord
    ) -> wire.Request:
        return wire.Request(
            id=record.id,
            name=record.name,
            description=record.description,
            expiration_date=record.expiration_date,
            status=record.status,
            size=record.size,
            domain_id=record.domain_id,
            is_chunked=False,
            created_by=record.created_by,
            created_date=record.created_date,
            storageETag=record.etag,
            url=f"{self._base(request, operation)}/_apis/Symbol/requests/{record.id}",
        )

    def _entry_model(
        self, request: web.Request, operation: routes.Operation, record: dict[str, Any]
    ) -> wire.DebugEntry:
        blob_id = vsohash.BlobId.from_hex(record["blobId"])
        return wire.DebugEntry(
            id=record["id"],
            client_key=record["clientKey"],
            information_level=wire.InformationLevel(record["informationLevel"]),
            blob_identifier=wire.JsonBlobIdentifier(identifier_value=blob_id.base64),
            blob_uri=f"{self._base(request, operation)}/_apis/blob/blobs/{blob_id.hex}",
            request_id=record["requestId"],
            status=wire.DebugEntryStatus(record["status"]),
            size=record.get("size"),
            domain_id="0",
            created_by=record.get("createdBy"),
            created_date=record.get("createdDate"),
        )

    # ---------------------------------------------------------------------------------------------
    # Discovery and client

    async def _locations(
        self, request: web.Request, op: routes.Operation, who: tokens.Principal | None
    ) -> web.StreamResponse:
        value = [
            {
                "id": location_id,
                "area": area,
                "resourceName": resource,
                "routeTemplate": template,
                "resourceVersion": 1,
                "minVersion": "1.0",
                "maxVersion": "7.2",
                "releasedVersion": "7.1",
            }
            for location_id, area, resource, template in LOCATIONS
        ]
        return _json({"count": len(value), "value": value})

    async def _resource_areas(
        self, request: web.Request, op: routes.Operation, who: tokens.Principal | None
    ) -> web.StreamResponse:
        """``GET _apis/ResourceAreas[/{areaId}]``: both areas are served from here (spec §3)."""
        location = self._base(request, op) + "/"
        areas = [{"id": area_id, "name": name, "locationUrl": location} for area_id, name in AREAS]
        if op.client_key is None:
            return _json(wire.collection(areas))
        found = [
            area
            for area in areas
            if area["id"] == op.client_key.lower() or area["name"].lower() == op.client_key.lower()
        ]
        if not found:
            raise errors.ServiceError(
                "ResourceNotFoundException", f"No resource area {op.client_key!r} here."
            )
        return _json(found[0])

    async def _availability(
        self, request: web.Request, op: routes.Operation, who: tokens.Principal | None
    ) -> web.StreamResponse:
        return _json({"available": True})

    async def _not_built(
        self, request: web.Request, op: routes.Operation, who: tokens.Principal | None
    ) -> web.StreamResponse:
        if op.op in (Op.CLIENT_VERSION, Op.CLIENT_DOWNLOAD):
            raise errors.ServiceError(
                "ClientNotFoundException", "This server does not hand out a client yet."
            )
        raise errors.ServiceError(
            "ResourceNotFoundException", f"The operation {op.op.value} is not served yet."
        )

    # ---------------------------------------------------------------------------------------------
    # Requests

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
        return _json(wire.dump(self._request_model(request, op, record)), status=201)

    async def _get_request(
        self, request: web.Request, op: routes.Operation, who: tokens.Principal | None
    ) -> web.StreamResponse:
        record = await self._record(op)
        return _json(wire.dump(self._request_model(request, op, record)))

    async def _list_requests(
        self, request: web.Request, op: routes.Operation, who: tokens.Principal | None
    ) -> web.StreamResponse:
        records = [
            r
            for r in await self.requests.list()
            if r.status != wire.RequestStatus.UNAVAILABLE and not self._expired(r)
        ]
        return _json(wire.collection(self._request_model(request, op, r) for r in records))

    async def _update_request(
        self, request: web.Request, op: routes.Operation, who: tokens.Principal | None
    ) -> web.StreamResponse:
        body = await self._model(request, wire.Request)
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
        return _json(wire.dump(self._request_model(request, op, record)))

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
                entry_count=len(live),
                size=sum(int(e.get("size") or 0) for e in live.values()),
            )
        )
        self.metrics.seals.inc()
        self.metrics.seal_duration.observe(time.monotonic() - started)
        return record

    async def _kept_by_the_request(self, record: RequestRecord, segment: int) -> bool:
        """Whether a segment a batch has just written belongs to the request (not to a lost race
        with a seal); waits for a seal under way to fix its count."""
        for _ in range(SEAL_WAIT_STEPS):
            current = await self.requests.get(record.id)
            if current is None or current.status == wire.RequestStatus.UNAVAILABLE:
                return False
            if current.status == wire.RequestStatus.CREATED:
                return True  # any later seal counts this segment: it was written before the seal began
            if current.sealed_segments is not None:
                return segment < current.sealed_segments
            await asyncio.sleep(SEAL_WAIT_STEP)
        raise errors.ServiceError(
            "ServiceUnavailableException", "A seal of this request is under way; retry."
        )

    async def _delete_request(
        self, request: web.Request, op: routes.Operation, who: tokens.Principal | None
    ) -> web.StreamResponse:
        record = await self._record(op, expired_ok=True)
        synchronous = request.query.get("synchronous", "").lower() == "true"
        if synchronous:
            await self.manifest_store.remove(record.id)
            await self.requests.delete(record.id)
        elif record.status != wire.RequestStatus.UNAVAILABLE:
            await self.requests.replace(dataclasses.replace(record, status=wire.RequestStatus.UNAVAILABLE))
        return _json({"message": f"Request '{record.name}' no longer exists."})

    # ---------------------------------------------------------------------------------------------
    # Debug entries

    async def _create_entries(
        self, request: web.Request, op: routes.Operation, who: tokens.Principal | None
    ) -> web.StreamResponse:
        record = await self._record(op)
        batch = await self._model(request, wire.DebugEntryCreateBatch)
        if record.status == wire.RequestStatus.SEALED:
            raise errors.ServiceError(
                "RequestSealedException", f"Request '{record.name}' is sealed: it takes no more entries."
            )
        if record.status == wire.RequestStatus.UNAVAILABLE:
            raise errors.ServiceError(
                "RequestNotFoundException", f"Request '{record.name}' is being deleted."
            )
        if not batch.debug_entries:
            raise errors.ServiceError("InvalidEndpointParameterException", "debugEntries is empty.")
        if len(batch.debug_entries) > self.limits.max_entries_per_batch:
            raise errors.ServiceError(
                "RequestEntityTooLargeException",
                f"A batch may hold at most {self.limits.max_entries_per_batch} debug entries.",
            )
        stored_before = await self.manifest_store.entries(record.id)
        added: dict[str, dict[str, Any]] = {}  # by this batch: a later entry of it may repeat an id

        sizes: dict[vsohash.BlobId, int | None] = {}  # one store lookup per blob per batch

        def existing(entry_id: str) -> dict[str, Any] | None:
            return added.get(entry_id) or stored_before.get(entry_id)

        answers: list[dict[str, Any]] = []
        changed: list[dict[str, Any]] = []
        now = wire.format_date(self.clock())
        for entry in batch.debug_entries:
            stored = await self._entry(record, entry, existing, sizes, batch.create_behavior, who, now)
            if stored is None:
                self.metrics.entries.labels("skipped").inc()
                continue
            record_, is_new = stored
            if is_new:
                changed.append(record_)
                added[record_["id"].lower()] = record_
            answers.append(record_)
            self.metrics.entries.labels(wire.DebugEntryStatus(record_["status"]).name.lower()).inc()
        segment = await self.manifest_store.append(record.id, changed)
        if segment is not None and not await self._kept_by_the_request(record, segment):
            raise errors.ServiceError(
                "RequestSealedException",
                f"Request '{record.name}' was sealed while these entries were added.",
            )
        return _json(wire.collection(self._entry_model(request, op, r) for r in answers))

    async def _entry(
        self,
        record: RequestRecord,
        entry: wire.DebugEntry,
        existing: Callable[[str], dict[str, Any] | None],
        sizes: dict[vsohash.BlobId, int | None],
        behavior: wire.CreateBehavior,
        who: tokens.Principal | None,
        now: str,
    ) -> tuple[dict[str, Any], bool] | None:
        key = entries.check_client_key(entry.client_key or "")
        identifier = entry.blob_details or entry.blob_identifier
        if identifier is None:
            raise errors.ServiceError("ContentMissingException", f"Entry {key!r} has no blobIdentifier.")
        blob_id = identifier.blob_id
        _check_algorithm(blob_id)
        if (
            entry.blob_identifier is not None
            and entry.blob_details is not None
            and (entry.blob_identifier.blob_id != entry.blob_details.blob_id)
        ):
            raise errors.ServiceError(
                "InvalidEndpointParameterException", f"Entry {key!r}: blobDetails names another blob."
            )
        level = int(entry.information_level)
        entry_id = entries.entry_id(key, level)
        previous = existing(entry_id.lower())
        if previous is not None and previous["status"] == wire.DebugEntryStatus.CREATED:
            if previous["blobId"] == blob_id.hex:
                return previous, False  # the same entry again (a retry or the re-post): nothing to do
            if behavior == wire.CreateBehavior.THROW_IF_EXISTS:
                raise errors.ServiceError(
                    "DebugEntryExistsException", f"Debug entry '{entry_id}' already exists."
                )
            if behavior == wire.CreateBehavior.SKIP_IF_EXISTS:
                return None
        if blob_id not in sizes:
            sizes[blob_id] = await self.blob_store.size(blob_id)
        size = sizes[blob_id]
        if size is None and entry.blob_details is not None:
            blocks = [block.digest for block in entry.blob_details.block_hashes]
            if await self.blob_store.assemble(blob_id, blocks, limit=self.limits.max_blob_size):
                size = sizes[blob_id] = await self.blob_store.size(blob_id)
        status = wire.DebugEntryStatus.BLOB_MISSING if size is None else wire.DebugEntryStatus.CREATED
        stored: dict[str, Any] = {
            "id": entry_id,
            "clientKey": key,
            "informationLevel": level,
            "blobId": blob_id.hex,
            "requestId": record.id,
            "status": int(status),
            "size": size,
            "createdBy": who.name if who else "",
            "createdDate": now,
        }
        if previous is not None and _same_entry(previous, stored):
            return previous, False
        return stored, True

    async def _list_entries(
        self, request: web.Request, op: routes.Operation, who: tokens.Principal | None
    ) -> web.StreamResponse:
        record = await self._record(op)
        live = await self.manifest_store.entries(record.id, segments=record.sealed_segments)
        return _json(wire.collection(self._entry_model(request, op, r) for r in live.values()))

    async def _find_entry(self, op: routes.Operation) -> tuple[RequestRecord, dict[str, Any]]:
        record = await self._record(op)
        entries.parse_entry_id(op.entry_id or "")
        live = await self.manifest_store.entries(record.id, segments=record.sealed_segments)
        found = live.get((op.entry_id or "").lower())
        if found is None:
            raise errors.ServiceError(
                "DebugEntryNotFoundException", f"Debug entry '{op.entry_id}' does not exist."
            )
        return record, found

    async def _get_entry(
        self, request: web.Request, op: routes.Operation, who: tokens.Principal | None
    ) -> web.StreamResponse:
        _, found = await self._find_entry(op)
        return _json(wire.collection([self._entry_model(request, op, found)]))

    async def _delete_entry(
        self, request: web.Request, op: routes.Operation, who: tokens.Principal | None
    ) -> web.StreamResponse:
        record, found = await self._find_entry(op)
        if record.status != wire.RequestStatus.CREATED:
            raise errors.ServiceError(
                "DebugEntryNotDeletedException",
                f"Request '{record.name}' is sealed: its entries stay until it expires.",
            )
        await self.manifest_store.append(record.id, [{"id": found["id"], "deleted": True}])
        return _json({"message": f"Debug entry '{found['id']}' no longer exists."})

    async def _contents(
        self, request: web.Request, op: routes.Operation, who: tokens.Principal | None
    ) -> web.StreamResponse:
        _, found = await self._find_entry(op)
        if found["status"] != wire.DebugEntryStatus.CREATED:
            raise errors.ServiceError(
                "DebugEntryNotFoundException", f"Debug entry '{found['id']}' has no content yet."
            )
        return await self._stream_blob(request, vsohash.BlobId.from_hex(found["blobId"]))

    # ---------------------------------------------------------------------------------------------
    # Blobs

    async def _stream_blob(self, request: web.Request, blob_id: vsohash.BlobId) -> web.StreamResponse:
        try:
            stream = await self.blob_store.open(blob_id)
        except base.NotFound:
            raise errors.ServiceError("BlobNotFoundException", f"Blob {blob_id.hex} is not stored.") from None
        try:
            response = web.StreamResponse(headers={"Content-Type": "application/octet-stream"})
            if stream.info.size is not None:
                response.content_length = stream.info.size
            await response.prepare(request)
            if request.method != "HEAD":
                async for chunk in stream.chunks():
                    await response.write(chunk)
            await response.write_eof()
            return response
        finally:
            await stream.aclose()

    async def _get_blob(
        self, request: web.Request, op: routes.Operation, who: tokens.Principal | None
    ) -> web.StreamResponse:
        return await self._stream_blob(request, _parse_blob_id(op.blob_id))

    async def _blob_url(
        self, request: web.Request, op: routes.Operation, who: tokens.Principal | None
    ) -> web.StreamResponse:
        blob_id = _parse_blob_id(op.blob_id)
        if await self.blob_store.size(blob_id) is None:
            raise errors.ServiceError("BlobNotFoundException", f"Blob {blob_id.hex} is not stored.")
        return _json({"url": f"{self._base(request, op)}/_apis/blob/blobs/{blob_id.hex}"})

    def _declared_size(self, request: web.Request, limit: int) -> int | None:
        size = request.content_length
        if size is not None and size > limit:
            raise errors.ServiceError(
                "RequestEntityTooLargeException", f"At most {limit} bytes are accepted here."
            )
        return size

    async def _request_body(self, request: web.Request) -> AsyncIterator[bytes]:
        """The body in pieces of about ``UPLOAD_PIECE`` bytes (aiohttp hands out what has arrived,
        often 64 KiB; larger pieces mean fewer trips to the hashing and writing threads)."""
        piece = bytearray()
        async for chunk in request.content.iter_any():
            self.metrics.uploaded_bytes.inc(len(chunk))
            piece += chunk
            if len(piece) >= UPLOAD_PIECE:
                yield bytes(piece)
                piece.clear()
        if piece:
            yield bytes(piece)

    async def _put_blob(
        self, request: web.Request, op: routes.Operation, who: tokens.Principal | None
    ) -> web.StreamResponse:
        blob_id = _parse_blob_id(op.blob_id)
        size = self._declared_size(request, self.limits.max_blob_size)
        try:
            upload = await self.blob_store.put(
                blob_id, self._request_body(request), size=size, limit=self.limits.max_blob_size
            )
        except errors.ServiceError as exc:
            if exc.type_key == "BlobHashMismatchException":
                self.metrics.blobs.labels("rejected").inc()
            raise
        except base.Malformed:
            raise errors.ServiceError(
                "ContentMissingException", "The body is shorter than its Content-Length."
            ) from None
        self.metrics.blobs.labels("deduplicated" if upload.deduplicated else "stored").inc()
        return _json({"id": blob_id.hex, "size": upload.size}, status=200 if upload.deduplicated else 201)

    async def _put_block(
        self, request: web.Request, op: routes.Operation, who: tokens.Principal | None
    ) -> web.StreamResponse:
        blob_id = _parse_blob_id(op.blob_id)
        block = blobs.block_hash_from_text(op.block_hash or "")
        self._declared_size(request, self.limits.max_block_size)
        data = await _read_limited(request, self.limits.max_block_size, "A block")
        self.metrics.uploaded_bytes.inc(len(data))
        created = await self.blob_store.put_block(blob_id, block, data)
        return _json({"blockHash": block.hex().upper()}, status=201 if created else 200)

    async def _references_add(
        self, request: web.Request, op: routes.Operation, who: tokens.Principal | None
    ) -> web.StreamResponse:
        document = await self._body(request)
        references = document.get("references") if isinstance(document, dict) else None
        if not isinstance(references, list):
            raise errors.ServiceError("SerializationException", 'The body is {"references": [...]}.')
        answered = []
        for reference in references:
            blob = reference.get("blob") if isinstance(reference, dict) else None
            blob_id = _parse_blob_id(blob.get("id") if isinstance(blob, dict) else None)
            present = await self.blob_store.size(blob_id) is not None
            answered.append({**reference, "status": "added" if present else "missing"})
        return _json({"references": answered})
