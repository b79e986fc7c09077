"""The BlobStore subset that clients upload through (spec §7): single PUT, blocks, references, reads."""

from __future__ import annotations

from collections.abc import AsyncIterator

from aiohttp import web

from symbol_proxy.backends import base
from symbol_service import blobs, errors, handlers, routes, tokens

__all__ = ["BlobHandlers"]


class BlobHandlers(handlers.ApiBase):
    """The blob operations."""

    async def _get_blob(
        self, request: web.Request, op: routes.Operation, who: tokens.Principal | None
    ) -> web.StreamResponse:
        return await self._stream_blob(request, handlers.parse_blob_id(op.blob_id))

    async def _blob_url(
        self, request: web.Request, op: routes.Operation, who: tokens.Principal | None
    ) -> web.StreamResponse:
        blob_id = handlers.parse_blob_id(op.blob_id)
        if await self.blob_store.size(blob_id) is None:
            raise errors.ServiceError("BlobNotFoundException", f"Blob {blob_id.hex} is not stored.")
        return handlers.json_response({"url": f"{self._base(request, op)}/_apis/blob/blobs/{blob_id.hex}"})

    def _declared_size(self, request: web.Request, limit: int) -> int | None:
        size = request.content_length
        if size is not None and size > limit:
            raise errors.ServiceError(
                "RequestEntityTooLargeException", f"At most {limit} bytes are accepted here."
            )
        return size

    async def _request_body(self, request: web.Request) -> AsyncIterator[bytes]:
        """The body in pieces of about ``handlers.UPLOAD_PIECE`` bytes (aiohttp hands out what has arrived,
        often 64 KiB; larger pieces mean fewer trips to the hashing and writing threads)."""
        piece = bytearray()
        async for chunk in request.content.iter_any():
            self.metrics.uploaded_bytes.inc(len(chunk))
            piece += chunk
            if len(piece) >= handlers.UPLOAD_PIECE:
                yield bytes(piece)
                piece.clear()
        if piece:
            yield bytes(piece)

    async def _put_blob(
        self, request: web.Request, op: routes.Operation, who: tokens.Principal | None
    ) -> web.StreamResponse:
        blob_id = handlers.parse_blob_id(op.blob_id)
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
        return handlers.json_response(
            {"id": blob_id.hex, "size": upload.size}, status=200 if upload.deduplicated else 201
        )

    async def _upload_blob(
        self, request: web.Request, op: routes.Operation, who: tokens.Principal | None
    ) -> web.StreamResponse:
        """``PUT _apis/blob/blobs``: a whole file whose id the server computes (not an Azure route)."""
        size = self._declared_size(request, self.limits.max_blob_size)
        try:
            upload = await self.blob_store.upload(
                self._request_body(request), size=size, limit=self.limits.max_blob_size
            )
        except base.Malformed:
            raise errors.ServiceError(
                "ContentMissingException", "The body is shorter than its Content-Length."
            ) from None
        self.metrics.blobs.labels("deduplicated" if upload.deduplicated else "stored").inc()
        body = {"id": upload.blob_id.hex, "identifierValue": upload.blob_id.base64, "size": upload.size}
        return handlers.json_response(body, status=200 if upload.deduplicated else 201)

    async def _put_block(
        self, request: web.Request, op: routes.Operation, who: tokens.Principal | None
    ) -> web.StreamResponse:
        blob_id = handlers.parse_blob_id(op.blob_id)
        block = blobs.block_hash_from_text(op.block_hash or "")
        self._declared_size(request, self.limits.max_block_size)
        data = await handlers.read_limited(request, self.limits.max_block_size, "A block")
        self.metrics.uploaded_bytes.inc(len(data))
        created = await self.blob_store.put_block(blob_id, block, data)
        return handlers.json_response({"blockHash": block.hex().upper()}, status=201 if created else 200)

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
            blob_id = handlers.parse_blob_id(blob.get("id") if isinstance(blob, dict) else None)
            present = await self.blob_store.size(blob_id) is not None
            answered.append({**reference, "status": "added" if present else "missing"})
        return handlers.json_response({"references": answered})
