"""Debug entries of a request (spec §5.3, §6): create in batches, list, read, delete, contents.

An entry whose blob is stored is ``created``; otherwise it is ``blobMissing`` with a ``blobUri`` to
upload to, and the re-post (with ``blobDetails`` after a multi-block upload) turns it into
``created`` once the blob is stored, which implies its VSO-Hash was verified (``blobs``).
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from typing import Any

from aiohttp import web

from symbol_service import blobs, entries, errors, handlers, routes, tokens, vsohash, wire
from symbol_service.requeststore import RequestRecord

__all__ = ["EntryHandlers"]


class EntryHandlers(handlers.ApiBase):
    """The debug entry operations."""

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
        checked: list[float] = []  # when the batch first relied on a blob found in the store

        def existing(entry_id: str) -> dict[str, Any] | None:
            return added.get(entry_id) or stored_before.get(entry_id)

        answers: list[dict[str, Any]] = []
        changed: list[dict[str, Any]] = []
        now = wire.format_date(self.clock())
        for entry in batch.debug_entries:
            stored = await self._entry(
                record, entry, existing, sizes, checked, batch.create_behavior, who, now
            )
            if stored is None:
                self.metrics.entries.labels("skipped").inc()
                continue
            record_, is_new = stored
            if is_new:
                changed.append(record_)
                added[record_["id"].lower()] = record_
            answers.append(record_)
            self.metrics.entries.labels(wire.DebugEntryStatus(record_["status"]).name.lower()).inc()
        if changed and checked and time.monotonic() - checked[0] > blobs.NAMING_LIMIT:
            # A garbage collection may have condemned a blob after this batch found it: writing
            # now could name a blob it is deleting (blobs.NAMING_LIMIT, collecting.SETTLE).
            raise errors.ServiceError(
                "ServiceUnavailableException", "This batch took too long to be written; send it again."
            )
        segment = await self.manifest_store.append(record.id, changed)
        if segment is not None and not await self._kept_by_the_request(record, segment):
            raise errors.ServiceError(
                "RequestSealedException",
                f"Request '{record.name}' was sealed while these entries were added.",
            )
        return handlers.json_response(wire.collection(self._entry_model(request, op, r) for r in answers))

    async def _entry(
        self,
        record: RequestRecord,
        entry: wire.DebugEntry,
        existing: Callable[[str], dict[str, Any] | None],
        sizes: dict[vsohash.BlobId, int | None],
        checked: list[float],
        behavior: wire.CreateBehavior,
        who: tokens.Principal | None,
        now: str,
    ) -> tuple[dict[str, Any], bool] | None:
        key = entries.check_client_key(entry.client_key or "")
        identifier = entry.blob_details or entry.blob_identifier
        if identifier is None:
            raise errors.ServiceError("ContentMissingException", f"Entry {key!r} has no blobIdentifier.")
        blob_id = identifier.blob_id
        handlers.check_algorithm(blob_id)
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

        async def lookup() -> int | None:
            sizes[blob_id], from_store = await self.blob_store.nameable_size(blob_id)
            if from_store and sizes[blob_id] is not None and not checked:
                checked.append(time.monotonic())
            return sizes[blob_id]

        size = sizes[blob_id] if blob_id in sizes else await lookup()
        if entry.blob_details is not None:
            blocks = [block.digest for block in entry.blob_details.block_hashes]
            if size is not None:
                await self.blob_store.discard_blocks(blob_id, blocks)  # another publisher stored it
            elif await self.blob_store.assemble(blob_id, blocks, limit=self.limits.max_blob_size):
                size = await lookup()
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
        if previous is not None and handlers.same_entry(previous, stored):
            return previous, False
        return stored, True

    async def _list_entries(
        self, request: web.Request, op: routes.Operation, who: tokens.Principal | None
    ) -> web.StreamResponse:
        record = await self._record(op)
        live = await self.manifest_store.entries(record.id, segments=record.sealed_segments)
        return handlers.json_response(
            wire.collection(self._entry_model(request, op, r) for r in live.values())
        )

    async def _query_entries(
        self, request: web.Request, op: routes.Operation, who: tokens.Principal | None
    ) -> web.StreamResponse:
        """``GET debugentries[/{clientKey}]``: the entries of every live request (created or sealed,
        not expired), with that client key (any case) when one is given; ``startEntry``,
        ``maxEntries`` (at most ``entries.MAX_QUERY_ENTRIES``) and ``sortOrder`` by information
        level (the server's default order: requests by creation, then entries as stored)."""
        query = entries.parse_query(request.query)
        key = op.client_key
        if key is not None:
            entries.check_client_key(key)
        now = self.clock()
        found: list[dict[str, Any]] = []
        records = sorted(await self.requests.list(), key=lambda r: (r.created_date, r.id))
        for record in records:
            if record.status == wire.RequestStatus.UNAVAILABLE or record.expiration_date <= now:
                continue
            segments = record.sealed_segments
            if key is not None:
                found += await self.manifest_store.for_key(record.id, key, segments=segments)
            else:
                found += (await self.manifest_store.entries(record.id, segments=segments)).values()
        if query.order is not entries.SortOrder.SERVER_DEFAULT:
            most_first = query.order is entries.SortOrder.MOST_INFORMATION_FIRST
            found.sort(key=lambda row: int(row["informationLevel"]), reverse=most_first)
        page = found[query.start : query.start + query.limit]
        return handlers.json_response(wire.collection(self._entry_model(request, op, r) for r in page))

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
        return handlers.json_response(wire.collection([self._entry_model(request, op, found)]))

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
        return handlers.json_response({"message": f"Debug entry '{found['id']}' no longer exists."})

    async def _contents(
        self, request: web.Request, op: routes.Operation, who: tokens.Principal | None
    ) -> web.StreamResponse:
        _, found = await self._find_entry(op)
        if found["status"] != wire.DebugEntryStatus.CREATED:
            raise errors.ServiceError(
                "DebugEntryNotFoundException", f"Debug entry '{found['id']}' has no content yet."
            )
        return await self._stream_blob(request, vsohash.BlobId.from_hex(found["blobId"]))

    async def _kept_by_the_request(self, record: RequestRecord, segment: int) -> bool:
        """Whether a segment a batch has just written belongs to the request (not to a lost race
        with a seal); waits for a seal under way to fix its count."""
        for _ in range(handlers.SEAL_WAIT_STEPS):
            current = await self.requests.get(record.id)
            if current is None or current.status == wire.RequestStatus.UNAVAILABLE:
                return False
            if current.status == wire.RequestStatus.CREATED:
                return True  # any later seal counts this segment: it was written before the seal began
            if current.sealed_segments is not None:
                return segment < current.sealed_segments
            await asyncio.sleep(handlers.SEAL_WAIT_STEP)
        raise errors.ServiceError(
            "ServiceUnavailableException", "A seal of this request is under way; retry."
        )
