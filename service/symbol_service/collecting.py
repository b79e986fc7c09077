"""Garbage collection of the publish store: what no request needs any more (``symbol-service gc``).

Expiry and deletion withdraw a request's *published paths* and its manifest (the operator's
finalizer, ``symbol_operator.lifecycle``) but leave the blobs, because other requests may name them.
What is left over, and what crashes leave, is collected here:

- **blobs** (``_publish/blobs/``) that no request's manifest names;
- **staged blocks** (``_publish/blocks/``) of multi-block uploads never assembled;
- **staging objects** (``_publish/uploads/``) of nameless uploads cut off before their copy;
- **manifests** (``_publish/requests/<id>/``) of requests that no longer exist (a batch that was
  still writing when its request was deleted);
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

**What the grace period cannot cover** (docs/publishing.md): an entry that names an *old,
unreferenced* blob (a file published again after the request that had it expired) in the moment
between this sweep reading the manifests and deleting that blob. The entry then says ``created``
but its blob is gone: symsrv and ``contents`` answer 404 for it and the operator cannot publish the
request (it logs the failure at each retry) until the blob is uploaded again. Running the collection
rarely (the chart's CronJob runs it daily) keeps that window to seconds a day.

The decision is pure (:func:`plan`); :func:`collect` does the I/O around it.
"""

from __future__ import annotations

import dataclasses
import datetime
import logging
from collections.abc import Iterable, Mapping

from symbol_proxy.backends import base
from symbol_service.blobs import PREFIX
from symbol_service.manifests import ManifestStore
from symbol_service.requeststore import RequestStore

__all__ = ["Collected", "Plan", "collect", "plan"]

log = logging.getLogger(__name__)

BLOBS = f"{PREFIX}/blobs/"
BLOCKS = f"{PREFIX}/blocks/"
UPLOADS = f"{PREFIX}/uploads/"
REQUESTS = f"{PREFIX}/requests/"


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


async def collect(
    backend: base.ListableBackend,
    requests: RequestStore,
    *,
    grace: datetime.timedelta,
    now: datetime.datetime | None = None,
    dry_run: bool = False,
) -> Collected:
    """One collection of the publish store (see the module docstring)."""
    cutoff = (now or datetime.datetime.now(datetime.UTC)) - grace
    listed = [item async for item in backend.list(f"{PREFIX}/")]  # first: later writes are no candidates
    known = {record.id for record in await requests.list()}
    orphaned = orphans(listed, known, cutoff)
    manifests = ManifestStore(backend)
    referenced: set[str] = set()
    for request_id in {request_of_segment(item.location) for item in listed} | known:
        if request_id is None or request_id in orphaned:
            continue
        for entry in (await manifests.entries(request_id)).values():
            referenced.add(str(entry["blobId"]).upper())
    decided = plan(listed, referenced, orphaned, cutoff)
    incomplete = 0
    if not dry_run:
        for location in decided.blobs + decided.blocks + decided.uploads + decided.manifests:
            await backend.delete(location)
        incomplete = await backend.remove_incomplete(cutoff)
    collected = Collected(
        blobs=len(decided.blobs),
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
