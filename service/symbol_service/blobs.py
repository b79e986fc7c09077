"""Blobs in the publish store: content-addressed by VSO-Hash, verified before they become visible.

Layout below the store's root (``docs/publishing.md``)::

    _publish/blobs/<BLOBID-HEX>.blob               one object per distinct content
    _publish/uploads/<random>                      an upload without a named id, while it is hashed
    _publish/blocks/<BLOBID-HEX>/<BLOCK-HEX>.block staged blocks of a multi-block upload
    _publish/condemned/<BLOBID-HEX>.json           a garbage collection's tombstone (below)

A whole-blob upload streams through ``VsoHasher`` into a conditional create at the blob's name; the
body raises at its end when the content does not hash to the name, which makes the backend throw the
write away (no temporary file, no multipart upload survives). So an object at a blob's name always
has that VSO-Hash, and "the blob exists" is the check the debug-entry re-post needs. Two uploads of
one blob race harmlessly: one create wins, the other is a deduplicated upload.

**The garbage collector's tombstones** (``symbol_service.collecting``): before it deletes old
unreferenced blobs, a collection writes a tombstone for each (``_publish/condemned/<BLOBID-HEX>.json``,
valid until a time it names), waits ``SETTLE`` seconds and reads the references again. While a
tombstone is valid the blob is not stored as far as naming goes (:meth:`BlobStore.nameable_size`:
a new entry stays ``blobMissing``) and an upload of it answers 503 (retry: the collector is about to
keep or delete it). An entry that names a blob found in the store (not one this process has just
stored) must be written within ``NAMING_LIMIT`` seconds of that check, or its batch is refused with
503 and writes nothing; since ``SETTLE`` is longer, a batch that checked before the tombstone was
written has written its entry when the collector reads the references again.

A multi-block upload stores each block (verified against its block hash) and assembles the blob when
a debug entry's ``blobDetails`` lists the blocks in order; the assembled stream is verified the same
way, and the blocks are removed afterwards — also when the blob turns out to be stored already (a
concurrent publisher uploaded it whole), so racing publishers leave no staged blocks behind.
"""

from __future__ import annotations

import asyncio
import base64
import collections
import datetime
import json
import secrets
import time
from collections.abc import AsyncIterator, Sequence

from symbol_proxy.backends import base
from symbol_service import errors, vsohash

__all__ = ["NAMING_LIMIT", "BlobStore", "Upload", "tombstone", "tombstone_until"]

PREFIX = "_publish"


class _HashMismatch(base.Malformed):
    pass


EMPTY = vsohash.vso_hash(b"")


class _EmptyStream:
    info = base.ObjectInfo(size=0)

    async def chunks(self) -> AsyncIterator[bytes]:
        return
        yield b""

    async def aclose(self) -> None:
        return None


class Upload:
    """The outcome of one upload: the id, the bytes received, and whether it was already stored."""

    def __init__(self, blob_id: vsohash.BlobId, size: int, deduplicated: bool) -> None:
        self.blob_id = blob_id
        self.size = size
        self.deduplicated = deduplicated


def _mismatch(what: str) -> errors.ServiceError:
    return errors.ServiceError("BlobHashMismatchException", f"The uploaded content does not hash to {what}.")


HASH_BATCH = 1024 * 1024
"""Bytes handed to the hashing thread at a time."""

STORED_TRUST = 600.0
"""Seconds for which a blob this process has itself just stored is known to exist without asking
the store again (the debug-entry re-post right after the upload then costs no HEAD). Safe because a
stored blob only goes away through garbage collection, which never removes a blob younger than its
grace period, and that is at least an hour (``config.Collection``)."""

NAMING_LIMIT = 120.0
"""Seconds within which a batch of debug entries must start writing its segment after it first
found a named blob in the store (not remembered); later, it is refused (503) and writes nothing.
The garbage collector waits longer than this between condemning blobs and reading the references
again (``collecting.SETTLE``)."""

STORED_REMEMBERED = 100_000
"""Most blobs remembered at once (about 150 bytes each)."""


