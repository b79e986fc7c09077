"""The fast path of a miss (``cache.inflight``): bytes handed to readers from memory while the file
is written behind them, readers that fall behind reading back from the file, and the source's MD5
checked on the finished file before it is committed (``Sink.expect_md5``), never on the stream.

Real files under ``tmp_path``; producers are driven by ``asyncio.Event`` gates.
"""

from __future__ import annotations

import asyncio
import errno
import hashlib
import random
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from symbol_proxy.cache import inflight
from symbol_proxy.cache.inflight import Download, DownloadFailed, Downloads, Sink
from symbol_proxy.cache.store import DiskCache, TempFile

KiB = 1024
MiB = 1024 * KiB
TIMEOUT = 10.0


@pytest.fixture
def cache(tmp_path: Path) -> DiskCache:
    cache = DiskCache(tmp_path / "cache", max_size=256 * MiB)
    cache.open()
    return cache


@pytest.fixture
async def downloads(cache: DiskCache) -> AsyncIterator[Downloads]:
    downloads = Downloads(cache, negative_ttl=300.0, error_ttl=7.0)
    yield downloads
    await downloads.aclose()


async def read_all(download: Download, offset: int = 0, chunk_size: int = MiB) -> bytes:
    async with asyncio.timeout(TIMEOUT):
        return b"".join([chunk async for chunk in download.read(offset, chunk_size)])


def cached_bytes(cache: DiskCache, key: str) -> bytes | None:
    entry = cache.get(key)
    if entry is None or not hasattr(entry, "path"):
        return None
    return entry.path.read_bytes()  # type: ignore[no-any-return]


async def test_a_reader_gets_bytes_before_they_are_in_the_file(downloads: Downloads) -> None:
    data = random.Random(1).randbytes(300 * KiB)  # below one write batch: nothing is written yet
    release = asyncio.Event()

    async def producer(sink: Sink) -> None:
        sink.start(len(data))
        await sink.write(data[: 100 * KiB])
        await sink.write(data[100 * KiB :])
        await release.wait()

    download = downloads.fetch("k", producer)
    chunks = download.read()
    async with asyncio.timeout(TIMEOUT):
        got = await anext(chunks)
        while len(got) < len(data):
            got += await anext(chunks)
    assert got == data
    assert download._written == 0  # served from memory alone
    release.set()
    async with asyncio.timeout(TIMEOUT):
        assert [chunk async for chunk in chunks] == []
        await download.finished()


@pytest.mark.parametrize("chunk_size", [MiB, 100 * KiB, 4097])
async def test_a_reader_far_behind_reads_back_from_the_file_then_catches_up(
    downloads: Downloads, cache: DiskCache, chunk_size: int
) -> None:
    data = random.Random(2).randbytes(3 * inflight.READ_ALONG_MEMORY + 123)
    half = len(data) // 2
    halfway = asyncio.Event()
    release = asyncio.Event()

    async def producer(sink: Sink) -> None:
        sink.start(len(data))
        for start in range(0, len(data), 256 * KiB):
            if start >= half and not halfway.is_set():
                await sink.flush()
                halfway.set()
                await release.wait()
            await sink.write(data[start : start + 256 * KiB])

    download = downloads.fetch("k", producer)
    async with asyncio.timeout(TIMEOUT):
        await halfway.wait()
    # Memory holds only the newest bytes now: a late reader starts in the file.
    assert download._recent_size <= inflight.READ_ALONG_MEMORY
    assert download._recent[0][0] > 0
    reading = asyncio.create_task(read_all(download, 0, chunk_size))
    await asyncio.sleep(0.01)
    release.set()
    assert await reading == data
    await download.finished()
    assert cached_bytes(cache, "k") == data


async def test_a_file_matching_the_expected_md5_is_committed(downloads: Downloads, cache: DiskCache) -> None:
    data = random.Random(3).randbytes(5 * MiB + 7)

    async def producer(sink: Sink) -> None:
        sink.start(len(data))
        sink.expect_md5(hashlib.md5(data).hexdigest().upper())
        for start in range(0, len(data), 300 * KiB):
            await sink.write(data[start : start + 300 * KiB])

    download = downloads.fetch("k", producer)
    assert await read_all(download) == data
    assert cached_bytes(cache, "k") == data


