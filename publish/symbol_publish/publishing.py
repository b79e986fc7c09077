"""``--server``: publish a plan into a Symbol Service request, and finish it on a retry.

The flow is the one Azure's clients follow (create → post entries → upload what is missing →
re-post → seal), made restartable:

* The request's description carries a fingerprint of what is published (every client key with its
  blob id). A create that answers 409 looks the request up by name: the same fingerprint means a
  previous run of this same publish failed somewhere (network, a killed process, a 5xx), and this
  run finishes that request (a sealed one is already done). Another fingerprint means someone
  else's request: ``RequestExists``, unless ``--append`` asks to add to it while it is unsealed.
* Posting entries is idempotent (an entry that exists with the same blob is answered as is), and
  an entry whose blob the service already holds comes back ``created``: a re-run uploads only the
  blobs that never arrived whole, so no blob is uploaded twice.
"""

from __future__ import annotations

import asyncio
import dataclasses
import datetime
import hashlib
from collections.abc import Sequence
from typing import Any

from symbol_publish import files
from symbol_publish.plans import Entry, Plan, Scanned
from symbol_publish.progress import Progress
from symbol_publish.service import RETRIES, RequestExists, ServerError, ServiceError, SymbolService

__all__ = ["Options", "Outcome", "publish"]

_FINGERPRINT = "symbol-publish content "


@dataclasses.dataclass(frozen=True)
class Options:
    name: str
    expiration_days: int | None = None
    append: bool = False
    seal: bool = True
    batch_size: int = 100
    concurrency: int = 4


@dataclasses.dataclass
class Outcome:
    request: dict[str, Any]
    entries: int = 0
    uploaded_blobs: int = 0
    uploaded_bytes: int = 0
    deduplicated_bytes: int = 0
    """Bytes of entries whose blob the service already held (from this request's earlier run, or any
    other request)."""
    resumed: bool = False
    already_sealed: bool = False


def _chunked(items: Sequence[Any], size: int) -> list[Sequence[Any]]:
    return [items[i : i + size] for i in range(0, len(items), size)]


def _level(entry: Entry) -> str:
    return "private" if entry.identity.has_debug_info or entry.identity.kind == "dbg" else "binary"


async def _hash_all(plan: Plan, progress: Progress) -> dict[str, str]:
    """Blob id (base64) of every file, hashed in threads."""
    loop = asyncio.get_running_loop()

    async def one(file: Scanned) -> str:
        blob = await loop.run_in_executor(None, files.vso_hash_file, file.path)
        progress.advance(file.size)
        progress.file_done()
        return blob.base64

    progress.start(len(plan.files), plan.total_bytes)
    try:
        ids = await asyncio.gather(*(one(f) for f in plan.files))
    finally:
        progress.close()
    return {f.relative: blob for f, blob in zip(plan.files, ids, strict=True)}


def fingerprint(plan: Plan, blob_ids: dict[str, str]) -> str:
    lines = sorted(f"{e.key.lower()} {blob_ids[e.file.relative]}" for e in plan.entries)
    return hashlib.sha256("\n".join(lines).encode()).hexdigest()


async def _open_request(
    service: SymbolService, options: Options, description: str
) -> tuple[dict[str, Any], bool]:
    """The request to publish into, and whether it is a resumed one."""
    expiration = None
    if options.expiration_days is not None:
        expiration = datetime.datetime.now(datetime.UTC) + datetime.timedelta(days=options.expiration_days)
    try:
        return await service.create_request(options.name, description, expiration), False
    except RequestExists:
        existing = await service.find_request(options.name)
        if existing is None:  # deleted in between: one more try
            return await service.create_request(options.name, description, expiration), False
    if existing.get("description") == description:
        return existing, True
    if not options.append:
        raise RequestExists(
            f"request {options.name!r} exists and holds another publish; use --append to add to it, "
            "or another name",
            type_key="RequestExistsException",
        )
    if existing.get("status") == "sealed":
        raise RequestExists(
            f"request {options.name!r} is sealed: nothing can be added to it",
            type_key="RequestSealedException",
        )
    return existing, False


async def publish(
    service: SymbolService, plan: Plan, options: Options, progress: Progress, hashing: Progress
) -> Outcome:
    """Publish ``plan``; ``hashing`` shows the hashing of every file, ``progress`` the uploads."""
    blob_ids = await _hash_all(plan, hashing)
    description = _FINGERPRINT + fingerprint(plan, blob_ids)
    request, resumed = await _open_request(service, options, description)
    outcome = Outcome(request=request, entries=len(plan.entries), resumed=resumed)
    if request.get("status") == "sealed":
        outcome.already_sealed = True
        return outcome
    request_id = request["id"]

    def body(entry: Entry) -> dict[str, Any]:
        return {
            "clientKey": entry.key,
            "informationLevel": _level(entry),
            "blobIdentifier": {"identifierValue": blob_ids[entry.file.relative]},
        }

    batches = _chunked(plan.entries, options.batch_size)
    missing: dict[str, tuple[str, Scanned]] = {}  # blob id → (upload URI, a file with that content)
    pending: list[Sequence[Entry]] = []
    for batch in batches:
        answers = await service.post_entries(request_id, [body(e) for e in batch])
        had_missing = False
        for entry, answer in zip(batch, answers, strict=True):
            if answer.get("status") == "blobMissing":
                had_missing = True
                missing.setdefault(blob_ids[entry.file.relative], (answer["blobUri"], entry.file))
        if had_missing:
            pending.append(batch)

    limit = asyncio.Semaphore(options.concurrency)
    uploads = list(missing.values())
    if uploads:  # no bar for a publish that has nothing left to send
        progress.start(len(uploads), sum(file.size for _, file in uploads))

    async def upload(uri: str, file: Scanned) -> None:
        async with limit:
            for attempt in range(RETRIES):
                sent = 0

                def count(size: int) -> None:
                    nonlocal sent
                    sent += size
                    progress.advance(size)

                try:
                    await service.upload(uri, files.chunks(file.path, count), file.size)
                    break
                except ServerError:
                    progress.advance(-sent)  # the attempt's bytes are sent again
                    if attempt + 1 == RETRIES:
                        raise
                    await asyncio.sleep(0.5 * 2**attempt)
            progress.file_done()
            outcome.uploaded_blobs += 1
            outcome.uploaded_bytes += file.size

    try:
        await asyncio.gather(*(upload(uri, file) for uri, file in uploads))
    finally:
        progress.close()

    for batch in pending:
        answers = await service.post_entries(request_id, [body(e) for e in batch])
        still = [a.get("clientKey") for a in answers if a.get("status") != "created"]
        if still:
            raise ServiceError(
                f"entries still without content after the upload: {', '.join(map(str, still))}"
            )
    sizes = {blob_ids[f.relative]: f.size for f in plan.files}
    outcome.deduplicated_bytes = sum(sizes.values()) - outcome.uploaded_bytes
    if options.seal:
        outcome.request = await service.seal(request_id)
    return outcome
