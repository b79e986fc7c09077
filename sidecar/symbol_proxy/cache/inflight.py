"""Single-flight downloads with read-along.

The first request for a missing key starts one download task; every later request for the same key
joins it. The task hands every chunk to the readers in memory and writes it behind them into a
temporary file of the cache; a reader that falls behind the last ``READ_ALONG_MEMORY`` bytes reads
back from that file. So the first byte reaches a client long before a large file is complete, no
reader waits for the disk, and memory stays flat whatever the file's size. The task does not
belong to any client: when the client that started it disconnects, it still finishes and the file
is cached for the next one, unless nobody waits for it any more and most of it is still to come:
then it is cancelled, so work nobody wants cannot pile up behind a slow source. Only a complete,
verified file is committed; any failure discards the temporary file and remembers a short miss.

When the cache has no room for a file (pinned files and other downloads hold the cap), the file is
passed through instead: readers get every byte from memory, nothing is written, and nothing is
remembered, since a full cache says nothing about the upstream. With no file to fall back on, the
download then keeps pace with its slowest reader (``PASS_THROUGH_LEAD``), so no reader that stays
connected falls out of the bytes in memory.
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import dataclasses
import hashlib
import logging
import os
import threading
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from pathlib import Path
from typing import Any, Literal

from symbol_proxy.cache.store import CachedFile, CacheFull, DiskCache, MissKind, TempFile

__all__ = ["Download", "DownloadFailed", "Downloads", "FailureKind", "Sink", "Started"]

WRITE_BATCH = 1024 * 1024
"""Bytes gathered before one write to the temporary file."""
MD5_BLOCK = 4 * 1024 * 1024
"""Bytes hashed at a time when a finished file is checked against its source's MD5."""
READ_ALONG_MEMORY = 8 * 1024 * 1024
"""Most recently written bytes a download keeps in memory, so readers that keep up take them from
there instead of reading them back from the temporary file; the bound on that memory."""
CANCEL_GRACE = 2.0
"""Seconds a download nobody waits for keeps running before it is cancelled (a client that retries
at once joins it again)."""
PASS_THROUGH_LEAD = READ_ALONG_MEMORY // 2
"""How far a download passed through (no file to read back from) may run ahead of its slowest
reader: it waits for that reader beyond this, so every reader keeps within the bytes in memory."""
PASS_THROUGH_PATIENCE = 30.0
"""Seconds a passed-through download waits for readers behind it to move; then it goes on without
them (a reader that stopped reading is cut once it falls out of memory), so a stalled client cannot
hold an upstream download for ever."""
NEARLY_DONE = 0.75
"""A download nobody waits for is finished anyway once this share of its announced size is in."""

ROOM_RETRY_PAUSES = (0.1, 0.2, 0.4, 0.8, 1.6, 3.2)
"""Pauses between attempts of a download that found no room for its scratch space before it had
handed out a byte (the last attempt's failure stands)."""

FailureKind = Literal["not_found", "denied", "error", "timeout", "space"]
"""``denied``: the upstream refused (401/403), answered as "not found" but remembered briefly;
``space``: the cache had no room, which is never remembered."""

log = logging.getLogger(__name__)


@dataclasses.dataclass(frozen=True, slots=True)
class Started:
    size: int | None


class DownloadFailed(Exception):
    def __init__(self, kind: FailureKind, detail: str = "") -> None:
        super().__init__(detail or kind)
        self.kind = kind
        self.detail = detail