class BlobStore:
    def __init__(self, backend: base.WritableBackend) -> None:
        self.backend = backend
        self._stored: collections.OrderedDict[vsohash.BlobId, tuple[int, float]] = collections.OrderedDict()

    def _remember(self, blob_id: vsohash.BlobId, size: int) -> None:
        self._stored[blob_id] = (size, time.monotonic())
        self._stored.move_to_end(blob_id)
        while len(self._stored) > STORED_REMEMBERED:
            self._stored.popitem(last=False)

    @staticmethod
    def blob_location(blob_id: vsohash.BlobId) -> str:
        return f"{PREFIX}/blobs/{blob_id.hex}.blob"

    @staticmethod
    def block_location(blob_id: vsohash.BlobId, block: bytes) -> str:
        return f"{PREFIX}/blocks/{blob_id.hex}/{block.hex().upper()}.block"

    @staticmethod
    def tombstone_location(blob_id: vsohash.BlobId) -> str:
        return f"{PREFIX}/condemned/{blob_id.hex}.json"

    async def condemned(self, blob_id: vsohash.BlobId) -> bool:
        """Whether a garbage collection has condemned the blob and its tombstone is still valid."""
        try:
            stream = await self.backend.open(self.tombstone_location(blob_id))
        except base.NotFound:
            return False
        try:
            data = b"".join([chunk async for chunk in stream.chunks()])
        finally:
            await stream.aclose()
        until = tombstone_until(data)
        # An unreadable tombstone counts: the collector may be about to delete the blob.
        return until is None or datetime.datetime.now(datetime.UTC) < until

    async def nameable_size(self, blob_id: vsohash.BlobId) -> tuple[int | None, bool]:
        """The size of the blob as a new debug entry may name it (``None``: not stored, or condemned
        by a garbage collection), and whether the answer came from the store (then the entry
        must be written within ``NAMING_LIMIT``); a blob this process has just stored is young,
        which no collection condemns."""
        remembered = self._remembered(blob_id)
        if remembered is not None:
            return remembered, False
        size = await self.size(blob_id)
        if size is None or await self.condemned(blob_id):
            return None, True
        return size, True

    def _remembered(self, blob_id: vsohash.BlobId) -> int | None:
        remembered = self._stored.get(blob_id)
        if remembered is not None and time.monotonic() - remembered[1] < STORED_TRUST:
            return remembered[0]
        return None

    async def _refuse_condemned(self, blob_id: vsohash.BlobId) -> None:
        if await self.condemned(blob_id):
            raise errors.ServiceError(
                "ServiceUnavailableException",
                f"Blob {blob_id.hex} is being garbage-collected; upload it again in a minute.",
            )

    async def size(self, blob_id: vsohash.BlobId) -> int | None:
        """The stored blob's size, or ``None`` when it is not stored."""
        remembered = self._remembered(blob_id)
        if remembered is not None:
            return remembered
        try:
            info = await self.backend.head(self.blob_location(blob_id))
        except base.NotFound:
            return None
        return info.size

    async def open(self, blob_id: vsohash.BlobId) -> base.ObjectStream:
        if blob_id == EMPTY and await self.size(blob_id) == 0:
            # Some stores refuse to read an empty object back (the S3 backend calls it "not found",
            # as Symbolicator does); an empty file is still a file a request can publish.
            return _EmptyStream()
        return await self.backend.open(self.blob_location(blob_id))

    async def _verified(
        self, blob_id: vsohash.BlobId, chunks: AsyncIterator[bytes], limit: int, counter: list[int]
    ) -> AsyncIterator[bytes]:
        """``chunks``, hashed on the way; raises at the end if they do not hash to ``blob_id``.

        The bytes are hashed in a worker thread, ``HASH_BATCH`` at a time, while the consumer writes
        them (hashlib releases the GIL), so hashing and writing overlap instead of adding up; batches
        rather than the request's chunks (often 64 KiB) keep the thread hand-overs few. The last
        partial batch is hashed here.
        """
        loop = asyncio.get_running_loop()
        hasher = vsohash.VsoHasher()
        hashing: asyncio.Future[None] | None = None
        pending = bytearray()
        try:
            async for chunk in chunks:
                counter[0] += len(chunk)
                if counter[0] > limit:
                    raise errors.ServiceError(
                        "RequestEntityTooLargeException", f"A blob may have at most {limit} bytes."
                    )
                pending += chunk
                if len(pending) >= HASH_BATCH:
                    if hashing is not None:
                        await hashing
                    hashing = loop.run_in_executor(None, hasher.update, bytes(pending))
                    pending.clear()
                yield chunk
            if hashing is not None:
                await hashing
                hashing = None
            hasher.update(pending)
        finally:
            if hashing is not None:
                await asyncio.shield(hashing)  # never leave a thread updating a hasher we dropped
        if hasher.finish() != blob_id:
            raise _HashMismatch(blob_id.hex)

    async def put(
        self, blob_id: vsohash.BlobId, chunks: AsyncIterator[bytes], *, size: int | None, limit: int
    ) -> Upload:
        """Store a whole blob whose content must hash to ``blob_id``."""
        counter = [0]
        try:
            await self.backend.create(
                self.blob_location(blob_id), self._verified(blob_id, chunks, limit, counter), size=size
            )
        except base.AlreadyExists:
            await self._refuse_condemned(blob_id)
            return Upload(blob_id, counter[0], deduplicated=True)
        except _HashMismatch:
            raise _mismatch(f"the blob id {blob_id.hex}") from None
        self._remember(blob_id, counter[0])
        return Upload(blob_id, counter[0], deduplicated=False)

    async def upload(self, chunks: AsyncIterator[bytes], *, size: int | None, limit: int) -> Upload:
        """Store a whole blob whose id is not known in advance (our own publisher's convenience, and
        ``curl``'s): the bytes go to a staging object while they are hashed, which is then copied to
        the blob's name (the same bytes, so a copy over an existing blob changes nothing) and
        removed. Costs a server-side copy more than ``put``; Azure clients always name the blob."""
        staging = f"{PREFIX}/uploads/{secrets.token_hex(16)}"
        hasher = vsohash.VsoHasher()

        async def hashed() -> AsyncIterator[bytes]:
            async for chunk in chunks:
                if hasher.size + len(chunk) > limit:
                    raise errors.ServiceError(
                        "RequestEntityTooLargeException", f"A blob may have at most {limit} bytes."
                    )
                await asyncio.get_running_loop().run_in_executor(None, hasher.update, chunk)
                yield chunk

        try:
            await self.backend.put(staging, hashed(), size=size)
            blob_id = hasher.finish()
            if await self.size(blob_id) is not None:
                await self._refuse_condemned(blob_id)
                return Upload(blob_id, hasher.size, deduplicated=True)
            await self.backend.copy(staging, self.blob_location(blob_id))
            self._remember(blob_id, hasher.size)
            return Upload(blob_id, hasher.size, deduplicated=False)
        finally:
            await asyncio.shield(self.backend.delete(staging))

    async def put_block(self, blob_id: vsohash.BlobId, block_hash: bytes, data: bytes) -> bool:
        """Stage one block; ``False`` when it was already staged."""
        if vsohash.block_hash(data) != block_hash:
            raise _mismatch(f"the block hash {block_hash.hex().upper()}")

        async def body() -> AsyncIterator[bytes]:
            yield data

        try:
            await self.backend.create(self.block_location(blob_id, block_hash), body(), size=len(data))
        except base.AlreadyExists:
            return False
        return True

    async def assemble(self, blob_id: vsohash.BlobId, blocks: Sequence[bytes], *, limit: int) -> bool:
        """Build the blob from its staged blocks; ``False`` when a block is missing or the result
        does not hash to ``blob_id`` (nothing is stored then)."""
        if not blocks:
            return False
        for block in blocks:
            try:
                await self.backend.head(self.block_location(blob_id, block))
            except base.NotFound:
                return False

        async def body() -> AsyncIterator[bytes]:
            for block in blocks:
                stream = await self.backend.open(self.block_location(blob_id, block))
                try:
                    async for chunk in stream.chunks():
                        yield chunk
                finally:
                    await stream.aclose()

        try:
            await self.put(blob_id, body(), size=None, limit=limit)
        except errors.ServiceError:
            return False
        await self.discard_blocks(blob_id, blocks)
        return True

    async def discard_blocks(self, blob_id: vsohash.BlobId, blocks: Sequence[bytes]) -> None:
        """Remove staged blocks of a blob that is stored (assembled here, or uploaded whole by another
        publisher meanwhile); absent ones are not an error."""
        for block in set(blocks):
            await self.backend.delete(self.block_location(blob_id, block))


def tombstone(until: datetime.datetime) -> bytes:
    """A tombstone's content: valid until ``until``."""
    return json.dumps({"until": until.astimezone(datetime.UTC).isoformat()}).encode()


def tombstone_until(data: bytes) -> datetime.datetime | None:
    """Until when a tombstone is valid; ``None`` when it cannot be read."""
    try:
        until = datetime.datetime.fromisoformat(str(json.loads(data)["until"]))
    except (ValueError, KeyError, TypeError):
        return None
    return until if until.tzinfo else until.replace(tzinfo=datetime.UTC)


def block_hash_from_text(text: str) -> bytes:
    """A block hash as the block route names it (hex), or as JSON carries it (base64)."""
    try:
        raw = bytes.fromhex(text)
    except ValueError:
        try:
            raw = base64.b64decode(text, validate=True)
        except ValueError:
            raw = b""
    if len(raw) != 32:
        raise errors.ServiceError("InvalidEndpointParameterException", "blockHash is 32 bytes in hex.")
    return raw
