"""The producer of a cache entry: find the file upstream and stream it into the cache.

Plain files go straight through: every chunk is handed to readers and written behind them into
the cache's temporary file. When the source promises an MD5 (S3's ETag, GCS's ``x-goog-hash``), the
cache checks it on the finished file before the commit instead of the backend on the stream.
Compressed upstream files (a CAB ``.pd_``, gzip, zstd, a one-entry zip) are spooled, unpacked in an
executor with a size limit, checked again, and then fed to the cache, so clients that asked for the
plain name get the plain file.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import uuid
from collections.abc import Awaitable
from pathlib import Path

from symbol_proxy import compression, keys
from symbol_proxy.backends import base
from symbol_proxy.cache.inflight import Sink
from symbol_proxy.metrics import Metrics
from symbol_proxy.resolving import Found, LookupMissed, Resolver

__all__ = ["fetch_found_into", "fetch_into"]

log = logging.getLogger(__name__)

COPY_CHUNK = 1024 * 1024


async def fetch_into(
    sink: Sink,
    lookup: keys.Lookup,
    *,
    resolver: Resolver,
    scratch_dir: Path,
    max_file_size: int,
    metrics: Metrics,
) -> None:
    await fetch_found_into(
        sink, resolver.find(lookup), scratch_dir=scratch_dir, max_file_size=max_file_size, metrics=metrics
    )


async def fetch_found_into(
    sink: Sink, finding: Awaitable[Found], *, scratch_dir: Path, max_file_size: int, metrics: Metrics
) -> None:
    """Like :func:`fetch_into`, for a file that ``finding`` (a resolver call) opens."""
    try:
        found = await finding
    except LookupMissed as missed:
        if missed.kind == "not_found":
            sink.not_found(missed.detail)
        else:
            sink.error(f"{missed.kind}: {missed.detail}")
        return
    kind = found.candidate.source.backend.kind
    try:
        if found.container is None:
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
        else:
            await _fetch_compressed(sink, found, scratch_dir=scratch_dir, max_file_size=max_file_size)
    finally:
        await found.aclose()


async def _fetch_compressed(sink: Sink, found: Found, *, scratch_dir: Path, max_file_size: int) -> None:
    loop = asyncio.get_running_loop()
    scratch_dir.mkdir(parents=True, exist_ok=True)
    packed = scratch_dir / f"packed-{uuid.uuid4().hex}"
    unpacked = scratch_dir / f"unpacked-{uuid.uuid4().hex}"
    try:
        fd = await loop.run_in_executor(None, os.open, packed, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        try:
            received = 0
            async for chunk in found.body():
                received += len(chunk)
                if received > max_file_size:
                    raise base.Malformed("compressed file exceeds the configured maximum size")
                await loop.run_in_executor(None, os.write, fd, chunk)
        finally:
            os.close(fd)
        try:
            await loop.run_in_executor(
                None, lambda: compression.decompress_file(packed, unpacked, max_size=max_file_size)
            )
        except compression.Malformed as exc:
            raise base.Malformed(f"cannot unpack: {exc}") from None
        with open(unpacked, "rb") as inner:
            head = await loop.run_in_executor(None, inner.read, 64)
            if not found.candidate.accepts(head):
                raise base.Malformed(f"unpacked file is not a {found.candidate.filetype} file")
            inner.seek(0)
            sink.start(os.fstat(inner.fileno()).st_size)
            while chunk := await loop.run_in_executor(None, inner.read, COPY_CHUNK):
                await sink.write(chunk)
    finally:
        for path in (packed, unpacked):
            with contextlib.suppress(FileNotFoundError):
                path.unlink()
