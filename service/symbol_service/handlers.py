"""What the API's operations share: ``ApiBase`` (the stores, limits, metrics and helpers), the
discovery operations, and small helpers. The operations themselves are grouped by resource in
``requesthandlers``, ``entryhandlers`` and ``blobhandlers``, and put together as ``api.Api``.

``ApiBase.handle`` receives an already resolved and authorised ``Operation`` (see ``app``) and returns
a response or raises ``ServiceError``; it finds the method named after the operation.
"""

from __future__ import annotations

import dataclasses
import datetime
import json
from collections.abc import Awaitable, Callable
from typing import Any

import pydantic
from aiohttp import web

from symbol_proxy.backends import base
from symbol_service import blobs, errors, manifests, routes, tokens, vsohash, wire
from symbol_service.config import Limits
from symbol_service.metrics import Metrics
from symbol_service.requeststore import RequestRecord, RequestStore

__all__ = [
    "AREAS",
    "LOCATIONS",
    "ApiBase",
    "check_algorithm",
    "json_response",
    "now",
    "parse_blob_id",
    "read_limited",
    "same_entry",
]

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


def now() -> datetime.datetime:
    return datetime.datetime.now(datetime.UTC)


def json_response(data: Any, status: int = 200) -> web.Response:
    return web.Response(
        status=status,
        body=json.dumps(data, separators=(",", ":")).encode(),
        content_type="application/json",
        charset="utf-8",
    )


def parse_blob_id(text: str | None) -> vsohash.BlobId:
    try:
        blob_id = vsohash.BlobId.from_hex(text or "")
    except ValueError:
        raise errors.ServiceError(
            "InvalidEndpointParameterException", "The blob id is 33 bytes of upper-case hex."
        ) from None
    check_algorithm(blob_id)
    return blob_id


def check_algorithm(blob_id: vsohash.BlobId) -> None:
    if blob_id.algorithm != vsohash.ALGORITHM_FILE or len(blob_id.raw) != 33:
        raise errors.ServiceError(
            "DebugEntryNotChunkedException",
            "Only file-level blob ids (VSO-Hash, algorithm 0) are supported; chunk dedup is not.",
        )


async def read_limited(request: web.Request, limit: int, what: str) -> bytes:
    """The whole body, or 413 as soon as it passes ``limit`` bytes."""
    data = bytearray()
    async for chunk in request.content.iter_any():
        data += chunk
        if len(data) > limit:
            raise errors.ServiceError(
                "RequestEntityTooLargeException", f"{what} may have at most {limit} bytes."
            )
    return bytes(data)


def same_entry(one: dict[str, Any], other: dict[str, Any]) -> bool:
    """Whether two entry records differ only in who wrote them and when."""
    ignored = ("createdBy", "createdDate")
    return {k: v for k, v in one.items() if k not in ignored} == {
        k: v for k, v in other.items() if k not in ignored
    }


@dataclasses.dataclass
class ApiBase:
    """What every group of operations shares: the stores, the limits, the metrics, the helpers."""

    requests: RequestStore
    blob_store: blobs.BlobStore
    manifest_store: manifests.ManifestStore
    limits: Limits
    metrics: Metrics
    public_url: str | None = None
    clock: Callable[[], datetime.datetime] = now
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
        return json_response({"count": len(value), "value": value})

    async def _resource_areas(
        self, request: web.Request, op: routes.Operation, who: tokens.Principal | None
    ) -> web.StreamResponse:
        """``GET _apis/ResourceAreas[/{areaId}]``: both areas are served from here (spec §3)."""
        location = self._base(request, op) + "/"
        areas = [{"id": area_id, "name": name, "locationUrl": location} for area_id, name in AREAS]
        if op.client_key is None:
            return json_response(wire.collection(areas))
        found = [
            area
            for area in areas
            if area["id"] == op.client_key.lower() or area["name"].lower() == op.client_key.lower()
        ]
        if not found:
            raise errors.ServiceError(
                "ResourceNotFoundException", f"No resource area {op.client_key!r} here."
            )
        return json_response(found[0])

    async def _availability(
        self, request: web.Request, op: routes.Operation, who: tokens.Principal | None
    ) -> web.StreamResponse:
        return json_response({"available": True})

    async def _not_built(
        self, request: web.Request, op: routes.Operation, who: tokens.Principal | None
    ) -> web.StreamResponse:
        raise errors.ServiceError(
            "ResourceNotFoundException", f"The operation {op.op.value} is not served yet."
        )

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
