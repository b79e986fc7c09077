"""Single-flight downloads with read-along.

The first request for a missing key starts one download task; every later request for the same key
joins it. The task writes into a temporary file of the cache, and readers follow that file as it
grows, so the first byte reaches a client long before a large file is complete and memory stays
flat whatever the file's size. The task does not belong to any client: when the client that
started it disconnects, it still finishes and the file is cached for the next one. Only a complete,
verified file is committed; any failure discards the temporary file and remembers a short miss.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import logging
import os
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any, Literal

from symbol_proxy.cache.store import CachedFile, DiskCache, TempFile

__all__ = ["Download", "DownloadFailed", "Downloads", "Sink", "Started"]

WRITE_BATCH = 1024 * 1024
"""Bytes gathered before one write to the temporary file."""

log = logging.getLogger(__name__)


@dataclasses.dataclass(frozen=True, slots=True)
class Started:
    size: int | None


class DownloadFailed(Exception):
    def __init__(self, kind: Literal["not_found", "error"], detail: str = "") -> None:
        super().__init__(detail or kind)
        self.kind = kind
        self.detail = detail


class Download:
    def __init__(self, key: str) -> None:
        self.key = key
        self.waiters = 0
        self.result: CachedFile | None = None
        self._started: asyncio.Future[Started] = asyncio.get_running_loop().create_future()
        self._finished: asyncio.Future[CachedFile] = asyncio.get_running_loop().create_future()
        self._changed = asyncio.Event()
        self._temp: TempFile | None = None
        self._written = 0
        self._failure: DownloadFailed | None = None
        # Consumers may never await these futures (a client that went away): silence "never retrieved".
        self._started.add_done_callback(_consume)
        self._finished.add_done_callback(_consume)

    @property
    def done(self) -> bool:
        return self._finished.done()

    async def started(self) -> Started:
        return await asyncio.shield(self._started)

    async def finished(self) -> CachedFile:
        return await asyncio.shield(self._finished)

    def _notify(self) -> None:
        self._changed.set()
        self._changed = asyncio.Event()

    def _fail(self, failure: DownloadFailed) -> None:
        self._failure = failure
        if not self._started.done():
            self._started.set_exception(failure)
        if not self._finished.done():
            self._finished.set_exception(failure)
        self._notify()

    async def read(self, offset: int = 0, chunk_size: int = 1024 * 1024) -> AsyncIterator[bytes]:
        """The file's bytes from ``offset``, following the download as it lands."""
        await self.started()
        loop = asyncio.get_running_loop()
        fd = await loop.run_in_executor(None, self._open_for_reading)
        try:
            position = offset
            while True:
                changed = self._changed
                if position < self._written:
                    wanted = min(chunk_size, self._written - position)
                    data = await loop.run_in_executor(None, os.pread, fd, wanted, position)
                    if not data:
                        raise DownloadFailed("error", "cached file shrank while being read")
                    position += len(data)
                    yield data
                    continue
                if self._failure is not None:
                    raise self._failure
                if self._finished.done():
                    return
                await changed.wait()
        finally:
            os.close(fd)

    def _open_for_reading(self) -> int:
        # Before the commit the bytes are in the temporary file, afterwards in the cache; an fd
        # opened on either keeps working across the rename.
        for _ in range(3):
            path = self.result.path if self.result is not None else (self._temp.path if self._temp else None)
            if path is None:
                break
            try:
                return os.open(path, os.O_RDONLY | os.O_CLOEXEC)
            except FileNotFoundError:
                continue  # renamed between the check and the open: look again
        raise DownloadFailed("error", "the downloaded file is gone")


def _consume(future: asyncio.Future[Any]) -> None:
    if not future.cancelled():
        future.exception()


