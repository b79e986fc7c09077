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
* A file larger than ``Options.block_threshold`` is uploaded block by block (spec §7: the 2 MiB
  blocks of its VSO-Hash, each posted with its block hash and retried on its own), and its entries
  are re-posted with ``blobDetails`` listing the blocks, from which the service assembles the blob.
  Each acknowledged block is journaled (``state.BlockJournal``), so an interrupted upload resumes
  after the last acknowledged block; if the service no longer holds them (the re-post still says
  ``blobMissing``), every block is sent once more.
* ``state.FileCache`` spares a re-run the hashing of files that did not change.
"""

from __future__ import annotations

import asyncio
import base64
import dataclasses
import datetime
import hashlib
from collections.abc import Awaitable, Callable, Sequence
from pathlib import Path
from typing import Any

from symbol_publish import files
from symbol_publish.files import Hashed
from symbol_publish.plans import Entry, Plan, Scanned
from symbol_publish.progress import Progress
from symbol_publish.service import RETRIES, RequestExists, ServerError, ServiceError, SymbolService
from symbol_publish.state import BlockJournal, FileCache
from symbol_service import vsohash

__all__ = ["DEFAULT_BLOCK_THRESHOLD", "Options", "Outcome", "publish"]

DEFAULT_BLOCK_THRESHOLD = 64 * 1024 * 1024
"""Files larger than this are uploaded in blocks; smaller ones in one PUT."""

_FINGERPRINT = "symbol-publish content "


@dataclasses.dataclass(frozen=True)
class Options:
    name: str
    expiration_days: int | None = None
    append: bool = False
    seal: bool = True
    batch_size: int = 100
    concurrency: int = 4
    block_threshold: int = DEFAULT_BLOCK_THRESHOLD


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
    hashed_files: int = 0
    cached_files: int = 0
    """Files whose blob id came from the hash cache instead of being hashed again."""
    uploaded_blocks: int = 0
    resumed_blocks: int = 0
    """Blocks an earlier, interrupted run had uploaded, not sent again."""


def _chunked(items: Sequence[Any], size: int) -> list[Sequence[Any]]:
    return [items[i : i + size] for i in range(0, len(items), size)]


def _level(entry: Entry) -> str:
    return "private" if entry.identity.has_debug_info or entry.identity.kind == "dbg" else "binary"


async def _hash_all(plan: Plan, progress: Progress, cache: FileCache) -> dict[str, Hashed]:
    """Blob id and block hashes of every file: from the cache, or hashed in threads."""
    loop = asyncio.get_running_loop()

    def hashed(path: Path) -> Hashed:
        before = path.stat().st_mtime_ns
        result = files.hash_file(path)
        cache.put_hashed(path, before, result)
        return result

    async def one(file: Scanned) -> Hashed:
        result = cache.hashed(file.path)
        if result is None:
            result = await loop.run_in_executor(None, hashed, file.path)
        progress.advance(file.size)
        progress.file_done()
        return result

    progress.start(len(plan.files), plan.total_bytes)
    try:
        found = await asyncio.gather(*(one(f) for f in plan.files))
    finally:
        progress.close()
    await loop.run_in_executor(None, cache.save)
    return {f.relative: h for f, h in zip(plan.files, found, strict=True)}


async def _retried(send: Callable[[], Awaitable[None]], undo: Callable[[], None] = lambda: None) -> None:
    """``send`` again after a network error or a 5xx (``undo`` first), ``RETRIES`` times in all."""
    for attempt in range(RETRIES):
        try:
            await send()
            return
        except ServerError:
            undo()
            if attempt + 1 == RETRIES:
                raise
            await asyncio.sleep(0.5 * 2**attempt)


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
    service: SymbolService,
    plan: Plan,
    options: Options,
    progress: Progress,
    hashing: Progress,
    cache: FileCache | None = None,
    journal: BlockJournal | None = None,
) -> Outcome:
    """Publish ``plan``; ``hashing`` shows the hashing of every file, ``progress`` the uploads."""
    cache = cache or FileCache(None)
    journal = journal or BlockJournal(None, service.url)
    hashes = await _hash_all(plan, hashing, cache)
    blob_ids = {relative: h.blob.base64 for relative, h in hashes.items()}
    description = _FINGERPRINT + fingerprint(plan, blob_ids)
    request, resumed = await _open_request(service, options, description)
    outcome = Outcome(request=request, entries=len(plan.entries), resumed=resumed)
    outcome.cached_files, outcome.hashed_files = cache.hash_hits, cache.hash_misses
    if request.get("status") == "sealed":
        outcome.already_sealed = True
        return outcome
    request_id = request["id"]

    blocked: set[str] = set()
    """Blob ids uploaded in blocks: their entries are re-posted with ``blobDetails``."""
    journaled: dict[str, set[bytes]] = {}
    """Blob id → the blocks its upload skipped because an earlier run had sent them."""

    def body(entry: Entry) -> dict[str, Any]:
        hashed = hashes[entry.file.relative]
        identifier = {"identifierValue": hashed.blob.base64}
        posted: dict[str, Any] = {
            "clientKey": entry.key,
            "informationLevel": _level(entry),
            "blobIdentifier": identifier,
        }
        if hashed.blob.base64 in blocked:
            posted["blobDetails"] = {
                **identifier,
                "blockHashes": [{"hashBytes": base64.b64encode(b).decode()} for b in hashed.blocks],
            }
        return posted

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

    async def whole(uri: str, file: Scanned) -> None:
        sent = 0

        def count(size: int) -> None:
            nonlocal sent
            sent += size
            progress.advance(size)

        def undo() -> None:
            nonlocal sent
            progress.advance(-sent)  # the attempt's bytes are sent again
            sent = 0

        await _retried(lambda: service.upload(uri, files.chunks(file.path, count), file.size), undo)

    async def in_blocks(uri: str, file: Scanned, hashed: Hashed, only: set[bytes] | None = None) -> None:
        """Post the file's blocks, after those the journal says an interrupted run sent; or, with
        ``only``, just those blocks again (the journal's, which the service no longer holds)."""
        loop = asyncio.get_running_loop()
        skip = set(hashed.blocks) - only if only is not None else journal.acknowledged(hashed.blob)
        if only is None and skip:
            journaled[hashed.blob.base64] = set(skip)
        todo: dict[bytes, int] = {}  # block → the index of its first occurrence
        seen: set[bytes] = set()
        for index, block in enumerate(hashed.blocks):
            size = min(vsohash.BLOCK_SIZE, file.size - index * vsohash.BLOCK_SIZE)
            if block in seen:  # the same content earlier in this file: each block is sent once
                progress.advance(size)
                continue
            seen.add(block)
            if block in skip:
                outcome.resumed_blocks += only is None
                progress.advance(size)
            else:
                todo[block] = index
        sending = asyncio.Semaphore(options.concurrency)

        async def send(block: bytes, index: int) -> None:
            size = min(vsohash.BLOCK_SIZE, file.size - index * vsohash.BLOCK_SIZE)
            async with sending:
                data = await loop.run_in_executor(None, files.read_block, file.path, index)
                if len(data) != size or await loop.run_in_executor(None, vsohash.block_hash, data) != block:
                    raise ServiceError(f"{file.relative} changed while it was published; run again")
                await _retried(lambda: service.upload_block(uri, block, data))
            journal.add(hashed.blob, block)
            outcome.uploaded_blocks += 1
            progress.advance(size)

        await asyncio.gather(*(send(block, index) for block, index in todo.items()))
        blocked.add(hashed.blob.base64)

    async def upload(uri: str, file: Scanned) -> None:
        async with limit:
            hashed = hashes[file.relative]
            if file.size > options.block_threshold:
                await in_blocks(uri, file, hashed)
            else:
                await whole(uri, file)
            progress.file_done()
            outcome.uploaded_blobs += 1
            outcome.uploaded_bytes += file.size

    try:
        await asyncio.gather(*(upload(uri, file) for uri, file in uploads))
    finally:
        progress.close()

    for batch in pending:
        answers = await service.post_entries(request_id, [body(e) for e in batch])
        still = [e for e, a in zip(batch, answers, strict=True) if a.get("status") != "created"]
        # Blocks journaled by an earlier run that the service no longer holds: send them all again.
        again = {blob_ids[e.file.relative]: e.file for e in still if blob_ids[e.file.relative] in journaled}
        if still and len(again) == len({blob_ids[e.file.relative] for e in still}):
            for blob, file in again.items():
                await in_blocks(missing[blob][0], file, hashes[file.relative], only=journaled.pop(blob))
            answers = await service.post_entries(request_id, [body(e) for e in batch])
            still = [e for e, a in zip(batch, answers, strict=True) if a.get("status") != "created"]
        if still:
            raise ServiceError(
                f"entries still without content after the upload: {', '.join(e.key for e in still)}"
            )
    for blob in blocked:
        journal.forget(vsohash.BlobId.from_base64(blob))
    sizes = {blob_ids[f.relative]: f.size for f in plan.files}
    outcome.deduplicated_bytes = sum(sizes.values()) - outcome.uploaded_bytes
    if options.seal:
        outcome.request = await service.seal(request_id)
    return outcome
