"""Sending a cached file: the hot path of the proxy.

Cache hits should cost as little as nginx's: the cache's in-memory index already knows the size and
mtime, so the conditional and range decision (``ranges.plan``) needs no system call. Small files,
the bulk of symbol traffic, are kept in a bounded in-memory LRU and answered from memory; larger
ones go out with ``loop.sendfile`` (the kernel copies page cache to the socket), with a chunked
executor fallback where the loop or transport cannot sendfile.
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import os
import threading
from pathlib import Path
from typing import BinaryIO

from aiohttp import web

from symbol_proxy.cache.store import CachedFile
from symbol_proxy.server import ranges

__all__ = ["HotFiles", "head_response", "send_file"]

FALLBACK_CHUNK = 256 * 1024


class HotFiles:
    """Bytes of small, recently served files, bounded in total size."""

    def __init__(self, *, max_bytes: int = 32 * 1024 * 1024, max_file: int = 256 * 1024) -> None:
        self.max_bytes = max_bytes
        self.max_file = max_file
        self._items: collections.OrderedDict[tuple[str, int], bytes] = collections.OrderedDict()
        self._bytes = 0
        self._lock = threading.Lock()
        self._handles: collections.OrderedDict[tuple[str, int], BinaryIO] = collections.OrderedDict()

    def get(self, entry: CachedFile) -> bytes | None:
        key = (str(entry.path), entry.mtime_ns)
        with self._lock:
            data = self._items.get(key)
            if data is not None:
                self._items.move_to_end(key)
            return data

    def put(self, entry: CachedFile, data: bytes) -> None:
        if len(data) > self.max_file:
            return
        key = (str(entry.path), entry.mtime_ns)
        with self._lock:
            if key in self._items:
                return
            self._items[key] = data
            self._bytes += len(data)
            while self._bytes > self.max_bytes:
                _, old = self._items.popitem(last=False)
                self._bytes -= len(old)

    def clear(self) -> None:
        with self._lock:
            self._items.clear()
            self._bytes = 0
            handles = list(self._handles.values())
            self._handles.clear()
        for handle in handles:
            handle.close()

    # Open handles of large files, like nginx's open_file_cache: a hit then costs no open() and no
    # executor round trip; sendfile passes explicit offsets, so concurrent responses can share one
    # handle. A response only uses a handle while its request pins the file, and the cache tells
    # us (``forget``) about every file it removes, which is never a pinned one: the handle is
    # closed at once, so a removed file's blocks never stay on disk beyond the cap.
    max_handles = 32

    def handle(self, entry: CachedFile) -> BinaryIO | None:
        key = (str(entry.path), entry.mtime_ns)
        with self._lock:
            handle = self._handles.get(key)
            if handle is not None:
                self._handles.move_to_end(key)
            return handle

    def keep_handle(self, entry: CachedFile, handle: BinaryIO) -> None:
        with self._lock:
            self._handles[(str(entry.path), entry.mtime_ns)] = handle
            while len(self._handles) > self.max_handles:
                _, old = self._handles.popitem(last=False)
                old.close()

    def forget(self, path: Path) -> None:
        """``path`` left the cache: close its handles. Safe from any thread."""
        name = str(path)
        with self._lock:
            gone = [key for key in self._handles if key[0] == name]
            handles = [self._handles.pop(key) for key in gone]
        for handle in handles:
            handle.close()


def _read_whole(entry: CachedFile) -> bytes:
    with open(entry.path, "rb") as handle:
        data = handle.read()
    if len(data) != entry.size:
        raise FileNotFoundError(entry.path)  # replaced underneath us: treat as gone
    return data


async def send_file(
    request: web.Request, entry: CachedFile, headers: dict[str, str], hot: HotFiles
) -> web.StreamResponse:
    """Answer ``request`` from ``entry``; raises ``FileNotFoundError`` if the file was evicted."""
    etag = entry.etag
    decision = ranges.plan(
        request.method, request.headers, size=entry.size, mtime_ns=entry.mtime_ns, etag=etag
    )
    headers = {
        **headers,
        "ETag": etag,
        "Last-Modified": ranges.http_date(entry.mtime_ns),
        "Accept-Ranges": "bytes",
    }
    if decision.status in (304, 412):
        return web.Response(status=decision.status, headers={"ETag": etag})
    if decision.content_range is not None:
        headers["Content-Range"] = decision.content_range
    if decision.status == 416:
        return web.Response(status=416, headers={"Content-Range": decision.content_range or ""})
    if request.method == "HEAD":
        return await head_response(request, decision.status, headers, decision.length)
    loop = asyncio.get_running_loop()
    if entry.size <= hot.max_file:
        data = hot.get(entry)
        if data is None:
            data = await loop.run_in_executor(None, _read_whole, entry)
            hot.put(entry, data)
        return web.Response(status=decision.status, headers=headers, body=data[decision.start : decision.end])
    handle = hot.handle(entry)
    if handle is None:
        handle = await loop.run_in_executor(None, open, entry.path, "rb")
        if os.fstat(handle.fileno()).st_size != entry.size:
            handle.close()
            raise FileNotFoundError(entry.path)
        hot.keep_handle(entry, handle)
    response = web.StreamResponse(status=decision.status, headers=headers)
    response.content_length = decision.length
    await response.prepare(request)
    transport = request.transport
    sent = False
    if transport is not None and not transport.is_closing():
        # Not available for this transport (TLS, uvloop) or not now (the client went away, which
        # the write below reports as a closed connection): fall back to plain writes.
        with contextlib.suppress(NotImplementedError, asyncio.SendfileNotAvailableError):
            await loop.sendfile(transport, handle, decision.start, decision.length, fallback=False)
            sent = True
    if not sent:
        position = decision.start
        while position < decision.end:
            wanted = min(FALLBACK_CHUNK, decision.end - position)
            chunk = await loop.run_in_executor(None, os.pread, handle.fileno(), wanted, position)
            if not chunk:
                break
            await response.write(chunk)
            position += len(chunk)
    await response.write_eof()
    return response


async def head_response(
    request: web.Request, status: int, headers: dict[str, str], length: int | None
) -> web.StreamResponse:
    """Headers only, with the length the body would have (``web.Response`` would say 0)."""
    response = web.StreamResponse(status=status, headers=headers)
    if length is not None:
        response.content_length = length
    await response.prepare(request)
    await response.write_eof()
    return response
