"""Garbage collection of the publish store: what no request needs any more (``symbol-service gc``).

Expiry and deletion withdraw a request's *published paths* and its manifest (the operator's
finalizer, ``symbol_operator.lifecycle``) but leave the blobs, because other requests may name them.
What is left over, and what crashes leave, is collected here:

- **blobs** (``_publish/blobs/``) that no request's manifest names;
- **staged blocks** (``_publish/blocks/``) of multi-block uploads never assembled;
- **staging objects** (``_publish/uploads/``) of nameless uploads cut off before their copy;
- **manifests** (``_publish/requests/<id>/``) of requests that no longer exist (a batch that was
  still writing when its request was deleted);
- **tombstones** of an earlier collection that crashed (below);
- the store's **incomplete writes**: S3 multipart uploads never completed or aborted, the
  filesystem's temporary files.

**References.** A blob is referenced when any entry (any status, any segment, sealed or not) of any
request that still exists names it — open, sealed, unavailable or being finalized alike — or of a
manifest younger than the grace period. Requests are read from the same ``RequestStore`` the
service uses (the SymbolRequest resources).

**The grace period** (``gc.grace_period``, default 24 h) protects work in progress: only objects
last written before ``now - grace`` are candidates. A blob uploaded a moment ago, before the entry
re-post that will name it, is young; a multipart upload or a block being written is young. The store
is listed *before* the references are read, so a blob written after the listing is never a
candidate, and an entry written before the reading is seen.

**An old blob named again during the collection.** The grace period cannot protect an *old,
unreferenced* blob that a new entry names (a file published again after the request that had it
expired) between the moment this sweep reads the manifests and the moment it deletes the blob. So
blobs are not deleted on the first reading: the collection writes a **tombstone** for each blob it
means to delete (``_publish/condemned/<BLOBID-HEX>.json``, valid for ``TOMBSTONE_LIFETIME``), waits
``SETTLE`` seconds, reads the references again, and deletes only the blobs still unreferenced;
then it removes the tombstones. The service, for its part (``blobs``): an entry never becomes
``created`` for a blob with a valid tombstone, an upload of such a blob answers 503, and a batch
that found a named blob in the store writes its segment within ``blobs.NAMING_LIMIT`` seconds of
that check or not at all. ``SETTLE`` is longer than that limit, so an entry that checked the blob
before its tombstone existed is in the manifests when they are read again, and one that checked
afterwards did not name it. A collection deletes no blob once its tombstones are older than half
their lifetime (the service ignores expired tombstones: a crashed collection blocks nothing for
long); the blobs left are considered again by the next run, which also removes expired tombstones.
One collection runs at a time (the chart's CronJob: ``concurrencyPolicy: Forbid``).

The decision is pure (:func:`plan`); :func:`collect` does the I/O around it.
"""

from __future__ import annotations

import asyncio
import dataclasses
import datetime
import logging
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Iterable, Mapping

from symbol_proxy.backends import base
from symbol_service import vsohash
from symbol_service.blobs import NAMING_LIMIT, PREFIX, BlobStore, tombstone
from symbol_service.manifests import ManifestStore
from symbol_service.requeststore import RequestStore

__all__ = ["Collected", "Plan", "collect", "plan"]

log = logging.getLogger(__name__)


async def _sleep() -> None:
    await asyncio.sleep(SETTLE)


BLOBS = f"{PREFIX}/blobs/"
BLOCKS = f"{PREFIX}/blocks/"
UPLOADS = f"{PREFIX}/uploads/"
REQUESTS = f"{PREFIX}/requests/"
CONDEMNED = f"{PREFIX}/condemned/"

SETTLE = NAMING_LIMIT + 30.0
"""Seconds between condemning blobs and reading the references again: longer than a batch of debug
entries may take from finding a blob to writing its segment (``blobs.NAMING_LIMIT``), with room for
a slow store's write."""

CONDEMNED_AT_ONCE = 10_000
"""Blobs condemned in one round (tombstones, the wait, the second reading, the deletes), so that a
round's deletes stay well within the first half of its tombstones' lifetime even on a slow store."""

TOMBSTONE_LIFETIME = datetime.timedelta(hours=1)
"""How long the service honours a tombstone. A collection deletes blobs only in the first half of
it, which leaves half an hour for clock differences between the collector and the service."""


@dataclasses.dataclass(frozen=True, slots=True)
class Plan:
    """What one collection deletes, by kind; every item is a store location."""

    blobs: list[str]
    blocks: list[str]
    uploads: list[str]
    manifests: list[str]
    kept_young: int
    """Unreferenced objects kept only because they are younger than the grace period."""


@dataclasses.dataclass(frozen=True, slots=True)
class Collected:
    """What one collection removed (counts), and what it kept for being young."""

    blobs: int
    blocks: int
    uploads: int
    manifests: int
    incomplete: int
    kept_young: int


def request_of_segment(location: str) -> str | None:
    """The request id of a manifest segment's location, or ``None`` for anything else."""
    parts = location[len(REQUESTS) :].split("/") if location.startswith(REQUESTS) else []
    return parts[0] if len(parts) == 3 and parts[1] == "entries" else None


def blob_of(location: str) -> str | None:
    """The blob id (hex) of a blob's location, or ``None``."""
    name = location[len(BLOBS) :]
    return name[: -len(".blob")] if name.endswith(".blob") and "/" not in name else None


