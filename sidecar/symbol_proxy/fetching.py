"""The producer of a cache entry: find the file upstream and stream it into the cache.

Plain files go straight through: every chunk is handed to readers and written behind them into
the cache's temporary file. When the source promises an MD5 (S3's ETag, GCS's ``x-goog-hash``), the
cache checks it on the finished file before the commit instead of the backend on the stream.
Compressed upstream files (a CAB ``.pd_``, gzip, zstd, a one-entry zip) are unpacked while they
arrive, in an executor with a size limit, and only the unpacked bytes are fed to the cache (and to
the readers): clients that asked for the plain name get the plain file, and the cache needs room for
that file alone. Containers that cannot be read front to back (an LZX CAB, a zip entry compressed
otherwise) are spooled and unpacked whole. A lookup with the client's ``SymbolChecksum`` is spooled
too, and a portable PDB that does not hash to that checksum is a miss for that lookup
(``docs/caching.md``). The spooled file and the unpacked one are temporary files of the cache,
counted against its cap, and the plain one becomes the cached file without another copy.

A timeout while the body streams is a timeout (504), not any upstream failure (502).
"""

from __future__ import annotations

import asyncio
import hashlib
import logging
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import IO, cast

from symbol_proxy import checksums, compression, keys
from symbol_proxy.backends import base
from symbol_proxy.cache.inflight import DownloadFailed, FailureKind, Sink
from symbol_proxy.metrics import Metrics
from symbol_proxy.resolving import Found, LookupMissed, Resolver

__all__ = ["fetch_found_into", "fetch_into"]

log = logging.getLogger(__name__)

COPY_CHUNK = 1024 * 1024
HEAD_BYTES = 64
"""Unpacked bytes checked against the file type before any is handed on."""
UNPACK_BATCH = 1024 * 1024
"""Unpacked bytes produced per executor call, at most (plus one block of the format)."""


async def fetch_into(
    sink: Sink,
    lookup: keys.Lookup,
    *,
    resolver: Resolver,
    max_file_size: int,
    metrics: Metrics,
    on_found: Callable[[str], None] | None = None,
) -> None:
    """Find ``lookup`` upstream and feed it to ``sink``; ``on_found`` hears the location that has
    it (relative to its source) before the first byte is handed on."""
    await fetch_found_into(
        sink,
        resolver.find(lookup),
        max_file_size=max_file_size,
        metrics=metrics,
        on_found=on_found,
    )


async def fetch_found_into(
    sink: Sink,
    finding: Awaitable[Found],
    *,
    max_file_size: int,
    metrics: Metrics,
    on_found: Callable[[str], None] | None = None,
) -> None:
    """Like :func:`fetch_into`, for a file that ``finding`` (a resolver call) opens."""
    try:
        found = await finding
    except LookupMissed as missed:
        if missed.kind == "not_found":
            sink.not_found(missed.detail)
        elif missed.kind == "denied":
            sink.error(missed.detail, kind="denied")
        else:
            failure: FailureKind = "timeout" if missed.kind == "timeout" else "error"
            sink.error(f"{missed.kind}: {missed.detail}", kind=failure)
        return
    if on_found is not None:
        on_found(found.candidate.location)
    kind = found.candidate.source.backend.kind
    try:
        if found.container is None and found.candidate.checksum is None:
            size = found.stream.info.size
            if size is not None and size > max_file_size:
                sink.error(f"file too large ({size} bytes)")
                return
            sink.start(size)
            # The cache keeps every byte anyway: it checks the store's MD5 on its copy once the file
            # is complete, so hashing (slower than a fast store) never holds up the stream.
            if isinstance(found.stream, base.DeferrableMd5) and (md5 := found.stream.defer_md5()):
                sink.expect_md5(md5)
            received = 0
            async for chunk in found.body():
                received += len(chunk)
                if received > max_file_size:
                    raise base.Malformed("file exceeds the configured maximum size")
                await sink.write(chunk)
            metrics.upstream_bytes.labels(kind).observe(received)
        elif found.candidate.checksum is None and (
            unpacker := compression.StreamUnpacker.for_head(found.head, max_size=max_file_size)
        ):
            await _fetch_unpacking(sink, found, unpacker, max_file_size=max_file_size)
            metrics.upstream_bytes.labels(kind).observe(unpacker.received)
        else:
            await _fetch_spooled(sink, found, max_file_size=max_file_size)
    except base.UpstreamTimeout as exc:
        raise DownloadFailed("timeout", f"timeout: {exc}") from None
    finally:
        await found.aclose()


