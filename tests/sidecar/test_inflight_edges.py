"""Edges of the single-flight downloads (``cache.inflight``) beyond the main cache tests: the memory
a download holds, readers that come late, leave, stall or outlive the file, scratch files handed
over whole (``Sink.start_from``), retries when the cache has no room yet, abandoned downloads
cancelled after their grace, and failures that keep the producer's words.

Real ``DiskCache`` directories under ``tmp_path``; producers are held on ``asyncio.Event`` gates.
Mocks only for failures a real disk does not produce on demand (an I/O error, a slow write).
Deadlines that matter are set by the tests (a grace of 0, a patience of 600 s), never by how fast
the machine is; ``TIMEOUT`` only bounds a wait that normally takes milliseconds.
"""

from __future__ import annotations

import asyncio
import errno
import gc
import logging
import os
import random
import threading
import weakref
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path
from typing import Any

import pytest

from symbol_proxy.cache import inflight
from symbol_proxy.cache.inflight import Download, DownloadFailed, Downloads, Sink, Started
from symbol_proxy.cache.store import CachedFile, CacheFull, DiskCache, Miss, TempFile

KiB = 1024
MiB = 1024 * KiB
TIMEOUT = 60.0
NEGATIVE_TTL = 300.0
ERROR_TTL = 7.0
KEY = "app.pdb/0123456789abcdef0123456789abcdef1/app.pdb"


def open_cache(root: Path, max_size: int) -> DiskCache:
    cache = DiskCache(root, max_size=max_size)
    cache.open()
    return cache


@pytest.fixture
def cache(tmp_path: Path) -> DiskCache:
    return open_cache(tmp_path / "cache", 256 * MiB)


@pytest.fixture
async def downloads(cache: DiskCache) -> AsyncIterator[Downloads]:
    downloads = Downloads(cache, negative_ttl=NEGATIVE_TTL, error_ttl=ERROR_TTL)
    yield downloads
    await downloads.aclose()


@pytest.fixture
async def small(tmp_path: Path) -> AsyncIterator[tuple[DiskCache, Downloads]]:
    """A cache of 1 MiB: files larger than that are passed through."""
    cache = open_cache(tmp_path / "small", MiB)
    downloads = Downloads(cache, negative_ttl=NEGATIVE_TTL, error_ttl=ERROR_TTL)
    yield cache, downloads
    await downloads.aclose()


async def read_all(download: Download, offset: int = 0, chunk_size: int = MiB) -> bytes:
    async with asyncio.timeout(TIMEOUT):
        return b"".join([chunk async for chunk in download.read(offset, chunk_size)])


async def failure_of(download: Download) -> DownloadFailed:
    with pytest.raises(DownloadFailed) as failed:
        async with asyncio.timeout(TIMEOUT):
            await download.finished()
    return failed.value


async def wait_for(event: asyncio.Event) -> None:
    async with asyncio.timeout(TIMEOUT):
        await event.wait()


def held_in_memory(download: Download) -> int:
    """Bytes of the download's chunks kept in memory for readers."""
    return sum(len(chunk) for _, chunk in download._recent)


def in_chunks(data: bytes, size: int) -> list[bytes]:
    return [data[start : start + size] for start in range(0, len(data), size)]


def writing(data: bytes, size: int = 256 * KiB, announce: bool = True) -> Callable[[Sink], Awaitable[None]]:
    async def producer(sink: Sink) -> None:
        sink.start(len(data) if announce else None)
        for chunk in in_chunks(data, size):
            await sink.write(chunk)

    return producer


# --------------------------------------------------------------------------------------------------
# Memory: the bytes not yet in the file, and at most READ_ALONG_MEMORY written ones


async def test_memory_stays_bounded_while_a_large_file_is_written_behind_the_readers(
    downloads: Downloads, cache: DiskCache
) -> None:
    data = random.Random(11).randbytes(40 * MiB)
    peaks: list[int] = []
    release = asyncio.Event()
    handed = asyncio.Event()

    async def producer(sink: Sink) -> None:
        sink.start(len(data))
        for chunk in in_chunks(data, 64 * KiB):
            await sink.write(chunk)
            peaks.append(held_in_memory(download))
        handed.set()
        await release.wait()

    download = downloads.fetch(KEY, producer)
    await wait_for(handed)
    # At most one batch being written and one gathering besides the read-along window.
    assert max(peaks) <= inflight.READ_ALONG_MEMORY + 2 * inflight.WRITE_BATCH
    release.set()
    assert await read_all(download) == data
    entry = cache.get(KEY)
    assert isinstance(entry, CachedFile) and entry.path.read_bytes() == data