def orphans(
    listed: Iterable[base.Listed], known: set[str], cutoff: datetime.datetime
) -> dict[str, list[str]]:
    """Segments, by request id, of manifests whose request does not exist and whose newest segment
    is older than ``cutoff``."""
    segments: dict[str, list[base.Listed]] = {}
    for item in listed:
        request_id = request_of_segment(item.location)
        if request_id is not None and request_id not in known:
            segments.setdefault(request_id, []).append(item)
    return {
        request_id: [item.location for item in items]
        for request_id, items in segments.items()
        if max(item.modified for item in items) < cutoff
    }


def plan(
    listed: Iterable[base.Listed],
    referenced: set[str],
    orphaned: Mapping[str, list[str]],
    cutoff: datetime.datetime,
) -> Plan:
    """What to delete of the ``_publish/`` listing: old unreferenced blobs (``referenced`` holds
    blob ids in hex), old blocks and staging objects, and the ``orphaned`` manifests."""
    blobs: list[str] = []
    blocks: list[str] = []
    uploads: list[str] = []
    young = 0
    for item in listed:
        blob = blob_of(item.location)
        if blob is not None and blob.upper() in referenced:
            continue
        if blob is None and not item.location.startswith((BLOCKS, UPLOADS)):
            continue  # manifests are decided by ``orphaned``; anything else is not ours to remove
        if item.modified >= cutoff:
            young += 1
            continue
        (blobs if blob is not None else blocks if item.location.startswith(BLOCKS) else uploads).append(
            item.location
        )
    manifests = [location for locations in orphaned.values() for location in locations]
    return Plan(sorted(blobs), sorted(blocks), sorted(uploads), sorted(manifests), young)


async def _references(
    listed: list[base.Listed], requests: RequestStore, manifests: ManifestStore, cutoff: datetime.datetime
) -> tuple[set[str], dict[str, list[str]]]:
    """The blob ids (hex, upper case) that entries name, and the orphaned manifests."""
    known = {record.id for record in await requests.list()}
    orphaned = orphans(listed, known, cutoff)
    referenced: set[str] = set()
    for request_id in {request_of_segment(item.location) for item in listed} | known:
        if request_id is None or request_id in orphaned:
            continue
        for entry in (await manifests.entries(request_id)).values():
            referenced.add(str(entry["blobId"]).upper())
    return referenced, orphaned


async def _delete_condemned(
    backend: base.ListableBackend,
    candidates: list[str],
    again: Callable[[], Awaitable[set[str]]],
    settle: Callable[[], Awaitable[None]],
) -> list[str]:
    """Condemn the ``candidates`` (blob locations), wait, and delete those that ``again`` (the
    references read anew) does not name; the locations deleted."""
    if not candidates:
        return []
    started = time.monotonic()
    until = datetime.datetime.now(datetime.UTC) + TOMBSTONE_LIFETIME
    content = tombstone(until)
    ids = {location: vsohash.BlobId.from_hex(str(blob_of(location))) for location in candidates}

    async def body() -> AsyncIterator[bytes]:
        yield content

    for blob_id in ids.values():
        await backend.put(BlobStore.tombstone_location(blob_id), body(), size=len(content))
    await settle()
    referenced = await again()
    deleted: list[str] = []
    for location, blob_id in ids.items():
        in_time = time.monotonic() - started < TOMBSTONE_LIFETIME.total_seconds() / 2
        if blob_id.hex.upper() not in referenced and in_time:
            await backend.delete(location)
            deleted.append(location)
        await backend.delete(BlobStore.tombstone_location(blob_id))
    return deleted


async def collect(
    backend: base.ListableBackend,
    requests: RequestStore,
    *,
    grace: datetime.timedelta,
    now: datetime.datetime | None = None,
    dry_run: bool = False,
    settle: Callable[[], Awaitable[None]] | None = None,
) -> Collected:
    """One collection of the publish store (see the module docstring). ``settle`` replaces the
    wait of ``SETTLE`` seconds between condemning blobs and reading the references again."""
    cutoff = (now or datetime.datetime.now(datetime.UTC)) - grace
    listed = [item async for item in backend.list(f"{PREFIX}/")]  # first: later writes are no candidates
    manifests = ManifestStore(backend)
    referenced, orphaned = await _references(listed, requests, manifests, cutoff)
    decided = plan(listed, referenced, orphaned, cutoff)
    incomplete = 0
    blobs = decided.blobs
    if not dry_run:

        async def again() -> set[str]:
            return (await _references(listed, requests, manifests, cutoff))[0]

        blobs = []
        for start in range(0, len(decided.blobs), CONDEMNED_AT_ONCE):
            round_ = decided.blobs[start : start + CONDEMNED_AT_ONCE]
            blobs += await _delete_condemned(backend, round_, again, settle or _sleep)
        for location in decided.blocks + decided.uploads + decided.manifests:
            await backend.delete(location)
        expired = datetime.datetime.now(datetime.UTC) - TOMBSTONE_LIFETIME
        for item in listed:  # tombstones a crashed collection left behind
            if item.location.startswith(CONDEMNED) and item.modified < expired:
                await backend.delete(item.location)
        incomplete = await backend.remove_incomplete(cutoff)
    collected = Collected(
        blobs=len(blobs),
        blocks=len(decided.blocks),
        uploads=len(decided.uploads),
        manifests=len(decided.manifests),
        incomplete=incomplete,
        kept_young=decided.kept_young,
    )
    log.info(
        "garbage collection%s (grace %s): %s",
        " (dry run)" if dry_run else "",
        grace,
        ", ".join(
            f"{field.name} {getattr(collected, field.name)}" for field in dataclasses.fields(collected)
        ),
    )
    return collected
