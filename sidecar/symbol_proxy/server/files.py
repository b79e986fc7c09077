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

__all__ = ["HotFiles", "head_response", "send_file", "validators"]

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
        self._borrowed: dict[BinaryIO, int] = {}
        self._retired: set[BinaryIO] = set()

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
        self.drop_handles()

    # Open handles of large files, like nginx's open_file_cache: a hit then costs no open() and no
    # executor round trip; sendfile passes explicit offsets, so concurrent responses can share one
    # handle. A response borrows a handle (``borrow``/``give_back``) while its request pins the
    # file; a handle leaves the table when its file leaves the cache (``forget``) or when newer
    # ones push it out, and is closed as soon as nobody borrows it: never under a response (its
    # descriptor number could be reused by another file), and a removed file's blocks never stay
    # on disk longer than the responses that send it.
    max_handles = 32

    def borrow(self, entry: CachedFile) -> BinaryIO | None:
        key = (str(entry.path), entry.mtime_ns)
        with self._lock:
            handle = self._handles.get(key)
            if handle is not None:
                self._handles.move_to_end(key)
                self._borrowed[handle] = self._borrowed.get(handle, 0) + 1
            return handle

    def give_back(self, handle: BinaryIO) -> None:
        with self._lock:
            users = self._borrowed.pop(handle, 0) - 1
            if users > 0:
                self._borrowed[handle] = users
                return
            close = handle in self._retired
            self._retired.discard(handle)
        if close:
            handle.close()

    def keep_handle(self, entry: CachedFile, handle: BinaryIO) -> BinaryIO:
        """Keep ``handle`` (already borrowed once by the caller); returns the handle to use, which
        is the one already kept if another response opened the same file meanwhile."""
        key = (str(entry.path), entry.mtime_ns)
        with self._lock:
            kept = self._handles.get(key)
            if kept is not None:
                self._borrowed[kept] = self._borrowed.get(kept, 0) + 1
                closing = [handle]
                handle = kept
            else:
                self._handles[key] = handle
                self._borrowed[handle] = self._borrowed.get(handle, 0) + 1
                closing = []
                while len(self._handles) > self.max_handles:
                    _, old = self._handles.popitem(last=False)
                    closing += self._retire_locked(old)
        for old in closing:
            old.close()
        return handle

    def _retire_locked(self, handle: BinaryIO) -> list[BinaryIO]:
        if self._borrowed.get(handle, 0) > 0:
            self._retired.add(handle)
            return []
        return [handle]

    def drop_handles(self) -> None:
        """Give up every kept handle (closed once no response uses it); the memory copies stay."""
        with self._lock:
            closing = [h for handle in self._handles.values() for h in self._retire_locked(handle)]
            self._handles.clear()
        for handle in closing:
            handle.close()

    def forget(self, path: Path) -> None:
        """``path`` left the cache: close its handles once no response uses them. Any thread."""
        name = str(path)
        closing: list[BinaryIO] = []
        with self._lock:
            for key in [key for key in self._handles if key[0] == name]:
                closing += self._retire_locked(self._handles.pop(key))
        for handle in closing:
            handle.close()


def _read_whole(entry: CachedFile) -> bytes:
    with open(entry.path, "rb") as handle:
        data = handle.read()
    if len(data) != entry.size:
        raise FileNotFoundError(entry.path)  # replaced underneath us: treat as gone
    return data


def validators(entry: CachedFile) -> dict[str, str]:
    """``ETag``, ``Last-Modified`` and ``Accept-Ranges`` of a cached file's responses."""
    return {"ETag": entry.etag, "Last-Modified": ranges.http_date(entry.mtime_ns), "Accept-Ranges": "bytes"}


async def send_file(
    request: web.Request, entry: CachedFile, headers: dict[str, str], hot: HotFiles
) -> web.StreamResponse:
    """Answer ``request`` from ``entry``; raises ``FileNotFoundError`` if the file was evicted."""
    etag = entry.etag
    decision = ranges.plan(
        request.method, request.headers, size=entry.size, mtime_ns=entry.mtime_ns, etag=etag
    )
    headers = {**headers, **validators(entry)}
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
    handle = hot.borrow(entry)
    if handle is None:
        opened = await loop.run_in_executor(None, open, entry.path, "rb")
        if os.fstat(opened.fileno()).st_size != entry.size:
            opened.close()
            raise FileNotFoundError(entry.path)
        handle = hot.keep_handle(entry, opened)
    try:
        return await _send_range(request, decision, headers, handle)
    finally:
        hot.give_back(handle)


async def _send_range(
    request: web.Request, decision: ranges.Plan, headers: dict[str, str], handle: BinaryIO
) -> web.StreamResponse:
    loop = asyncio.get_running_loop()
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