class Download:
    def __init__(self, key: str) -> None:
        self.key = key
        self.waiters = 0
        """Requests that joined the download after the one that started it."""
        self.attending = 0
        """Clients waiting for the download right now (``Downloads.attending``)."""
        self.size: int | None = None
        self.uncached = False
        """Passed through without a file: the cache had no room for it."""
        self.result: CachedFile | None = None
        self._started: asyncio.Future[Started] = asyncio.get_running_loop().create_future()
        self._finished: asyncio.Future[CachedFile] = asyncio.get_running_loop().create_future()
        self._changed = asyncio.Event()
        self._temp: TempFile | None = None
        self._written = 0  # bytes in the temporary file
        self._available = 0  # bytes readers may have: the file's, then the newest ones in memory
        # The newest bytes, as (offset, chunk), oldest first: every byte not yet in the file, and
        # as many written ones as fit READ_ALONG_MEMORY.
        self._recent: collections.deque[tuple[int, bytes]] = collections.deque()
        self._recent_size = 0
        self._failure: DownloadFailed | None = None
        self._positions: dict[int, int] = {}  # reader → the next offset it asks for
        self._given_up: set[int] = set()  # readers a passed-through download no longer waits for
        self._readers = 0
        self._moved: asyncio.Event | None = None  # set when a reader moves on, if the producer waits
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

    def _publish(self, chunk: bytes) -> None:
        """Hand ``chunk`` to readers at once; it reaches the temporary file shortly after."""
        self._recent.append((self._available, chunk))
        self._recent_size += len(chunk)
        self._available += len(chunk)
        self._notify()

    @property
    def nearly_done(self) -> bool:
        return self.size is not None and self._available >= self.size * NEARLY_DONE

    def _wrote(self, written: int) -> None:
        self._written = written
        recent = self._recent
        while recent and self._recent_size > READ_ALONG_MEMORY:
            offset, chunk = recent[0]
            if offset + len(chunk) > written and not self.uncached:
                break  # not in the file yet: readers can only have it from here
            self._recent_size -= len(chunk)
            recent.popleft()

    def _reader_at(self, reader: int, position: int | None) -> None:
        if position is None:
            self._positions.pop(reader, None)
            self._given_up.discard(reader)
        elif reader not in self._given_up:
            self._positions[reader] = position
        if self._moved is not None:
            self._moved.set()

    async def _keep_pace(self) -> None:
        """Passed through: wait while a reader is more than ``PASS_THROUGH_LEAD`` behind, unless it
        has not moved for ``PASS_THROUGH_PATIENCE``. Readers that are about to start (a response
        still sending its headers) get a turn first."""
        await asyncio.sleep(0)
        while True:
            behind = [r for r, p in self._positions.items() if p < self._available - PASS_THROUGH_LEAD]
            if not behind:
                return
            self._moved = asyncio.Event()
            try:
                async with asyncio.timeout(PASS_THROUGH_PATIENCE):
                    await self._moved.wait()
            except TimeoutError:
                for reader in behind:
                    if self._positions.get(reader, self._available) < self._available - PASS_THROUGH_LEAD:
                        del self._positions[reader]
                        self._given_up.add(reader)
            finally:
                self._moved = None

    def _from_memory(self, position: int, limit: int) -> bytes | None:
        """Written bytes from ``position`` (at most ``limit``) if they are still in memory."""
        if not self._recent or position < self._recent[0][0]:
            return None
        for offset, chunk in reversed(self._recent):
            if offset <= position:
                if position == offset and len(chunk) <= limit:
                    return chunk
                return chunk[position - offset : position - offset + limit]
        return None

    def _fail(self, failure: DownloadFailed) -> None:
        self._failure = failure
        if not self._started.done():
            self._started.set_exception(failure)
        if not self._finished.done():
            self._finished.set_exception(failure)
        self._notify()

    async def read(self, offset: int = 0, chunk_size: int = 1024 * 1024) -> AsyncIterator[bytes]:
        """The file's bytes from ``offset``, following the download as it lands."""
        self._readers += 1
        reader = self._readers
        self._reader_at(reader, offset)  # from the first step: a passed-through download waits for it
        loop = asyncio.get_running_loop()
        fd: int | None = None
        try:
            await self.started()
            try:
                fd = None if self.uncached else await loop.run_in_executor(None, self._open_for_reading)
            except DownloadFailed:
                # The temporary file went away: discarded by a failure (report that failure), or
                # renamed into the cache before ``result`` was set (wait for it, then open the cached
                # file).
                with contextlib.suppress(DownloadFailed):
                    await self.finished()
                if self._failure is not None:
                    raise self._failure from None
                fd = None if self.uncached else await loop.run_in_executor(None, self._open_for_reading)
            position = offset
            while True:
                changed = self._changed
                self._reader_at(reader, position)
                if position < self._available:
                    data = self._from_memory(position, chunk_size)
                    if data is None:  # behind the bytes in memory, so in the file: read them back
                        if fd is None or position >= self._written:
                            raise DownloadFailed("space", "fell behind a download the cache has no room for")
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
            self._reader_at(reader, None)
            if fd is not None:
                os.close(fd)

    def _open_for_reading(self) -> int | None:
        # Before the commit the bytes are in the temporary file, afterwards in the cache; an fd
        # opened on either keeps working across the rename.
        for _ in range(3):
            path = self.result.path if self.result is not None else (self._temp.path if self._temp else None)
            if path is None:
                if self.uncached:
                    return None  # passed through: readers take the bytes from memory
                break
            try:
                return os.open(path, os.O_RDONLY | os.O_CLOEXEC)
            except FileNotFoundError:
                continue  # renamed between the check and the open: look again
        raise DownloadFailed("error", "the downloaded file is gone")