async def test_chunks_larger_than_the_read_along_window_leave_memory_once_written(
    downloads: Downloads,
) -> None:
    big = inflight.READ_ALONG_MEMORY + MiB
    data = random.Random(12).randbytes(2 * big)
    handed = asyncio.Event()
    release = asyncio.Event()

    async def producer(sink: Sink) -> None:
        sink.start(len(data))
        await sink.write(data[:big])
        await sink.write(data[big:])  # waits until the first chunk is in the file
        handed.set()
        await release.wait()

    download = downloads.fetch(KEY, producer)
    await wait_for(handed)
    not_in_file = download._available - download._written
    assert held_in_memory(download) - not_in_file <= inflight.READ_ALONG_MEMORY
    # Before the download ends, a reader has the first chunk from the file and the second, not
    # written yet, from memory.
    chunks = download.read(0, MiB)
    got = b""
    async with asyncio.timeout(TIMEOUT):
        while len(got) < len(data):
            got += await anext(chunks)
    assert got == data
    assert not download.done
    release.set()
    async with asyncio.timeout(TIMEOUT):
        assert [chunk async for chunk in chunks] == []
        await download.finished()


async def test_a_reader_gets_no_chunk_larger_than_it_asked_for(downloads: Downloads) -> None:
    data = random.Random(13).randbytes(300 * KiB + 17)
    download = downloads.fetch(KEY, writing(data, 64 * KiB))
    await download.finished()
    for offset, chunk_size in [(0, 1000), (1, 4096), (70_000, 100 * KiB)]:
        async with asyncio.timeout(TIMEOUT):
            chunks = [chunk async for chunk in download.read(offset, chunk_size)]
        assert b"".join(chunks) == data[offset:]
        assert max(map(len, chunks)) <= chunk_size


# --------------------------------------------------------------------------------------------------
# Readers that come late or outlive the file


async def test_a_reader_coming_after_the_file_was_evicted_is_told_it_is_gone(
    downloads: Downloads, cache: DiskCache
) -> None:
    data = b"d" * 5000
    download = downloads.fetch(KEY, writing(data))
    await download.finished()
    assert cache.forget(KEY)
    with pytest.raises(DownloadFailed) as failed:
        await read_all(download)
    assert failed.value.kind == "error"
    assert "gone" in failed.value.detail


async def test_a_cached_file_that_shrinks_while_read_back_fails_its_reader(
    downloads: Downloads, cache: DiskCache
) -> None:
    data = random.Random(14).randbytes(3 * inflight.READ_ALONG_MEMORY)
    download = downloads.fetch(KEY, writing(data))
    cached = await download.finished()
    chunks = download.read(0, MiB)
    async with asyncio.timeout(TIMEOUT):
        assert await anext(chunks) == data[:MiB]  # from the file: memory holds only the newest bytes
    os.truncate(cached.path, MiB)
    with pytest.raises(DownloadFailed) as failed:
        async with asyncio.timeout(TIMEOUT):
            await anext(chunks)
    assert failed.value.kind == "error"
    assert "shrank" in failed.value.detail
    await chunks.aclose()


# --------------------------------------------------------------------------------------------------
# Passed through (no room in the cache): every reader is waited for, unless it left or stalled