async def test_a_file_not_matching_the_expected_md5_is_not_cached(
    downloads: Downloads, cache: DiskCache
) -> None:
    data = random.Random(4).randbytes(3 * MiB)

    async def producer(sink: Sink) -> None:
        sink.start(len(data))
        sink.expect_md5(hashlib.md5(b"something else").hexdigest())
        for start in range(0, len(data), 256 * KiB):
            await sink.write(data[start : start + 256 * KiB])

    download = downloads.fetch("k", producer)
    got = bytearray()
    with pytest.raises(DownloadFailed, match="MD5"):
        async with asyncio.timeout(TIMEOUT):
            async for chunk in download.read():
                got += chunk
    # The reader had every byte (the check runs on the finished file), but learns of the failure
    # before its response ends, and nothing is kept.
    assert bytes(got) == data
    with pytest.raises(DownloadFailed, match="MD5") as failed:
        await download.finished()
    assert failed.value.kind == "error"
    assert "does not match" in failed.value.detail
    assert cache.get("k") is not None and not hasattr(cache.get("k"), "path")  # a remembered error
    assert cache.size == 0
    assert list(cache.tmp_dir.iterdir()) == []


async def test_a_write_error_behind_the_readers_fails_the_download(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    cache = DiskCache(tmp_path / "cache", max_size=8 * MiB)
    cache.open()
    downloads = Downloads(cache, negative_ttl=300.0, error_ttl=7.0)
    original = TempFile.write

    def failing_write(self: TempFile, data: bytes) -> None:
        if self.written >= 2 * MiB:
            raise OSError(errno.EIO, "input/output error")
        original(self, data)

    monkeypatch.setattr(TempFile, "write", failing_write)

    async def producer(sink: Sink) -> None:
        sink.start(None)
        for _ in range(4):
            await sink.write(b"x" * MiB)

    try:
        download = downloads.fetch("k", producer)
        with pytest.raises(DownloadFailed, match="input/output error"):
            await read_all(download)
        assert cache.size == 0
        assert list(cache.tmp_dir.iterdir()) == []
    finally:
        await downloads.aclose()


async def test_a_passed_through_download_keeps_pace_with_a_slow_reader(tmp_path: Path) -> None:
    # No room in the cache (a cap smaller than the file): nothing to read back from, so the
    # producer waits for its slowest reader instead of running out of the bytes in memory.
    small = DiskCache(tmp_path / "small", max_size=MiB)
    small.open()
    downloads = Downloads(small, negative_ttl=300.0, error_ttl=7.0)
    data = random.Random(5).randbytes(3 * inflight.READ_ALONG_MEMORY + 123)
    try:

        async def producer(sink: Sink) -> None:
            sink.start(len(data))
            for start in range(0, len(data), 256 * KiB):
                await sink.write(data[start : start + 256 * KiB])

        download = downloads.fetch("k", producer)
        received: list[bytes] = []
        async with asyncio.timeout(TIMEOUT * 3):
            async for chunk in download.read(0, 256 * KiB):  # joins before the producer runs
                assert download._available - sum(map(len, received)) <= inflight.READ_ALONG_MEMORY
                received.append(chunk)
                await asyncio.sleep(0.001)  # a reader slower than the producer
        assert download.uncached
        assert b"".join(received) == data
        with pytest.raises(DownloadFailed) as failed:
            await download.finished()
        assert failed.value.kind == "space"
        assert small.size == 0
    finally:
        await downloads.aclose()


async def test_a_passed_through_download_goes_on_without_a_reader_that_stopped(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(inflight, "PASS_THROUGH_PATIENCE", 0.2)
    small = DiskCache(tmp_path / "small", max_size=MiB)
    small.open()
    downloads = Downloads(small, negative_ttl=300.0, error_ttl=7.0)
    data = random.Random(6).randbytes(3 * inflight.READ_ALONG_MEMORY)
    try:

        async def producer(sink: Sink) -> None:
            sink.start(len(data))
            for start in range(0, len(data), 256 * KiB):
                await sink.write(data[start : start + 256 * KiB])

        download = downloads.fetch("k", producer)
        stalled = download.read(0, 256 * KiB)
        assert await anext(stalled) == data[: 256 * KiB]  # then it stops reading
        with pytest.raises(DownloadFailed) as passed:
            async with asyncio.timeout(TIMEOUT):
                await download.finished()
        assert passed.value.kind == "space", "the download ended without the stalled reader"
        with pytest.raises(DownloadFailed, match="fell behind"):
            await anext(stalled)
        await stalled.aclose()
    finally:
        await downloads.aclose()