def _write_all(temp: TempFile, chunks: list[bytes]) -> None:
    for chunk in chunks:  # one executor round trip, no copy to join them
        temp.write(chunk)


async def _in_background(function: Callable[[Path], str], argument: Path) -> str:
    """``function(argument)`` in a thread of its own at the lowest CPU priority: a check that may
    take seconds for a large file, and must not slow down the clients being served meanwhile."""
    loop = asyncio.get_running_loop()
    future: asyncio.Future[str] = loop.create_future()

    def settle(result: str | None, error: BaseException | None) -> None:
        if future.done():
            return
        if error is not None:
            future.set_exception(error)
        else:
            future.set_result(result or "")

    def work() -> None:
        with contextlib.suppress(OSError, AttributeError):  # Linux: a niceness per thread
            os.setpriority(os.PRIO_PROCESS, threading.get_native_id(), 19)
        result: str | None = None
        error: BaseException | None = None
        try:
            result = function(argument)
        except BaseException as exc:
            error = exc
        with contextlib.suppress(RuntimeError):  # the loop closed meanwhile: nobody waits
            loop.call_soon_threadsafe(settle, result, error)

    threading.Thread(target=work, name="symbol-proxy-check", daemon=True).start()
    return await future


def _md5_of(path: Path) -> str:
    digest = hashlib.md5(usedforsecurity=False)
    with open(path, "rb", buffering=0) as file:
        while block := file.read(MD5_BLOCK):
            digest.update(block)
    return digest.hexdigest()


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
        self._writing: asyncio.Future[None] | None = None
        self._md5: str | None = None
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
            except CacheFull:
                self._pass_through()
            except BaseException:
                temp.discard()
                raise
        self._begin(size, verify)

    def start_from(self, temp: TempFile) -> None:
        """Take over ``temp``, complete already (an unpacked file): no second copy is written. Its
        content is the caller's to check (no head passes through ``write`` to verify)."""
        if self._download._temp is not None:
            raise RuntimeError("start() called twice")
        temp.close()
        self._download._temp = temp
        self._download._written = self._download._available = temp.written
        self._begin(temp.written, None)

    def _begin(self, size: int | None, verify: Callable[[bytes], bool] | None) -> None:
        self._size = size
        self._download.size = size
        self._verify = verify
        self._download._started.set_result(Started(size))
        self._download._notify()

    def _pass_through(self) -> None:
        """No room in the cache: drop the temporary file and hand the bytes to readers only."""
        download = self._download
        if download._temp is not None:
            download._temp.discard()
            download._temp = None
        download.uncached = True
        self._pending = []
        self._pending_size = 0
        log.debug("no room in the cache for %s: passed through, not cached", download.key)
        download._wrote(download._written)

    async def write(self, data: bytes) -> None:
        if not self._download._started.done():
            raise RuntimeError("write() before start()")
        if self._verify is not None and len(self._head) < 64:
            self._head += data[: 64 - len(self._head)]
            if len(self._head) >= 64:
                self._check_head()
        # Readers get the bytes from memory at once. The file is written behind them, in batches
        # (every write is an executor round trip) while the producer reads on: at most one batch
        # being written and one gathering, so memory stays bounded.
        self._download._publish(data)
        if self._download.uncached:
            self._download._wrote(self._download._written)
            await self._download._keep_pace()
            return
        self._pending.append(data)
        self._pending_size += len(data)
        if self._pending_size >= WRITE_BATCH:
            await self._wait_for_write()
            self._start_write()

    def _check_head(self) -> None:
        if self._verify is not None and not self._verify(self._head):
            raise DownloadFailed("error", "unexpected content")

    def _start_write(self) -> None:
        temp = self._download._temp
        if temp is None or not self._pending:
            return
        chunks = self._pending
        self._pending = []
        self._pending_size = 0
        self._writing = asyncio.get_running_loop().run_in_executor(None, _write_all, temp, chunks)

    async def _wait_for_write(self) -> None:
        """Wait for the batch being written; raises its error (``CacheFull``, ``OSError``)."""
        writing, self._writing = self._writing, None
        if writing is not None:
            try:
                await writing
            except CacheFull:
                self._pass_through()
                return
            finally:
                temp = self._download._temp
                if temp is not None:
                    self._download._wrote(temp.written)

    async def settle(self) -> None:
        """Let a write still running in a worker thread end (before the file is discarded)."""
        writing = self._writing
        cancelled = False
        while writing is not None and not writing.done():
            try:
                await asyncio.wait({writing})
            except asyncio.CancelledError:
                cancelled = True
        if cancelled:
            raise asyncio.CancelledError

    async def flush(self) -> None:
        """Write every byte handed over so far to the file."""
        await self._wait_for_write()
        self._start_write()
        await self._wait_for_write()
        self._download._notify()

    async def finish(self) -> None:
        """The producer is done: verify what the stream could not (a head shorter than 64 bytes is
        checked as a whole; the promised MD5 on the complete file), and write every byte."""
        if len(self._head) < 64:
            self._check_head()
        await self.flush()
        if self._download.uncached:
            return
        temp = self._download._temp
        if temp is None:
            raise DownloadFailed("error", "the producer found nothing to write")
        if self._md5 is not None:
            try:
                digest = await _in_background(_md5_of, temp.path)
            except OSError as exc:
                raise DownloadFailed("error", f"not cached: {exc}") from exc
            if digest != self._md5:
                raise DownloadFailed("error", "content does not match the source's MD5")

    def new_scratch(self, prefix: str) -> TempFile:
        """Scratch space for the producer (a packed body), counted against the cache's cap."""
        return self._cache.new_temp(prefix)

    def expect_md5(self, hexdigest: str) -> None:
        """Commit the file only if its MD5 is ``hexdigest``. The file is hashed once it is complete,
        from the temporary file in a worker thread: readers streaming it never wait for the hash."""
        self._md5 = hexdigest.lower()

    def not_found(self, detail: str = "") -> None:
        self.outcome = DownloadFailed("not_found", detail)

    def error(self, detail: str, kind: FailureKind = "error") -> None:
        self.outcome = DownloadFailed(kind, detail)