async def test_a_passed_through_download_keeps_pace_with_its_slowest_of_several_readers(
    small: tuple[DiskCache, Downloads], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(inflight, "PASS_THROUGH_PATIENCE", 600.0)  # never gives up on a reader here
    _cache, downloads = small
    data = random.Random(15).randbytes(3 * inflight.READ_ALONG_MEMORY)
    download = downloads.fetch(KEY, writing(data))

    async def reader(pause: float) -> bytes:
        got = bytearray()
        async for chunk in download.read(0, 256 * KiB):
            got += chunk
            await asyncio.sleep(pause)
        return bytes(got)

    async with asyncio.timeout(TIMEOUT):
        fast, slow = await asyncio.gather(reader(0), reader(0.002))
    assert fast == data
    assert slow == data
    assert download.uncached


async def test_a_reader_counts_from_the_moment_it_asks_even_before_its_file_is_open(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # The reader joins a download that is still cached, and opening the file takes a while; the
    # download outgrows the cache meanwhile and is passed through. It waits for that reader, which
    # then gets every byte from memory.
    monkeypatch.setattr(inflight, "PASS_THROUGH_PATIENCE", 600.0)
    opening = threading.Event()
    original_open = Download._open_for_reading

    def slow_open(self: Download) -> int | None:
        opening.wait(TIMEOUT)
        return original_open(self)

    monkeypatch.setattr(Download, "_open_for_reading", slow_open)
    cache = open_cache(tmp_path / "cache", 4 * MiB)
    downloads = Downloads(cache, negative_ttl=NEGATIVE_TTL, error_ttl=ERROR_TTL)
    data = random.Random(22).randbytes(3 * inflight.READ_ALONG_MEMORY)
    try:
        download = downloads.fetch(KEY, writing(data, announce=False))
        reading = asyncio.ensure_future(read_all(download, 0, 256 * KiB))
        async with asyncio.timeout(TIMEOUT):
            while not download.uncached:
                await asyncio.sleep(0.01)
        opening.set()
        assert await reading == data
        assert (await failure_of(download)).kind == "space"
    finally:
        opening.set()
        await downloads.aclose()


async def test_a_reader_that_left_a_passed_through_download_does_not_hold_it(
    small: tuple[DiskCache, Downloads], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(inflight, "PASS_THROUGH_PATIENCE", 600.0)
    _cache, downloads = small
    data = random.Random(16).randbytes(3 * inflight.READ_ALONG_MEMORY)
    download = downloads.fetch(KEY, writing(data))
    leaving = download.read(0, 256 * KiB)
    staying = asyncio.ensure_future(read_all(download, 0, 256 * KiB))
    async with asyncio.timeout(TIMEOUT):
        assert await anext(leaving) == data[: 256 * KiB]
    await leaving.aclose()  # the client went away
    assert await staying == data
    assert (await failure_of(download)).kind == "space"


async def test_a_reader_given_up_for_stalling_is_not_waited_for_again(
    small: tuple[DiskCache, Downloads], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(inflight, "PASS_THROUGH_PATIENCE", 0.2)
    _cache, downloads = small
    data = random.Random(17).randbytes(3 * inflight.READ_ALONG_MEMORY)
    gate_at = 6 * MiB  # further ahead of the reader than the lead, still within memory
    at_gate = asyncio.Event()
    go = asyncio.Event()

    async def producer(sink: Sink) -> None:
        sink.start(len(data))
        for start in range(0, len(data), 256 * KiB):
            if start == gate_at:
                at_gate.set()
                await go.wait()
            await sink.write(data[start : start + 256 * KiB])

    download = downloads.fetch(KEY, producer)
    stalled = download.read(0, 256 * KiB)
    async with asyncio.timeout(TIMEOUT):
        assert await anext(stalled) == data[: 256 * KiB]
    await wait_for(at_gate)  # only reachable once the download stopped waiting for that reader
    monkeypatch.setattr(inflight, "PASS_THROUGH_PATIENCE", 600.0)
    async with asyncio.timeout(TIMEOUT):
        assert await anext(stalled) == data[256 * KiB : 512 * KiB]  # still in memory: it may read on
    go.set()  # and stalls again: the download goes on without it, at once
    assert (await failure_of(download)).kind == "space"
    with pytest.raises(DownloadFailed) as cut:
        await anext(stalled)
    assert cut.value.kind == "space"
    assert "fell behind" in cut.value.detail
    await stalled.aclose()


async def test_a_stalled_reader_of_a_download_that_outgrew_the_cache_reads_what_was_written_then_is_cut(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(inflight, "PASS_THROUGH_PATIENCE", 0.2)
    cache = open_cache(tmp_path / "cache", 4 * MiB)
    downloads = Downloads(cache, negative_ttl=NEGATIVE_TTL, error_ttl=ERROR_TTL)
    data = random.Random(18).randbytes(30 * MiB)  # no size announced: found too large as it grows
    reading = asyncio.Event()

    async def producer(sink: Sink) -> None:
        sink.start(None)
        for start in range(0, len(data), 256 * KiB):
            if start == 2 * MiB:
                await reading.wait()
            await sink.write(data[start : start + 256 * KiB])

    try:
        download = downloads.fetch(KEY, producer)
        chunks = download.read(0, MiB)  # opens the temporary file: the download is still cached
        async with asyncio.timeout(TIMEOUT):
            got = await anext(chunks)
        reading.set()  # then the reader stalls while the download passes the cache's size
        assert (await failure_of(download)).kind == "space"
        assert download.uncached
        with pytest.raises(DownloadFailed) as cut:
            async with asyncio.timeout(TIMEOUT):
                async for chunk in chunks:
                    got += chunk
        assert cut.value.kind == "space"
        assert "fell behind" in cut.value.detail
        assert got == data[: len(got)]
        assert len(got) >= 2 * MiB, "the bytes written before the cache ran out are read back"
        assert cache.size == 0
        assert list(cache.tmp_dir.iterdir()) == []
    finally:
        await downloads.aclose()


# --------------------------------------------------------------------------------------------------
# The producer's side


async def test_a_scratch_file_handed_over_whole_becomes_the_cached_file_without_a_copy(
    downloads: Downloads, cache: DiskCache
) -> None:
    data = random.Random(19).randbytes(inflight.READ_ALONG_MEMORY + 5)
    scratch_paths: list[Path] = []

    async def producer(sink: Sink) -> None:
        scratch = sink.new_scratch("unpacked-")
        scratch_paths.append(scratch.path)
        scratch.write(data)
        sink.start_from(scratch)

    download = downloads.fetch(KEY, producer)
    async with asyncio.timeout(TIMEOUT):
        assert await download.started() == Started(len(data))
    assert await read_all(download) == data
    cached = await download.finished()
    assert cached.path.read_bytes() == data
    assert scratch_paths[0].parent == cache.tmp_dir
    assert scratch_paths[0].name.startswith("unpacked-")
    assert cache.size == len(data), "one copy: the scratch file itself was committed"
    assert list(cache.tmp_dir.iterdir()) == []


async def test_an_announced_size_is_what_readers_are_told_at_the_start(downloads: Downloads) -> None:
    data = b"s" * 3000
    download = downloads.fetch(KEY, writing(data))
    async with asyncio.timeout(TIMEOUT):
        assert await download.started() == Started(len(data))
    assert download.size == len(data)
    assert await read_all(download) == data


async def _start_then_start_from(sink: Sink) -> None:
    sink.start(None)
    scratch = sink.new_scratch("unpacked-")
    try:
        sink.start_from(scratch)
    finally:
        scratch.discard()


async def _write_before_start(sink: Sink) -> None:
    await sink.write(b"x" * 100)


async def _nameless_exception(sink: Sink) -> None:
    sink.start(None)
    await sink.write(b"x" * 100)
    raise ConnectionResetError


async def _timeout_without_detail(sink: Sink) -> None:
    raise DownloadFailed("timeout")


async def _not_found_without_detail(sink: Sink) -> None:
    sink.not_found()


MISUSES: list[tuple[Callable[[Sink], Awaitable[None]], str, str]] = [
    # producer, kind, the failure's detail (exactly)
    (_start_then_start_from, "error", "start() called twice"),
    (_write_before_start, "error", "write() before start()"),
    (_nameless_exception, "error", "ConnectionResetError"),
    (_timeout_without_detail, "timeout", ""),
    (_not_found_without_detail, "not_found", ""),
]


@pytest.mark.parametrize(
    ("producer", "kind", "detail"), MISUSES, ids=[row[0].__name__.strip("_") for row in MISUSES]
)
async def test_a_failure_keeps_the_producers_words_and_nothing_else(
    downloads: Downloads,
    cache: DiskCache,
    producer: Callable[[Sink], Awaitable[None]],
    kind: str,
    detail: str,
) -> None:
    download = downloads.fetch(KEY, producer)
    failure = await failure_of(download)
    assert (failure.kind, failure.detail) == (kind, detail)
    assert str(failure) == (detail or kind)
    miss = cache.get(KEY)
    assert isinstance(miss, Miss)
    assert (miss.kind, miss.detail) == (kind, detail)
    assert cache.size == 0
    assert list(cache.tmp_dir.iterdir()) == []


@pytest.mark.parametrize(
    ("error", "detail"),
    [(OSError(errno.EIO, "input/output error"), "input/output error"), (OSError(), "OSError")],
    ids=["with-message", "without-message"],
)
async def test_a_write_failing_as_the_producer_finishes_fails_the_download(
    downloads: Downloads, cache: DiskCache, monkeypatch: pytest.MonkeyPatch, error: OSError, detail: str
) -> None:
    def failing_write(self: TempFile, data: bytes) -> None:
        raise error

    monkeypatch.setattr(TempFile, "write", failing_write)
    data = b"w" * 1000  # less than a batch: the only write is the one that finishes the file
    download = downloads.fetch(KEY, writing(data))
    with pytest.raises(DownloadFailed) as read:
        await read_all(download)
    failure = await failure_of(download)
    assert read.value is failure
    assert failure.kind == "error"
    assert detail in failure.detail
    miss = cache.get(KEY)
    assert isinstance(miss, Miss) and miss.kind == "error"
    assert cache.size == 0
    assert list(cache.tmp_dir.iterdir()) == []


async def test_a_finished_file_that_cannot_be_read_for_its_md5_is_not_cached(
    downloads: Downloads, cache: DiskCache, monkeypatch: pytest.MonkeyPatch
) -> None:
    def unreadable(path: Path) -> str:
        raise OSError(errno.EIO, "input/output error")

    monkeypatch.setattr(inflight, "_md5_of", unreadable)
    data = b"m" * 3000

    async def producer(sink: Sink) -> None:
        sink.start(len(data))
        sink.expect_md5("0" * 32)
        await sink.write(data)

    download = downloads.fetch(KEY, producer)
    failure = await failure_of(download)
    assert failure.kind == "error"
    assert failure.detail.startswith("not cached: ")
    assert "input/output error" in failure.detail
    assert isinstance(cache.get(KEY), Miss)
    assert cache.size == 0
    assert list(cache.tmp_dir.iterdir()) == []


async def test_the_md5_check_runs_in_a_daemon_thread_at_the_lowest_priority(tmp_path: Path) -> None:
    # A check of a large file takes seconds: it must neither slow the clients being served nor
    # hold the process when it exits.
    seen: list[tuple[bool, int, bool]] = []

    def probe(path: Path) -> str:
        thread = threading.current_thread()
        niceness = os.getpriority(os.PRIO_PROCESS, threading.get_native_id())
        seen.append((thread.daemon, niceness, thread is threading.main_thread()))
        return path.name

    async with asyncio.timeout(TIMEOUT):
        assert await inflight._in_background(probe, tmp_path / "file") == "file"
    assert seen == [(True, 19, False)]


async def test_a_failure_is_reported_only_after_the_write_still_running_has_ended(
    downloads: Downloads, cache: DiskCache, monkeypatch: pytest.MonkeyPatch
) -> None:
    entered = threading.Event()
    release = threading.Event()
    running: list[bool] = []
    discarded_while_writing: list[bool] = []
    original_write, original_discard = TempFile.write, TempFile.discard

    def slow_write(self: TempFile, data: bytes) -> None:
        running.append(True)
        try:
            entered.set()
            release.wait(TIMEOUT)
            original_write(self, data)
        finally:
            running.pop()

    def watched_discard(self: TempFile) -> None:
        discarded_while_writing.append(bool(running))
        original_discard(self)

    monkeypatch.setattr(TempFile, "write", slow_write)
    monkeypatch.setattr(TempFile, "discard", watched_discard)

    async def producer(sink: Sink) -> None:
        sink.start(None)
        await sink.write(b"x" * inflight.WRITE_BATCH)  # a batch goes to a worker thread
        raise ConnectionResetError("connection reset")

    try:
        download = downloads.fetch(KEY, producer)
        loop = asyncio.get_running_loop()
        assert await loop.run_in_executor(None, entered.wait, TIMEOUT)
        release.set()
        failure = await failure_of(download)
    finally:
        release.set()
    assert failure.detail == "connection reset"
    assert discarded_while_writing == [False]
    assert cache.size == 0
    assert list(cache.tmp_dir.iterdir()) == []


async def test_why_a_file_is_not_cached_is_logged_with_its_key(
    small: tuple[DiskCache, Downloads], caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG, logger=inflight.log.name)
    _cache, downloads = small
    data = b"p" * (2 * MiB)
    passed = downloads.fetch(KEY, writing(data))
    assert await read_all(passed) == data
    failure = await failure_of(passed)
    assert failure.kind == "space"
    assert "passed through" in failure.detail

    other = KEY.replace("app", "lib")
    failed = downloads.fetch(other, _nameless_exception)
    await failure_of(failed)

    records = [r for r in caplog.records if r.name == inflight.log.name]
    passing = [r for r in records if KEY in r.getMessage()]
    assert len(passing) == 1 and "passed through" in passing[0].getMessage()
    failing = [r for r in records if other in r.getMessage()]
    assert len(failing) == 1 and "failed" in failing[0].getMessage()
    assert failing[0].exc_info is not None, "the producer's traceback is logged"
    assert failing[0].exc_info[0] is ConnectionResetError


# --------------------------------------------------------------------------------------------------
# Abandoned downloads: cancelled once nobody waits for them (no grace in these tests)


async def after_due_timers() -> None:
    """Return once every timer due by now has run (a cancellation scheduled with no grace)."""
    ran = asyncio.Event()
    asyncio.get_running_loop().call_later(0.05, ran.set)  # due later than those: runs after them
    await wait_for(ran)


@pytest.mark.parametrize("counted", [True, False], ids=["counted", "no-counter"])
@pytest.mark.parametrize("had_bytes", [False, True], ids=["before-start", "after-some-bytes"])
async def test_a_download_nobody_waits_for_any_more_is_cancelled_and_not_remembered(
    downloads: Downloads, cache: DiskCache, monkeypatch: pytest.MonkeyPatch, counted: bool, had_bytes: bool
) -> None:
    monkeypatch.setattr(inflight, "CANCEL_GRACE", 0.0)
    cancelled: list[str] = []
    if counted:
        downloads.on_cancel = lambda: cancelled.append(KEY)
    forever = asyncio.Event()
    begun = asyncio.Event()

    async def producer(sink: Sink) -> None:
        if had_bytes:
            sink.start(10 * MiB)
            await sink.write(b"x" * MiB)  # far from done
        begun.set()
        await forever.wait()

    download = downloads.fetch(KEY, producer)
    with downloads.attending(download):
        await wait_for(begun)
    failure = await failure_of(download)
    assert (failure.kind, failure.detail) == ("error", "cancelled")
    assert cancelled == ([KEY] if counted else [])
    assert cache.get(KEY) is None, "a cancellation says nothing about the upstream"
    assert downloads.in_flight == 0
    assert cache.size == 0
    assert list(cache.tmp_dir.iterdir()) == []


async def test_a_download_nearly_done_is_finished_even_when_nobody_waits(
    downloads: Downloads, cache: DiskCache, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(inflight, "CANCEL_GRACE", 0.0)
    cancelled: list[str] = []
    downloads.on_cancel = lambda: cancelled.append(KEY)
    data = random.Random(20).randbytes(4000)
    most = int(len(data) * 0.9)
    handed = asyncio.Event()
    release = asyncio.Event()

    async def producer(sink: Sink) -> None:
        sink.start(len(data))
        await sink.write(data[:most])
        handed.set()
        await release.wait()
        await sink.write(data[most:])

    download = downloads.fetch(KEY, producer)
    with downloads.attending(download):
        await wait_for(handed)
    await after_due_timers()
    assert not download.done
    release.set()
    async with asyncio.timeout(TIMEOUT):
        cached = await download.finished()
    assert cached.path.read_bytes() == data
    assert cancelled == []


async def test_a_download_someone_still_or_again_waits_for_is_not_cancelled(
    downloads: Downloads, cache: DiskCache, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(inflight, "CANCEL_GRACE", 0.0)
    cancelled: list[str] = []
    downloads.on_cancel = lambda: cancelled.append(KEY)
    data = b"a" * 5000
    release = asyncio.Event()

    async def producer(sink: Sink) -> None:
        sink.start(None)
        await sink.write(data[:100])
        await release.wait()
        await sink.write(data[100:])

    download = downloads.fetch(KEY, producer)
    with downloads.attending(download):
        with downloads.attending(download):
            await download.started()
        await after_due_timers()  # one of two clients left
        assert not download.done
    with downloads.attending(download):  # the last one left, and another came at once
        await after_due_timers()
        assert not download.done
        release.set()
        async with asyncio.timeout(TIMEOUT):
            cached = await download.finished()
    await after_due_timers()
    assert cached.path.read_bytes() == data
    assert cancelled == []
    assert isinstance(cache.get(KEY), CachedFile)


# --------------------------------------------------------------------------------------------------
# Nothing left behind


async def test_a_finished_download_is_not_kept_alive_by_the_downloads(downloads: Downloads) -> None:
    download = downloads.fetch(KEY, writing(b"k" * 1000))
    await download.finished()
    for _ in range(3):
        await asyncio.sleep(0)  # the task's done callbacks run
    ref = weakref.ref(download)
    del download
    gc.collect()
    assert ref() is None


async def test_downloads_leave_no_error_for_the_event_loop_to_report(downloads: Downloads) -> None:
    loop = asyncio.get_running_loop()
    reported: list[dict[str, Any]] = []
    previous = loop.get_exception_handler()
    loop.set_exception_handler(lambda _loop, context: reported.append(context))
    try:
        fetched = [
            downloads.fetch("ok", writing(b"o" * 1000)),
            downloads.fetch("early", _not_found_without_detail),  # nobody ever awaits these two
            downloads.fetch("midway", _nameless_exception),
        ]
        async with asyncio.timeout(TIMEOUT):
            while downloads.in_flight or not all(d.done for d in fetched):
                await asyncio.sleep(0.01)
            for _ in range(3):
                await asyncio.sleep(0)
        del fetched
        gc.collect()
        await asyncio.sleep(0)
    finally:
        loop.set_exception_handler(previous)
    assert reported == []


# --------------------------------------------------------------------------------------------------
# No room yet: asked again while no reader has had a byte


def _scratch_producer(
    data: bytes, attempts: list[int], refused: asyncio.Event
) -> Callable[[Sink], Awaitable[None]]:
    async def producer(sink: Sink) -> None:
        attempts.append(len(attempts) + 1)
        scratch = sink.new_scratch("packed-")  # counted against the cap, like a packed body
        try:
            scratch.write(data)
        except CacheFull:
            scratch.discard()
            refused.set()
            raise
        sink.start_from(scratch)

    return producer


async def test_a_download_that_found_no_room_yet_is_tried_again_once_room_is_made(
    small: tuple[DiskCache, Downloads],
) -> None:
    cache, downloads = small
    holder = cache.new_temp()
    holder.reserve(cache.max_size)  # another download holds the whole cap for now
    data = random.Random(21).randbytes(300 * KiB)
    attempts: list[int] = []
    refused = asyncio.Event()
    download = downloads.fetch(KEY, _scratch_producer(data, attempts, refused))
    await wait_for(refused)
    holder.discard()  # and lets go
    assert await read_all(download) == data
    assert attempts == [1, 2]
    entry = cache.get(KEY)
    assert isinstance(entry, CachedFile) and entry.path.read_bytes() == data


async def test_a_download_that_never_finds_room_fails_for_space_and_is_not_remembered(
    small: tuple[DiskCache, Downloads], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(inflight, "ROOM_RETRY_PAUSES", (0.0, 0.0))
    cache, downloads = small
    holder = cache.new_temp()
    holder.reserve(cache.max_size)
    attempts: list[int] = []
    download = downloads.fetch(KEY, _scratch_producer(b"n" * 1000, attempts, asyncio.Event()))
    failure = await failure_of(download)
    assert failure.kind == "space"
    assert "do not fit" in failure.detail, failure.detail
    assert attempts == [1, 2, 3], "the first attempt and one after each pause"
    assert cache.get(KEY) is None, "a full cache says nothing about the upstream"
    assert list(cache.tmp_dir.iterdir()) == [holder.path]
    holder.discard()