def _matches_checksum(path: Path, header: str) -> bool:
    """Whether the portable PDB at ``path`` hashes to one of ``header``'s checksums (its PDB id
    zeroed). A file that is not a portable PDB, or only algorithms we lack, cannot be checked:
    it passes, and the client checks it as it always does."""
    wanted = checksums.parse(header)
    hashers = {
        algorithm: hashlib.new(algorithm.lower())
        for algorithm, _ in wanted
        if algorithm.lower() in hashlib.algorithms_available
    }
    with open(path, "rb") as file:
        offset = checksums.pdb_id_offset(file.read(4096))
        if offset is None or not hashers:
            return True
        file.seek(0)
        position = 0
        while block := file.read(COPY_CHUNK):
            start, end = max(offset - position, 0), min(offset + checksums.PDB_ID_SIZE - position, len(block))
            if start < end:
                block = block[:start] + bytes(end - start) + block[end:]
            for hasher in hashers.values():
                hasher.update(block)
            position += len(block)
    return any(hashers[a].hexdigest() == digest for a, digest in wanted if a in hashers)


async def _fetch_unpacking(
    sink: Sink, found: Found, unpacker: compression.StreamUnpacker, *, max_file_size: int
) -> None:
    """Unpack the body while it arrives and hand on only the unpacked bytes: the cache writes the
    plain file and nothing else (no packed copy), and readers get each piece as it is unpacked.
    The first bytes are held back until they show the file type that was asked for, so a wrong
    file fails before anyone got a byte of it."""
    loop = asyncio.get_running_loop()
    head = b""
    started = False

    async def hand_on(data: bytes, last: bool = False) -> None:
        nonlocal head, started
        if not started:
            head += data
            if len(head) < HEAD_BYTES and not last:
                return
            if not found.candidate.accepts(head[:HEAD_BYTES]):
                raise base.Malformed(f"unpacked file is not a {found.candidate.filetype} file")
            sink.start(unpacker.size)
            started = True
            data, head = head, b""
        if data:
            await sink.write(data)

    try:
        async for chunk in found.body():
            unpacker.feed(chunk)
            if unpacker.received > max_file_size:
                raise base.Malformed("file exceeds the configured maximum size")
            while out := await loop.run_in_executor(None, unpacker.read, UNPACK_BATCH):
                await hand_on(out)
        unpacker.end()
        while out := await loop.run_in_executor(None, unpacker.read, UNPACK_BATCH):
            await hand_on(out)
    except compression.Malformed as exc:
        raise base.Malformed(f"cannot unpack: {exc}") from None
    await hand_on(b"", last=True)


async def _fetch_spooled(sink: Sink, found: Found, *, max_file_size: int) -> None:
    """Download the whole file first: to unpack it, or to check it against the client's
    ``SymbolChecksum`` before anyone gets a byte of it. The plain file (the download itself, or
    what it unpacks to) becomes the cache's file."""
    loop = asyncio.get_running_loop()
    packed = sink.new_scratch("packed-")
    plain = packed
    try:
        received = 0
        async for chunk in found.body():
            received += len(chunk)
            if received > max_file_size:
                raise base.Malformed("file exceeds the configured maximum size")
            await loop.run_in_executor(None, packed.write, chunk)
        packed.close()
        if found.container is not None:
            plain = unpacked = sink.new_scratch("unpacked-")

            def unpack() -> None:
                with open(packed.path, "rb") as source:
                    compression.unpack(
                        source, cast(IO[bytes], unpacked), max_size=max_file_size, src_path=packed.path
                    )

            try:
                await loop.run_in_executor(None, unpack)
            except compression.Malformed as exc:
                raise base.Malformed(f"cannot unpack: {exc}") from None
            unpacked.close()
            packed.discard()  # its bytes leave the cap before the unpacked file is served
        checksum = found.candidate.checksum
        if checksum is not None and not await loop.run_in_executor(
            None, _matches_checksum, plain.path, checksum
        ):
            sink.not_found(f"{found.candidate.source.config.id}: the file does not match the SymbolChecksum")
            plain.discard()
            return
        with open(plain.path, "rb") as inner:
            head = await loop.run_in_executor(None, inner.read, 64)
        if not found.candidate.accepts(head):
            raise base.Malformed(f"unpacked file is not a {found.candidate.filetype} file")
        sink.start_from(plain)
    except BaseException:
        plain.discard()
        raise
    finally:
        if plain is not packed:
            packed.discard()