class Downloads:
    def __init__(self, cache: DiskCache, *, negative_ttl: float, error_ttl: float) -> None:
        self._cache = cache
        self._negative_ttl = negative_ttl
        self._error_ttl = error_ttl
        self._running: dict[str, Download] = {}
        self._tasks: set[asyncio.Task[None]] = set()
        self._task_of: dict[Download, asyncio.Task[None]] = {}
        self.on_cancel: Callable[[], None] | None = None
        """Called for every download cancelled because nobody waited for it any more."""

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
        self._task_of[download] = task
        task.add_done_callback(self._tasks.discard)
        task.add_done_callback(lambda _: self._task_of.pop(download, None))
        return download

    @contextlib.contextmanager
    def attending(self, download: Download) -> Iterator[None]:
        """A client waits for ``download`` while the block runs. When the last one leaves, the
        download is cancelled after ``CANCEL_GRACE`` unless someone came back or it is nearly done."""
        download.attending += 1
        try:
            yield
        finally:
            download.attending -= 1
            if download.attending == 0 and not download.done:
                asyncio.get_running_loop().call_later(CANCEL_GRACE, self._cancel_if_abandoned, download)

    def _cancel_if_abandoned(self, download: Download) -> None:
        task = self._task_of.get(download)
        if task is None or download.attending > 0 or download.done or download.nearly_done:
            return
        if self.on_cancel is not None:
            self.on_cancel()
        task.cancel()

    async def _run(self, download: Download, producer: Callable[[Sink], Awaitable[None]]) -> None:
        sink = Sink(download, self._cache)
        try:
            for pause in (*ROOM_RETRY_PAUSES, None):
                await self._attempt(download, producer, sink)
                if sink.outcome is None or sink.outcome.kind != "space" or download._started.done():
                    break
                if pause is None:
                    break
                # No room for scratch space before any reader had a byte: other downloads and
                # responses hold the cap for now, and will let go. Wait, then try again afresh.
                await sink.settle()
                if download._temp is not None:
                    download._temp.discard()
                    download._temp = None
                await asyncio.sleep(pause)
                sink = Sink(download, self._cache)
        finally:
            self._running.pop(download.key, None)
            if sink.outcome is not None:
                try:
                    await sink.settle()  # no worker thread may still write to the file
                finally:
                    if download._temp is not None:
                        download._temp.discard()
                    self._remember(download.key, sink.outcome)
                    download._fail(sink.outcome)

    async def _attempt(
        self, download: Download, producer: Callable[[Sink], Awaitable[None]], sink: Sink
    ) -> None:
        """Run the producer into ``sink`` and commit the file; failures end up in ``sink.outcome``."""
        loop = asyncio.get_running_loop()
        try:
            await producer(sink)
        except DownloadFailed as failed:
            sink.outcome = failed
        except asyncio.CancelledError:
            sink.outcome = DownloadFailed("error", "cancelled")
            raise
        except CacheFull as exc:
            sink.outcome = DownloadFailed("space", f"not cached: {exc}")
        except Exception as exc:  # the producer's failure is this download's failure
            log.debug("download of %s failed", download.key, exc_info=True)
            sink.outcome = DownloadFailed("error", str(exc) or type(exc).__name__)
        if sink.outcome is None:
            try:
                await sink.finish()
            except DownloadFailed as failed:
                sink.outcome = failed
            except Exception as exc:
                sink.outcome = DownloadFailed("error", str(exc) or type(exc).__name__)
        if sink.outcome is None and download.uncached:
            # Every reader had the bytes from memory; there is no file to commit.
            download._finished.set_exception(DownloadFailed("space", "passed through, not cached"))
            download._notify()
        elif sink.outcome is None:
            temp = download._temp
            assert temp is not None
            try:
                cached = await loop.run_in_executor(
                    None, lambda: temp.commit(download.key, expected_size=sink.size)
                )
            except (ValueError, OSError) as exc:  # (a commit only releases room: never CacheFull)
                sink.outcome = DownloadFailed("error", f"not cached: {exc}")
            else:
                download.result = cached
                download._finished.set_result(cached)
                download._notify()

    def _remember(self, key: str, failure: DownloadFailed) -> None:
        """Remember a miss for its TTL; space pressure and cancellations say nothing upstream."""
        if failure.kind == "space" or failure.detail == "cancelled":
            return
        kind: MissKind = failure.kind
        ttl = self._negative_ttl if kind == "not_found" else self._error_ttl
        self._cache.remember_miss(key, kind, ttl, failure.detail)

    async def aclose(self) -> None:
        tasks = list(self._tasks)
        for task in tasks:
            task.cancel()
        for task in tasks:
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await task
