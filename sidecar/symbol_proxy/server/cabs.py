"""``_`` requests (``foo.pd_``): a cabinet streamed from the plain file, never built ahead or kept.

SymSrv clients ask for ``foo.pd_`` beside (or before) ``foo.pdb``. When a source only has the plain
file, the proxy answers with a single-file cabinet whose blocks are *stored*
(:class:`~symbol_proxy.compression.StoredCab`): its headers follow from the file's size, so the
response starts at once -- from the cached file, or from a download still in flight, at the pace of
the download -- instead of after compressing the whole file (10 s and more for a large PDB, more
than Symbolicator's timeout for ``.pd_`` requests). Nothing is cached for the ``_`` name: a client
that cancels the ``.pd_`` request (samply's ``symsrv`` crate asks for both and keeps the first
answer) leaves no work behind, only the plain download, which the plain request shares.
"""

from __future__ import annotations

import asyncio
import logging
import os
from collections.abc import AsyncIterator

from aiohttp import web

from symbol_proxy import compression
from symbol_proxy.cache.inflight import DownloadFailed
from symbol_proxy.cache.store import CachedFile
from symbol_proxy.server import files

__all__ = ["file_chunks", "send"]

log = logging.getLogger(__name__)

CHUNK = 1024 * 1024


async def file_chunks(entry: CachedFile) -> AsyncIterator[bytes]:
    """The bytes of a cached file; ``FileNotFoundError`` if it was evicted before it was opened."""
    loop = asyncio.get_running_loop()
    handle = await loop.run_in_executor(None, open, entry.path, "rb")
    try:
        position = 0
        while position < entry.size:
            chunk = await loop.run_in_executor(
                None, os.pread, handle.fileno(), min(CHUNK, entry.size - position), position
            )
            if not chunk:
                raise DownloadFailed("error", "cached file shrank while being read")
            position += len(chunk)
            yield chunk
    finally:
        handle.close()


async def send(
    request: web.Request,
    *,
    name: str,
    file_size: int,
    mtime: float,
    headers: dict[str, str],
    chunks: AsyncIterator[bytes],
) -> web.StreamResponse:
    """Answer with the cabinet of a ``file_size``-byte file called ``name``, whose bytes ``chunks``
    gives. A file that cannot go into a CAB gets a 404 that names the plain file instead."""
    try:
        cab = compression.stored_cab(file_size, name, mtime)
    except ValueError as exc:  # TooLarge too
        return web.Response(
            status=404, text=f"not found: no CAB for this file ({exc}); ask for the plain name\n"
        )
    if request.method == "HEAD":
        return await files.head_response(request, 200, headers, cab.size)
    response = web.StreamResponse(status=200, headers=headers)
    response.content_length = cab.size
    await response.prepare(request)
    await response.write(cab.header)
    blocks = compression.StoredBlocks(file_size)
    try:
        async for chunk in chunks:
            if framed := blocks.feed(chunk):
                await response.write(framed)
        if not blocks.complete:
            raise DownloadFailed("error", "the file ended early")
    except (DownloadFailed, compression.Malformed, OSError) as exc:
        # Headers are gone: cut the connection, so the client never takes a short body for a CAB.
        log.warning("CAB of %s broke off: %s", name, exc)
        if request.transport is not None:
            request.transport.abort()
        return response
    await response.write_eof()
    return response
