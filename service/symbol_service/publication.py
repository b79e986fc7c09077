"""Making a sealed request's entries visible to lookups, and taking them away again.

The operator calls this (``symbol_operator.requests``); it lives here, beside the blobs and the
manifests whose layout it reads. **Publishing** copies each ``created`` entry's blob to every path
a sidecar looks for it at when it reads the store as an ordinary ``symstore`` or ``unified`` source:
the SymSrv client key itself (and its SSQP spelling, names lower-cased), and the paths the proxy's
own layouts compute for the key's file type (``symbol_proxy.keys.parse_symstore_path`` →
``layouts.symstore_paths`` / ``unified_paths``; for an ELF debug file that is
``_.debug/elf-buildid-sym-…/_.debug`` and ``01/23…/debuginfo``). Copies are whole-object replaces
in the backend, so publishing again is harmless.

**Withdrawing** (expiry, delete) is a sweep, not a reference count: the paths of the leaving
request minus the paths every *other* live sealed request provides (read from their manifests) are
deleted. A sweep has no counter to get out of step when a process dies between two writes: run it
again and it computes the same answer. Its cost is reading the live requests' manifests (cached
per process by ``ManifestStore``). Publishing and withdrawing must not interleave (a request being
sealed could lose a path that a sweep computed before it was visible): the operator runs them one at
a time.

Copies and deletes run ``AT_ONCE`` at a time: each is a small, independent, idempotent write (an
fsync'd file, or one S3 CopyObject/DeleteObject), so their latencies overlap instead of adding up;
a 100,000-entry request is several hundred thousand of them (docs/benchmarks.md). A failure stops
the rest; the caller repeats the whole, which computes the same work again.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, Iterable, Mapping
from typing import Any, TypeVar

from symbol_proxy import keys, layouts
from symbol_proxy.backends import base
from symbol_service import vsohash, wire
from symbol_service.blobs import BlobStore
from symbol_service.manifests import ManifestStore

__all__ = ["AT_ONCE", "Publisher", "entry_paths"]

AT_ONCE = 16
"""Copies or deletes in flight at once: enough to hide a disk's fsync or S3's round trip, few enough
that the store and the event loop are not flooded."""

T = TypeVar("T")


async def _each(items: Iterable[T], action: Callable[[T], Awaitable[None]]) -> int:
    """Run ``action`` on every item, ``AT_ONCE`` at a time; how many ran. The first failure cancels
    the others and is raised."""
    pending = iter(items)
    done = 0

    async def worker() -> None:
        nonlocal done
        for item in pending:  # one iterator shared by the workers: each item is taken once
            await action(item)
            done += 1

    try:
        async with asyncio.TaskGroup() as group:
            for _ in range(AT_ONCE):
                group.create_task(worker())
    except BaseExceptionGroup as group_error:
        raise group_error.exceptions[0] from None
    return done


def entry_paths(client_key: str) -> list[str]:
    """Where sidecars look for the file of a SymSrv client key, the key itself first.

    The service matches client keys ignoring case, so one entry stands for the SymSrv spelling (names
    as built: ``HelloWorld.exe/…/HelloWorld.exe``) and the SSQP one (names lower-cased), and a
    sidecar on a case-sensitive store asks with the client's spelling: both are published.
    """
    parts = client_key.split("/")
    spellings = [client_key]
    if len(parts) == 3:
        spellings.append(f"{parts[0].lower()}/{parts[1]}/{parts[2].lower()}")
    paths: list[str] = []
    for spelling in spellings:
        paths.append(spelling)
        parsed = keys.parse_symstore_path(spelling)
        if parsed is not None:
            filetypes, query = parsed
            for filetype in filetypes:
                paths += layouts.symstore_paths(filetype, query) + layouts.unified_paths(filetype, query)
    return list(dict.fromkeys(paths))


def _published(entries: Mapping[str, dict[str, Any]]) -> Iterable[tuple[str, str]]:
    """(blob id hex, path) of every created entry."""
    for entry in entries.values():
        if int(entry.get("status") or 0) != wire.DebugEntryStatus.CREATED:
            continue
        for path in entry_paths(str(entry["clientKey"])):
            yield str(entry["blobId"]), path


class Publisher:
    def __init__(self, backend: base.WritableBackend) -> None:
        self.backend = backend
        self.manifests = ManifestStore(backend)

    async def publish(self, request_id: str, segments: int) -> int:
        """Copy the sealed request's files to their lookup paths; how many paths were written."""
        entries = await self.manifests.entries(request_id, segments=segments)

        async def copy(item: tuple[str, str]) -> None:
            blob_hex, path = item
            await self.backend.copy(BlobStore.blob_location(vsohash.BlobId.from_hex(blob_hex)), path)

        return await _each(_published(entries), copy)

    async def paths(self, request_id: str, segments: int) -> set[str]:
        return {path for _, path in _published(await self.manifests.entries(request_id, segments=segments))}

    async def withdraw(self, request_id: str, segments: int | None, others: Iterable[tuple[str, int]]) -> int:
        """Delete the request's lookup paths that none of ``others`` (live sealed requests: id and
        sealed segments) provides; how many were deleted. Absent paths are not an error."""
        if segments is None:
            return 0
        keep: set[str] = set()
        for other_id, other_segments in others:
            keep |= await self.paths(other_id, other_segments)
        return await _each(sorted(await self.paths(request_id, segments) - keep), self.backend.delete)

    async def forget(self, request_id: str) -> None:
        """Delete the request's manifest (after its paths are withdrawn)."""
        await self.manifests.remove(request_id)