class Sink:
    """The producer's side of a download."""

    def __init__(self, download: Download, cache: DiskCache) -> None:
        self._download = download
        self._cache = cache
        self._size: int | None = None
        self._verify: Callable[[bytes], bool] | None = None
        self._head = b""
        self._pending: list[bytes] = []
        self._pending_size = 0
        self.outcome: DownloadFailed | None = None

    @property
    def size(self) -> int | None:
        return self._size

    def start(self, size: int | None, verify: Callable[[bytes], bool] | None = None) -> None:
        if self._download._temp is not None:
            raise RuntimeError("start() called twice")
        temp = self._cache.new_temp()
        self._download._temp = temp
        if size is not None:
            try:
                temp.reserve(size)
            except BaseException:
                temp.discard()
                raise
        self._size = size
        self._verify = verify
        self._download._started.set_result(Started(size))
        self._download._notify()

    async def write(self, data: bytes) -> None:
        if self._download._temp is None:
            raise RuntimeError("write() before start()")
        if self._verify is not None and len(self._head) < 64:
            self._head += data[: 64 - len(self._head)]
            if len(self._head) >= 64 and not self._verify(self._head):
                raise DownloadFailed("error", "unexpected content")
        # Small upstream chunks are gathered into larger writes: every write is an executor round
        # trip. The first bytes go out at once, so time to first byte does not suffer.
        self._pending.append(data)
        self._pending_size += len(data)
        if self._pending_size >= WRITE_BATCH or self._download._written == 0:
            await self.flush()

    async def flush(self) -> None:
        temp = self._download._temp
        if temp is None or not self._pending:
            return
        data = b"".join(self._pending) if len(self._pending) > 1 else self._pending[0]
        self._pending.clear()
        self._pending_size = 0
        await asyncio.get_running_loop().run_in_executor(None, temp.write, data)
        self._download._written = temp.written
        self._download._notify()

    def not_found(self, detail: str = "") -> None:
        self.outcome = DownloadFailed("not_found", detail)

    def error(self, detail: str) -> None:
        self.outcome = DownloadFailed("error", detail)


class Downloads:
    def __init__(self, cache: DiskCache, *, negative_ttl: float, error_ttl: float) -> None:
        self._cache = cache
        self._negative_ttl = negative_ttl
        self._error_ttl = error_ttl
        self._running: dict[str, Download] = {}
        self._tasks: set[asyncio.Task[None]] = set()

    @property
    def in_flight(self) -> int:
        return len(self._running)

    def fetch(self, key: str, producer: Callable[[Sink], Awaitable[None]]) -> Download:
        running = self._running.get(key)
        if running is not None:
            running.waiters += 1
            return running
        download = Download(key)
        self._running[key] = download
        task = asyncio.ensure_future(self._run(download, producer))
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)
        return download

    async def _run(self, download: Download, producer: Callable[[Sink], Awaitable[None]]) -> None:
        sink = Sink(download, self._cache)
        loop = asyncio.get_running_loop()
        try:
            try:
                await producer(sink)
            except DownloadFailed as failed:
                sink.outcome = failed
            except asyncio.CancelledError:
                sink.outcome = DownloadFailed("error", "cancelled")
                raise
            except Exception as exc:  # the producer's failure is this download's failure
                log.debug("download of %s failed", download.key, exc_info=True)
                sink.outcome = DownloadFailed("error", str(exc) or type(exc).__name__)
            if sink.outcome is None:
                try:
                    await sink.flush()
                except Exception as exc:
                    sink.outcome = DownloadFailed("error", str(exc) or type(exc).__name__)
            if sink.outcome is None and download._temp is None:
                sink.outcome = DownloadFailed("error", "the producer found nothing to write")
            if sink.outcome is None:
                temp = download._temp
                assert temp is not None
                try:
                    cached = await loop.run_in_executor(
                        None, lambda: temp.commit(download.key, expected_size=sink.size)
                    )
                except (ValueError, OSError) as exc:
                    sink.outcome = DownloadFailed("error", f"not cached: {exc}")
                else:
                    download.result = cached
                    download._finished.set_result(cached)
                    download._notify()
        finally:
            self._running.pop(download.key, None)
            if sink.outcome is not None:
                if download._temp is not None:
                    download._temp.discard()
                ttl = self._negative_ttl if sink.outcome.kind == "not_found" else self._error_ttl
                if sink.outcome.detail != "cancelled":
                    self._cache.remember_miss(download.key, sink.outcome.kind, ttl, sink.outcome.detail)
                download._fail(sink.outcome)

    async def aclose(self) -> None:
        tasks = list(self._tasks)
        for task in tasks:
            task.cancel()
        for task in tasks:
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await task
