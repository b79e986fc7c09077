"""The producer of a cache entry: find the file upstream and stream it into the cache.

Plain files go straight through: every chunk is handed to readers and written behind them into
the cache's temporary file. When the source promises an MD5 (S3's ETag, GCS's ``x-goog-hash``), the
cache checks it on the finished file before the commit instead of the backend on the stream.
Compressed upstream files (a CAB ``.pd_``, gzip, zstd, a one-entry zip) are spooled, unpacked in an
executor with a size limit, checked again, and then fed to the cache, so clients that asked for the
plain name get the plain file. Both the packed and the unpacked file are temporary files of the
cache, counted against its cap, and the unpacked one becomes the cached file without another copy.

A timeout while the body streams is a timeout (504), not any upstream failure (502).
"""

from __future__ import annotations

import asyncio
import logging
from typing import IO, cast

from symbol_proxy import compression, keys
from symbol_proxy.backends import base
from symbol_proxy.cache.inflight import DownloadFailed, FailureKind, Sink
from symbol_proxy.metrics import Metrics
from symbol_proxy.resolving import Found, LookupMissed, Resolver

__all__ = ["fetch_into"]

log = logging.getLogger(__name__)

async def fetch_into(
    sink: Sink,
    lookup: keys.Lookup,
    *,
    resolver: Resolver,
    max_file_size: int,
    metrics: Metrics,
) -> None:
    try:
        found = await resolver.find(lookup)
    except LookupMissed as missed:
        if missed.kind == "not_found":
            sink.not_found(missed.detail)
        elif missed.kind == "denied":
            sink.error(missed.detail, kind="denied")
        else:
            failure: FailureKind = "timeout" if missed.kind == "timeout" else "error"
            sink.error(f"{missed.kind}: {missed.detail}", kind=failure)
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
            await _fetch_compressed(sink, found, max_file_size=max_file_size)
    except base.UpstreamTimeout as exc:
        raise DownloadFailed("timeout", f"timeout: {exc}") from None
    finally:
        await found.aclose()


async def _fetch_compressed(sink: Sink, found: Found, *, max_file_size: int) -> None:
    loop = asyncio.get_running_loop()
    packed = sink.new_scratch("packed-")
    unpacked = sink.new_scratch("unpacked-")
    try:
        received = 0
        async for chunk in found.body():
            received += len(chunk)
            if received > max_file_size:
                raise base.Malformed("compressed file exceeds the configured maximum size")
            await loop.run_in_executor(None, packed.write, chunk)
        packed.close()

        def unpack() -> None:
            with open(packed.path, "rb") as source:
                compression.unpack(
                    source, cast(IO[bytes], unpacked), max_size=max_file_size, src_path=packed.path
                )

        try:
            await loop.run_in_executor(None, unpack)
        except compression.Malformed as exc:
            raise base.Malformed(f"cannot unpack: {exc}") from None
        packed.discard()  # its bytes leave the cap before the unpacked file is served
        with open(unpacked.path, "rb") as inner:
            head = await loop.run_in_executor(None, inner.read, 64)
        if not found.candidate.accepts(head):
            raise base.Malformed(f"unpacked file is not a {found.candidate.filetype} file")
        sink.start_from(unpacked)
    except BaseException:
        unpacked.discard()
        raise
    finally:
        packed.discard()
