"""A request's debug entries, kept in the store as an append-only log of immutable segments.

A request may hold 100,000 entries, too many for etcd, so they live beside the blobs::

    _publish/requests/<request-id>/entries/<00000000>.json   one segment per accepted batch

Each batch that changes entries writes one new segment with a conditional create at the next free
number; a writer that loses the race for a number takes the next one, so concurrent batches (from
several replicas) never overwrite each other and every segment is whole or absent. Reading replays
the segments in order; a later record for an entry id replaces an earlier one, and a record marked
``deleted`` removes it. Segments never change once written, so each process keeps the replayed
state per request and reads only segments it has not seen.
"""

from __future__ import annotations

import collections
import json
import types
from collections.abc import AsyncIterator, Iterable, Mapping
from typing import Any

from symbol_proxy.backends import base
from symbol_service.blobs import PREFIX

__all__ = ["ManifestStore"]

_CACHED_REQUESTS = 64
"""Replayed manifests kept in memory (each is a dict of its entries)."""


class _State:
    def __init__(self) -> None:
        self.next_segment = 0
        self.entries: dict[str, dict[str, Any]] = {}
        self.by_key: dict[str, dict[str, dict[str, Any]]] = {}
        """The live entries of each lower-cased client key (levels share a key), for symsrv."""


class ManifestStore:
    def __init__(self, backend: base.WritableBackend) -> None:
        self.backend = backend
        self._states: collections.OrderedDict[str, _State] = collections.OrderedDict()

    @staticmethod
    def segment_location(request_id: str, number: int) -> str:
        return f"{PREFIX}/requests/{request_id}/entries/{number:08d}.json"

    def _state(self, request_id: str) -> _State:
        state = self._states.pop(request_id, None) or _State()
        self._states[request_id] = state
        while len(self._states) > _CACHED_REQUESTS:
            self._states.popitem(last=False)
        return state

    async def _read_segment(self, location: str) -> list[dict[str, Any]]:
        stream = await self.backend.open(location)
        try:
            data = b"".join([chunk async for chunk in stream.chunks()])
        finally:
            await stream.aclose()
        records: list[dict[str, Any]] = json.loads(data)["entries"]
        return records

    @staticmethod
    def _apply(state: _State, records: Iterable[dict[str, Any]]) -> None:
        for record in records:
            key = str(record["id"]).lower()
            client_key = key.rpartition("/")[0]
            if record.get("deleted"):
                state.entries.pop(key, None)
                state.by_key.get(client_key, {}).pop(key, None)
            else:
                state.entries[key] = record
                state.by_key.setdefault(client_key, {})[key] = record

    async def _catch_up(self, request_id: str) -> _State:
        state = self._state(request_id)
        while True:
            try:
                records = await self._read_segment(self.segment_location(request_id, state.next_segment))
            except base.NotFound:
                return state
            self._apply(state, records)
            state.next_segment += 1

    async def entries(self, request_id: str, *, segments: int | None = None) -> Mapping[str, dict[str, Any]]:
        """Every live entry of the request, by lower-cased entry id: a read-only view, not a copy
        (a request may have 100,000 entries and a batch of 100 should not copy them all).

        ``segments`` limits the replay to the first ones (a sealed request's own); only when later
        segments exist is the prefix replayed apart.
        """
        return types.MappingProxyType((await self._replayed(request_id, segments)).entries)

    async def _replayed(self, request_id: str, segments: int | None) -> _State:
        """The cached state, or the first ``segments`` replayed apart when later ones exist."""
        state = await self._catch_up(request_id)
        if segments is None or state.next_segment <= segments:
            return state
        prefix = _State()
        for number in range(segments):
            self._apply(prefix, await self._read_segment(self.segment_location(request_id, number)))
        return prefix

    async def for_key(
        self, request_id: str, client_key: str, *, segments: int | None = None
    ) -> list[dict[str, Any]]:
        """The request's live entries with that client key (any case), one per information level;
        ``segments`` as in :meth:`entries`."""
        state = await self._replayed(request_id, segments)
        return list(state.by_key.get(client_key.lower(), {}).values())

    async def segment_count(self, request_id: str) -> int:
        """How many segments the request's manifest has now."""
        return (await self._catch_up(request_id)).next_segment

    async def append(self, request_id: str, records: list[dict[str, Any]]) -> int | None:
        """Write ``records`` as the request's next segment; its number (``None`` for no records)."""
        if not records:
            return None
        data = json.dumps({"entries": records}, separators=(",", ":")).encode()
        state = await self._catch_up(request_id)

        async def body() -> AsyncIterator[bytes]:
            yield data

        while True:
            try:
                await self.backend.create(
                    self.segment_location(request_id, state.next_segment), body(), size=len(data)
                )
            except base.AlreadyExists:
                state = await self._catch_up(request_id)  # another writer took it: read it, try the next
                continue
            self._apply(state, records)
            state.next_segment += 1
            return state.next_segment - 1

    async def remove(self, request_id: str) -> None:
        """Delete every segment of the request (the blobs stay: other requests may name them)."""
        state = await self._catch_up(request_id)
        for number in range(state.next_segment):
            await self.backend.delete(self.segment_location(request_id, number))
        self._states.pop(request_id, None)
