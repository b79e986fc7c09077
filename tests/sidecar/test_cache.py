"""The disk cache (``cache.store``) and the single-flight downloads that fill it (``cache.inflight``).

Everything runs against real files under ``tmp_path``: the hard size cap is checked by summing the
bytes actually on disk (temporary files included) after every step of a seeded random churn that
is mirrored by a small LRU model; a restart reopens the same directory; negative entries run on an
injected clock. Downloads are driven by producers held on ``asyncio.Event`` gates, so coalescing,
read-along and failure cleanup are observed at the exact moments that matter.
"""

from __future__ import annotations

import asyncio
import collections
import os
import random
import threading
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path

import pytest

from symbol_proxy.cache.inflight import READ_ALONG_MEMORY, Download, DownloadFailed, Downloads, Sink, Started
from symbol_proxy.cache.store import CachedFile, CacheFull, DiskCache, Miss, MissKind, TempFile

KiB = 1024
MiB = 1024 * KiB
NEGATIVE_TTL = 300.0
ERROR_TTL = 7.0
TIMEOUT = 10.0
"""Upper bound for any single wait in these tests; they normally take milliseconds."""

PDB_MAGIC = b"Microsoft C/C++ MSF 7.00\r\n\x1aDS\x00\x00\x00"
HTML = b"<!DOCTYPE html><html><head><title>Sign in</title></head><body>Please sign in.</body></html>\n"


class FakeClock:
    def __init__(self, now: float = 1_000_000.0) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now


def files_under(directory: Path) -> dict[Path, int]:
    """Every regular file below ``directory`` with its size, as the file system reports it."""
    found: dict[Path, int] = {}
    for parent, _dirs, names in os.walk(directory):
        for name in names:
            path = Path(parent) / name
            found[path] = path.stat().st_size
    return found


def disk_bytes(cache: DiskCache) -> int:
    return sum(files_under(cache.root).values())


def put(cache: DiskCache, key: str, data: bytes) -> CachedFile:
    temp = cache.new_temp()
    temp.reserve(len(data))  # the size is known, as when an upstream announces it
    temp.write(data)
    return temp.commit(key, expected_size=len(data))


def open_cache(root: Path, max_size: int, clock: Callable[[], float] = time.time) -> DiskCache:
    cache = DiskCache(root, max_size=max_size, clock=clock)
    cache.open()
    return cache


def assert_empty(cache: DiskCache) -> None:
    """Nothing kept: no object, no temporary file, no byte accounted."""
    assert files_under(cache.root) == {}
    assert cache.size == 0
    assert cache.count == 0


# --------------------------------------------------------------------------------------------------
# The store: hard cap and LRU


def test_random_churn_never_exceeds_the_cap_and_follows_lru(tmp_path: Path) -> None:
    """300 seeded random files of 1 KiB..300 KiB through a 1 MiB cache, mirrored by an LRU model.

    After every write, commit and discard: the bytes on disk (temporary files included) stay within
    the cap and within ``size``; after every commit and discard ``size`` is exactly what is on disk,
    and the files present are exactly those the model keeps (least recently *used* evicted first).
    """
    cap = 1 * MiB
    rng = random.Random(20240611)
    cache = open_cache(tmp_path / "cache", cap)
    evicted_sizes: list[int] = []
    cache.on_evict = evicted_sizes.append

    model: collections.OrderedDict[str, int] = collections.OrderedDict()
    paths: dict[str, Path] = {}
    contents: dict[str, bytes] = {}
    model_evictions = 0

    def model_make_room(size: int) -> None:
        nonlocal model_evictions
        while sum(model.values()) + size > cap and model:
            model.popitem(last=False)
            model_evictions += 1

    def check_consistent() -> None:
        on_disk = files_under(cache.root)
        assert sum(on_disk.values()) <= cap
        assert cache.size == sum(on_disk.values())
        assert cache.count == len(model)
        assert set(on_disk) == {paths[key] for key in model}
        assert cache.size == sum(model.values())

    for step in range(300):
        # Now and then read an entry the model still holds: it becomes the most recently used.
        if model and rng.random() < 0.3:
            key = rng.choice(list(model))
            hit = cache.get(key)
            assert isinstance(hit, CachedFile)
            assert hit.size == model[key]
            model.move_to_end(key)

        # A fresh key most of the time, sometimes a new version of a key seen before.
        key = f"key-{step}" if rng.random() < 0.9 or not contents else rng.choice(sorted(contents))
        size = rng.randint(1 * KiB, 300 * KiB)
        data = rng.randbytes(size)
        temp = cache.new_temp()
        if rng.random() < 0.5:
            temp.reserve(size)  # the size is known up front, as with a Content-Length
            assert disk_bytes(cache) <= cache.size <= cap
        cut = rng.randint(0, size)
        for part in (data[:cut], data[cut:]):
            temp.write(part)
            assert disk_bytes(cache) <= cache.size <= cap
        model_make_room(size)

        if rng.random() < 0.1:
            temp.discard()  # an aborted download: its room was made, nothing is kept
            check_consistent()
            continue
        cached = temp.commit(key, expected_size=size)
        assert cached.size == size
        assert cached.path.read_bytes() == data
        model.pop(key, None)
        model[key] = size
        paths[key] = cached.path
        contents[key] = data
        check_consistent()

    assert model_evictions > 100, "the churn must actually evict"
    assert cache.evictions == model_evictions
    assert len(evicted_sizes) == model_evictions
    for key, data in contents.items():
        entry = cache.get(key)
        if key in model:
            assert isinstance(entry, CachedFile)
            assert entry.path.read_bytes() == data
        else:
            assert entry is None


@pytest.mark.parametrize(
    ("read", "evicted_first", "evicted_second"),
    [
        (None, "a", "b"),
        ("a", "b", "c"),
        ("b", "a", "c"),
        ("c", "a", "b"),
        ("d", "a", "b"),
    ],
)
def test_recently_read_entry_survives_eviction(
    tmp_path: Path, read: str | None, evicted_first: str, evicted_second: str
) -> None:
    cache = open_cache(tmp_path, 4 * 4 * KiB)
    for key in "abcd":
        put(cache, key, key.encode() * 4 * KiB)
    assert cache.size == cache.max_size
    if read is not None:
        assert isinstance(cache.get(read), CachedFile)

    put(cache, "e", b"e" * 4 * KiB)
    assert cache.get(evicted_first) is None
    put(cache, "f", b"f" * 4 * KiB)
    assert cache.get(evicted_second) is None

    survivors = set("abcdef") - {evicted_first, evicted_second}
    for key in sorted(survivors):
        entry = cache.get(key)
        assert isinstance(entry, CachedFile), key
        assert entry.path.read_bytes() == key.encode() * 4 * KiB
    if read is not None:
        assert read in survivors
    assert cache.evictions == 2
    assert disk_bytes(cache) == cache.size == cache.max_size


def test_a_pinned_file_is_never_evicted_and_the_cap_still_holds(tmp_path: Path) -> None:
    cache = open_cache(tmp_path, 100)
    unlinked: list[Path] = []
    cache.on_unlink = unlinked.append
    put(cache, "a", b"a" * 40)
    put(cache, "b", b"b" * 40)
    with cache.pinned("a"), cache.pinned("c"):  # "c" is pinned before it exists
        put(cache, "c", b"c" * 40)  # evicts b, the least recently used file nobody pins
        assert cache.get("b") is None and isinstance(cache.get("a"), CachedFile)
        with pytest.raises(CacheFull):
            put(cache, "d", b"d" * 40)  # a and c are pinned: no room, and the cap holds
        assert cache.size == disk_bytes(cache) == 80
    put(cache, "d", b"d" * 40)  # unpinned again: c goes (a was read more recently)
    assert cache.get("c") is None and isinstance(cache.get("a"), CachedFile)
    assert cache.size == disk_bytes(cache) == 80
    assert [p.exists() for p in unlinked] == [False, False], "handles are told about every removal"


def test_new_version_of_a_key_replaces_the_old_one(tmp_path: Path) -> None:
    cache = open_cache(tmp_path, 1 * MiB)
    put(cache, "k", b"old" * 1000)
    cached = put(cache, "k", b"new" * 10)
    entry = cache.get("k")
    assert isinstance(entry, CachedFile)
    assert entry.path == cached.path
    assert entry.path.read_bytes() == b"new" * 10
    assert cache.count == 1
    assert cache.size == disk_bytes(cache) == 30


def test_forget_and_clear_remove_files_and_accounting(tmp_path: Path) -> None:
    cache = open_cache(tmp_path, 1 * MiB, clock=FakeClock())
    a = put(cache, "a", b"a" * 100)
    put(cache, "b", b"b" * 200)
    cache.remember_miss("gone", "not_found", 60)

    assert cache.forget("a") is True
    assert not a.path.exists()
    assert cache.get("a") is None
    assert cache.forget("a") is False
    assert cache.forget("gone") is True
    assert cache.get("gone") is None
    assert cache.size == disk_bytes(cache) == 200

    cache.remember_miss("gone-too", "error", 60)
    assert cache.clear() == 2  # one file, one negative entry
    assert cache.get("b") is None
    assert cache.get("gone-too") is None
    assert_empty(cache)


# --------------------------------------------------------------------------------------------------
# The store: restarts


def test_restart_finds_committed_files_and_drops_leftover_temporaries(tmp_path: Path) -> None:
    root = tmp_path / "cache"
    rng = random.Random(7)
    first = open_cache(root, 1 * MiB, clock=FakeClock())
    files = {f"file-{n}": rng.randbytes(rng.randint(1, 100 * KiB)) for n in range(6)}
    committed = {key: put(first, key, data) for key, data in files.items()}
    first.remember_miss("missing", "not_found", 3600)
    # A download cut off by the crash, and a stray file from an older version of the proxy.
    unfinished = first.new_temp()
    unfinished.write(b"x" * 5000)
    (root / "tmp" / "stray").write_bytes(b"y" * 300)
    assert len(files_under(root / "tmp")) == 2

    second = open_cache(root, 1 * MiB, clock=FakeClock())
    assert files_under(root / "tmp") == {}
    assert second.count == len(files)
    assert second.size == sum(len(data) for data in files.values()) == disk_bytes(second)
    for key, data in files.items():
        entry = second.get(key)
        assert isinstance(entry, CachedFile)
        assert entry.path.read_bytes() == data
        assert entry.size == len(data)
        assert entry.etag == committed[key].etag  # the validators clients hold stay valid
    assert second.get("never-stored") is None
    assert second.get("missing") is None, "negative entries live in memory only"
    unfinished.discard()  # closes the old instance's descriptor; the file is already gone


@pytest.mark.parametrize(
    ("read_later", "survivors"),
    [
        (None, {"c", "d"}),
        ("a", {"a", "d"}),
        ("b", {"b", "d"}),
        ("d", {"c", "d"}),
    ],
)
def test_restart_with_a_smaller_cap_evicts_least_recently_used(
    tmp_path: Path, read_later: str | None, survivors: set[str]
) -> None:
    """The index is rebuilt oldest access first: the later of atime and mtime orders the files."""
    root = tmp_path / "cache"
    first = open_cache(root, 1 * MiB)
    paths: dict[str, Path] = {}
    for n, key in enumerate("abcd"):
        paths[key] = put(first, key, key.encode() * 10 * KiB).path
        os.utime(paths[key], (1_000_000 + n * 100, 1_000_000 + n * 100))
    if read_later is not None:
        os.utime(paths[read_later], (1_000_000 + 350, 1_000_000))  # read after d was written

    second = open_cache(root, 20 * KiB)
    assert {key for key in "abcd" if isinstance(second.get(key), CachedFile)} == survivors
    assert second.evictions == 2
    assert second.size == disk_bytes(second) == 20 * KiB
    assert set(files_under(root)) == {paths[key] for key in survivors}


# --------------------------------------------------------------------------------------------------
# The store: nothing partial, nothing larger than the cache


@pytest.mark.parametrize(("written", "expected"), [(100, 99), (100, 101), (0, 1), (64 * KiB, 0)])
def test_commit_with_the_wrong_size_keeps_nothing(tmp_path: Path, written: int, expected: int) -> None:
    cache = open_cache(tmp_path, 1 * MiB)
    temp = cache.new_temp()
    temp.reserve(max(written, expected))
    temp.write(b"z" * written)
    with pytest.raises(ValueError, match=f"got {written} bytes, expected {expected}"):
        temp.commit("k", expected_size=expected)
    assert cache.get("k") is None
    assert_empty(cache)


def test_failed_commit_leaves_the_previous_version_in_place(tmp_path: Path) -> None:
    cache = open_cache(tmp_path, 1 * MiB)
    put(cache, "k", b"complete")
    temp = cache.new_temp()
    temp.write(b"trunc")
    with pytest.raises(ValueError):
        temp.commit("k", expected_size=100)
    entry = cache.get("k")
    assert isinstance(entry, CachedFile)
    assert entry.path.read_bytes() == b"complete"
    assert cache.size == disk_bytes(cache) == len(b"complete")


def test_discard_removes_the_temporary_file_and_its_reservation(tmp_path: Path) -> None:
    cache = open_cache(tmp_path, 1 * MiB)
    temp = cache.new_temp()
    assert temp.path.parent == cache.tmp_dir
    temp.reserve(500 * KiB)
    temp.write(b"p" * 1000)
    assert temp.path.stat().st_size == 1000
    assert cache.size == 500 * KiB  # the declared size counts before it lands
    temp.discard()
    assert not temp.path.exists()
    assert_empty(cache)
    temp.discard()  # idempotent: nothing is released twice
    assert cache.size == 0
    with pytest.raises(ValueError, match="closed"):
        temp.write(b"more")


@pytest.mark.parametrize("how", ["reserve", "single write", "growing writes"])
def test_a_file_larger_than_the_cache_is_refused_without_evicting(tmp_path: Path, how: str) -> None:
    cap = 64 * KiB
    cache = open_cache(tmp_path, cap)
    put(cache, "resident", b"r" * 40 * KiB)
    temp = cache.new_temp()
    with pytest.raises(CacheFull):
        if how == "reserve":
            temp.reserve(cap + 1)
        elif how == "single write":
            temp.write(b"w" * (cap + 1))
        else:
            for _ in range(cap // KiB + 1):
                temp.write(b"w" * KiB)
    # The refused bytes never reach the disk; at most what fitted is there, within the cap.
    assert temp.written <= cap
    assert temp.path.stat().st_size == temp.written
    assert disk_bytes(cache) <= cache.size <= cap
    temp.discard()
    assert files_under(cache.tmp_dir) == {}
    if how != "growing writes":
        # Refused up front: the resident file was not evicted for a file that can never fit.
        assert isinstance(cache.get("resident"), CachedFile)
        assert cache.size == disk_bytes(cache) == 40 * KiB
    assert cache.size == disk_bytes(cache)


def test_a_file_of_exactly_the_cap_fits_and_evicts_everything_else(tmp_path: Path) -> None:
    cap = 64 * KiB
    cache = open_cache(tmp_path, cap)
    put(cache, "a", b"a" * 10)
    put(cache, "b", b"b" * 10)
    temp = cache.new_temp()
    temp.reserve(cap)
    temp.write(b"c" * cap)
    temp.commit("c", expected_size=cap)
    assert cache.get("a") is None
    assert cache.get("b") is None
    assert cache.count == 1
    assert cache.size == disk_bytes(cache) == cap


def test_concurrent_temporary_files_stay_within_the_cap(tmp_path: Path) -> None:
    """Downloads in progress cannot be evicted, so one that no longer fits is refused instead."""
    cap = 1 * MiB
    cache = open_cache(tmp_path, cap)
    first = cache.new_temp()
    second = cache.new_temp()
    try:
        first.reserve(600 * KiB)
        first.write(b"t" * 600 * KiB)
        with pytest.raises(CacheFull, match="held by downloads in progress"):
            second.reserve(600 * KiB)
        second.write(b"s" * 300 * KiB)  # what fits beside the first still goes in
        with pytest.raises(CacheFull):
            second.write(b"s" * 200 * KiB)
        assert disk_bytes(cache) <= cap
        assert cache.size <= cap
        first.discard()
        second.write(b"s" * 200 * KiB)  # room again once the first download is gone
        assert second.commit("k").size == 500 * KiB
        assert disk_bytes(cache) == cache.size == 500 * KiB
    finally:
        first.discard()
        second.discard()


# --------------------------------------------------------------------------------------------------
# The store: negative entries


@pytest.mark.parametrize(
    ("kind", "ttl", "detail"),
    [
        ("not_found", 300.0, "no source has it"),
        ("error", 5.0, "timeout: upstream"),
        ("error", 0.25, ""),
    ],
)
def test_negative_entry_is_served_until_it_expires(
    tmp_path: Path, kind: MissKind, ttl: float, detail: str
) -> None:
    clock = FakeClock()
    cache = open_cache(tmp_path, 1 * MiB, clock=clock)
    cache.remember_miss("k", kind, ttl, detail)
    assert cache.get("k") == Miss(kind, clock.now + ttl, detail)
    clock.now += ttl * 0.99
    assert isinstance(cache.get("k"), Miss)
    clock.now += ttl * 0.01
    assert cache.get("k") is None, "expired exactly at now + ttl"
    clock.now -= ttl  # the expired entry is gone for good, not merely hidden
    assert cache.get("k") is None
    assert cache.get("other") is None


@pytest.mark.parametrize("ttl", [0.0, -1.0])
def test_a_non_positive_ttl_remembers_nothing(tmp_path: Path, ttl: float) -> None:
    cache = open_cache(tmp_path, 1 * MiB, clock=FakeClock())
    cache.remember_miss("k", "error", ttl)
    assert cache.get("k") is None


def test_a_committed_file_wins_over_and_clears_a_negative_entry(tmp_path: Path) -> None:
    clock = FakeClock()
    cache = open_cache(tmp_path, 100, clock=clock)
    cache.remember_miss("k", "not_found", 60)
    put(cache, "k", b"k" * 50)
    assert isinstance(cache.get("k"), CachedFile)
    put(cache, "big", b"b" * 100)  # evicts k
    assert cache.get("k") is None, "the commit dropped the negative entry, eviction dropped the file"

    put(cache, "j", b"j" * 10)
    cache.remember_miss("j", "error", 60)
    assert isinstance(cache.get("j"), CachedFile)


def test_negative_entries_are_bounded_oldest_first(tmp_path: Path) -> None:
    cache = DiskCache(tmp_path, max_size=MiB, clock=FakeClock(), max_misses=3)
    cache.open()
    for key in "abcd":
        cache.remember_miss(key, "not_found", 60)
    cache.remember_miss("b", "error", 60)  # refreshed: now the newest
    cache.remember_miss("e", "not_found", 60)
    assert [key for key in "abcde" if isinstance(cache.get(key), Miss)] == ["b", "d", "e"]
    refreshed = cache.get("b")
    assert isinstance(refreshed, Miss)
    assert refreshed.kind == "error"


def test_negative_entries_use_the_real_clock_by_default(tmp_path: Path) -> None:
    cache = open_cache(tmp_path, 1 * MiB)
    cache.remember_miss("short", "error", 0.05)
    cache.remember_miss("long", "not_found", 60)
    assert isinstance(cache.get("short"), Miss)
    time.sleep(0.1)
    assert cache.get("short") is None
    assert isinstance(cache.get("long"), Miss)


# --------------------------------------------------------------------------------------------------
# Downloads


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock()


@pytest.fixture
def cache(tmp_path: Path, clock: FakeClock) -> DiskCache:
    return open_cache(tmp_path / "cache", 4 * MiB, clock=clock)


@pytest.fixture
async def downloads(cache: DiskCache) -> AsyncIterator[Downloads]:
    downloads = Downloads(cache, negative_ttl=NEGATIVE_TTL, error_ttl=ERROR_TTL)
    yield downloads
    await downloads.aclose()


async def read_all(download: Download, offset: int = 0, chunk_size: int = 1024 * 1024) -> bytes:
    async with asyncio.timeout(TIMEOUT):
        return b"".join([chunk async for chunk in download.read(offset, chunk_size)])


async def settle() -> None:
    """Let every runnable task (and executor round trip) go as far as it can."""
    for _ in range(20):
        await asyncio.sleep(0.001)


async def test_concurrent_fetches_share_one_producer(cache: DiskCache, downloads: Downloads) -> None:
    data = random.Random(1).randbytes(700 * KiB)
    calls = 0
    gate = asyncio.Event()

    async def producer(sink: Sink) -> None:
        nonlocal calls
        calls += 1
        await gate.wait()
        sink.start(len(data))
        for start in range(0, len(data), 64 * KiB):
            await sink.write(data[start : start + 64 * KiB])
            await asyncio.sleep(0.001)  # a slow upstream

    fetched = [downloads.fetch("k", producer) for _ in range(50)]
    assert all(download is fetched[0] for download in fetched)
    assert fetched[0].waiters == 49
    assert downloads.in_flight == 1

    async def reader(n: int) -> bytes:
        if n % 2:
            await fetched[n].finished()
        return await read_all(fetched[n])

    readers = [asyncio.create_task(reader(n)) for n in range(50)]
    await settle()
    assert not any(task.done() for task in readers)
    gate.set()
    async with asyncio.timeout(TIMEOUT):
        results = await asyncio.gather(*readers)

    assert calls == 1
    assert all(result == data for result in results)
    assert downloads.in_flight == 0
    entry = cache.get("k")
    assert isinstance(entry, CachedFile)
    assert entry.path.read_bytes() == data
    assert fetched[0].result == entry
    assert files_under(cache.tmp_dir) == {}
    assert cache.size == disk_bytes(cache) == len(data)


async def test_a_reader_gets_the_first_chunk_before_the_producer_finishes(
    cache: DiskCache, downloads: Downloads
) -> None:
    first, rest = b"F" * 1000, b"R" * (200 * KiB)
    first_written = asyncio.Event()
    release = asyncio.Event()

    async def producer(sink: Sink) -> None:
        sink.start(None)
        await sink.write(first)
        first_written.set()
        await release.wait()
        await sink.write(rest)

    download = downloads.fetch("k", producer)
    async with asyncio.timeout(TIMEOUT):
        assert await download.started() == Started(None)
        await first_written.wait()
        chunks = download.read()
        assert await anext(chunks) == first

    assert not download.done
    assert not release.is_set()
    assert cache.get("k") is None  # nothing is committed yet
    release.set()
    async with asyncio.timeout(TIMEOUT):
        remaining = b"".join([chunk async for chunk in chunks])
    assert first + remaining == first + rest
    assert download.done
    assert await read_all(download) == first + rest


@pytest.mark.parametrize(
    ("offset", "chunk_size"), [(0, 1000), (0, 7 * KiB), (1, 64 * KiB), (99_999, 3), (100_000, 10)]
)
async def test_read_from_an_offset_follows_the_download(
    downloads: Downloads, offset: int, chunk_size: int
) -> None:
    data = random.Random(offset).randbytes(100_000)
    gate = asyncio.Event()

    async def producer(sink: Sink) -> None:
        sink.start(len(data))
        await sink.write(data[:10])
        await gate.wait()
        await sink.write(data[10:])

    download = downloads.fetch("k", producer)
    reading = asyncio.create_task(read_all(download, offset, chunk_size))
    await settle()
    gate.set()
    assert await reading == data[offset:]


async def test_a_reader_that_goes_away_does_not_stop_the_download(
    cache: DiskCache, downloads: Downloads
) -> None:
    release = asyncio.Event()
    data = b"d" * (300 * KiB)

    async def producer(sink: Sink) -> None:
        sink.start(len(data))
        await sink.write(data[:1000])
        await release.wait()
        await sink.write(data[1000:])

    fds_before = len(os.listdir("/proc/self/fd"))
    download = downloads.fetch("k", producer)
    got_first = asyncio.Event()

    async def impatient_client() -> None:
        async for _chunk in download.read():
            got_first.set()

    client = asyncio.create_task(impatient_client())
    async with asyncio.timeout(TIMEOUT):
        await got_first.wait()
    client.cancel()
    with pytest.raises(asyncio.CancelledError):
        await client
    release.set()
    async with asyncio.timeout(TIMEOUT):
        cached = await download.finished()
    assert cached.path.read_bytes() == data
    assert isinstance(cache.get("k"), CachedFile)
    assert len(os.listdir("/proc/self/fd")) == fds_before, "the reader's descriptor was closed"


class Boom(Exception):
    pass


async def _raise_midway(sink: Sink) -> None:
    sink.start(10_000)
    await sink.write(b"x" * 5000)
    raise Boom("connection reset")


async def _error_midway(sink: Sink) -> None:
    sink.start(None)
    await sink.write(b"x" * 5000)
    sink.error("upstream 500")


async def _not_found_before_start(sink: Sink) -> None:
    sink.not_found("no source has it")


async def _not_found_midway(sink: Sink) -> None:
    sink.start(None)
    await sink.write(b"x" * 5000)
    sink.not_found("went away")


async def _raise_not_found(sink: Sink) -> None:
    raise DownloadFailed("not_found", "404 everywhere")


async def _nothing(sink: Sink) -> None:
    return None


async def _short_body(sink: Sink) -> None:
    sink.start(10_000)
    await sink.write(b"x" * 9_999)


async def _long_body(sink: Sink) -> None:
    sink.start(100)
    await sink.write(b"x" * 50)
    await sink.write(b"x" * 51)


async def _declared_too_large(sink: Sink) -> None:
    sink.start(4 * MiB + 1)


async def _grows_too_large(sink: Sink) -> None:
    sink.start(None)
    for _ in range(5):
        await sink.write(b"x" * MiB)


async def _started_twice(sink: Sink) -> None:
    sink.start(None)
    await sink.write(b"x" * 10)
    sink.start(None)


FAILURES: list[tuple[Callable[[Sink], Awaitable[None]], MissKind, str, bool]] = [
    # producer, kind, detail, whether the resident entry survives
    (_raise_midway, "error", "connection reset", True),
    (_error_midway, "error", "upstream 500", True),
    (_not_found_before_start, "not_found", "no source has it", True),
    (_not_found_midway, "not_found", "went away", True),
    (_raise_not_found, "not_found", "404 everywhere", True),
    (_nothing, "error", "nothing to write", True),
    (_short_body, "error", "got 9999 bytes, expected 10000", True),
    (_long_body, "error", "got 101 bytes, expected 100", True),
    (_started_twice, "error", "twice", True),
]


@pytest.mark.parametrize(
    ("producer", "kind", "detail", "resident_survives"),
    FAILURES,
    ids=[row[0].__name__.strip("_") for row in FAILURES],
)
async def test_a_failed_download_keeps_nothing_and_remembers_its_kind(
    cache: DiskCache,
    downloads: Downloads,
    clock: FakeClock,
    producer: Callable[[Sink], Awaitable[None]],
    kind: MissKind,
    detail: str,
    resident_survives: bool,
) -> None:
    put(cache, "resident", b"r" * 1000)  # an unrelated entry, left alone unless room had to be made
    gate = asyncio.Event()

    async def held(sink: Sink) -> None:
        await gate.wait()
        await producer(sink)

    download = downloads.fetch("k", held)

    async def via_started() -> None:
        await download.started()
        await download.finished()

    async def via_read() -> None:
        await read_all(download)

    waiting = [asyncio.create_task(coro()) for coro in (via_started, via_read, download.finished)]
    await settle()
    gate.set()
    async with asyncio.timeout(TIMEOUT):
        outcomes = await asyncio.gather(*waiting, return_exceptions=True)
    # A client arriving after the failure, before it looks at the cache.
    late = await asyncio.gather(read_all(download), download.finished(), return_exceptions=True)

    for outcome in [*outcomes, *late]:
        assert isinstance(outcome, DownloadFailed), outcome
        assert outcome.kind == kind
        assert detail in outcome.detail
    assert downloads.in_flight == 0
    assert download.done
    assert download.result is None

    miss = cache.get("k")
    ttl = NEGATIVE_TTL if kind == "not_found" else ERROR_TTL
    assert isinstance(miss, Miss)
    assert (miss.kind, miss.expires_at) == (kind, clock.now + ttl)
    assert detail in miss.detail
    clock.now += ttl
    assert cache.get("k") is None

    assert files_under(cache.tmp_dir) == {}
    assert isinstance(cache.get("resident"), CachedFile) is resident_survives
    assert cache.count == int(resident_survives)
    assert cache.size == disk_bytes(cache) == 1000 * resident_survives


@pytest.mark.parametrize("producer", [_declared_too_large, _grows_too_large], ids=["declared", "grows"])
async def test_a_file_the_cache_has_no_room_for_is_passed_through_and_nothing_is_remembered(
    cache: DiskCache, downloads: Downloads, producer: Callable[[Sink], Awaitable[None]]
) -> None:
    put(cache, "resident", b"r" * 1000)

    async def body(sink: Sink) -> None:
        await producer(sink)
        for _ in range(2):
            await sink.write(b"y" * 1000)

    download = downloads.fetch("k", body)
    data = await read_all(download)  # a reader that keeps up gets every byte, from memory
    assert data.endswith(b"y" * 2000) and download.uncached
    with pytest.raises(DownloadFailed) as failed:
        await download.finished()
    assert failed.value.kind == "space"
    assert cache.get("k") is None, "a full cache is not an upstream failure: nothing remembered"
    assert files_under(cache.tmp_dir) == {}
    assert isinstance(cache.get("resident"), CachedFile), "no unannounced body flushes the cache"
    assert cache.size == disk_bytes(cache) == 1000


async def test_after_a_failure_the_next_fetch_runs_a_new_producer(
    cache: DiskCache, downloads: Downloads
) -> None:
    attempts: list[str] = []

    async def flaky(sink: Sink) -> None:
        attempts.append("try")
        if len(attempts) == 1:
            raise Boom("first attempt fails")
        sink.start(4)
        await sink.write(b"good")

    with pytest.raises(DownloadFailed):
        await read_all(downloads.fetch("k", flaky))
    assert isinstance(cache.get("k"), Miss)
    assert await read_all(downloads.fetch("k", flaky)) == b"good"
    assert attempts == ["try", "try"]
    entry = cache.get("k")
    assert isinstance(entry, CachedFile), "the commit replaced the negative entry"


async def test_closing_cancels_running_downloads_without_caching_anything(
    cache: DiskCache, downloads: Downloads
) -> None:
    forever = asyncio.Event()

    async def stuck(sink: Sink) -> None:
        sink.start(None)
        await sink.write(b"x" * 1000)
        await forever.wait()

    download = downloads.fetch("k", stuck)
    reading = asyncio.create_task(read_all(download))
    await settle()
    await downloads.aclose()
    with pytest.raises(DownloadFailed) as failed:
        await reading
    assert failed.value.kind == "error"
    assert failed.value.detail == "cancelled"
    assert cache.get("k") is None, "a cancellation is not remembered as an upstream error"
    assert downloads.in_flight == 0
    assert_empty(cache)


def _is_pdb(head: bytes) -> bool:
    return head.startswith(PDB_MAGIC)


PDB_BODY = PDB_MAGIC + bytes(range(256)) * 40


@pytest.mark.parametrize(
    ("body", "chunk", "cached"),
    [
        (PDB_BODY, len(PDB_BODY), True),
        (PDB_BODY, 5, True),
        (HTML * 50, len(HTML) * 50, False),
        (HTML * 50, 1, False),
        (HTML * 50, 16, False),
        (HTML[:40], 40, False),  # shorter than the 64-byte head the check waits for
        (b"", 1, False),
    ],
    ids=[
        "pdb",
        "pdb-small-chunks",
        "html",
        "html-1-byte-chunks",
        "html-16-byte-chunks",
        "short-html",
        "empty",
    ],
)
async def test_verification_of_the_head_decides_what_is_cached(
    cache: DiskCache, downloads: Downloads, body: bytes, chunk: int, cached: bool
) -> None:
    seen_heads: list[bytes] = []

    def verify(head: bytes) -> bool:
        seen_heads.append(head)
        return _is_pdb(head)

    async def producer(sink: Sink) -> None:
        sink.start(len(body), verify=verify)
        for start in range(0, len(body), chunk):
            await sink.write(body[start : start + chunk])

    download = downloads.fetch("k", producer)
    if cached:
        assert await read_all(download) == body
        entry = cache.get("k")
        assert isinstance(entry, CachedFile)
        assert entry.path.read_bytes() == body
        assert seen_heads == [body[:64]]
        return
    with pytest.raises(DownloadFailed) as failed:
        await read_all(download)
    assert failed.value.kind == "error"
    assert "unexpected content" in failed.value.detail
    assert len(seen_heads) == 1
    miss = cache.get("k")
    assert isinstance(miss, Miss)
    assert miss.kind == "error"
    assert files_under(cache.tmp_dir) == {}
    assert cache.count == 0
    assert cache.size == disk_bytes(cache) == 0


@pytest.mark.parametrize("size", [13_000, 3 * READ_ALONG_MEMORY + 5], ids=["in-memory", "read-back"])
async def test_a_reader_arriving_while_the_file_is_committed_gets_it(
    tmp_path: Path, clock: FakeClock, monkeypatch: pytest.MonkeyPatch, size: int
) -> None:
    """The rename into the cache happens in an executor thread; ``result`` is set later on the loop.

    A reader opening the file in between must neither fail nor see a wrong file. The commit thread
    is held right after the rename until such a reader has tried to open the file. A large file's
    first bytes are no longer in memory by then: the reader takes them from the cached file.
    """
    renamed = threading.Event()
    reader_tried = threading.Event()

    class SlowPublishing(DiskCache):
        def _commit(self, key: str, temp: TempFile) -> CachedFile:
            cached = super()._commit(key, temp)
            renamed.set()
            reader_tried.wait(TIMEOUT)
            return cached

    original_open = Download._open_for_reading

    def observed_open(self: Download) -> int:
        try:
            return original_open(self)
        finally:
            if renamed.is_set():
                reader_tried.set()

    monkeypatch.setattr(Download, "_open_for_reading", observed_open)
    cache = SlowPublishing(tmp_path, max_size=4 * READ_ALONG_MEMORY, clock=clock)
    cache.open()
    downloads = Downloads(cache, negative_ttl=NEGATIVE_TTL, error_ttl=ERROR_TTL)
    data = (b"complete file" * (size // 13 + 1))[:size]

    async def producer(sink: Sink) -> None:
        sink.start(len(data))
        await sink.write(data)

    try:
        download = downloads.fetch("k", producer)
        loop = asyncio.get_running_loop()
        async with asyncio.timeout(TIMEOUT):
            await download.started()
            await loop.run_in_executor(None, renamed.wait)
        assert download.result is None  # the window: renamed, not yet published
        assert await read_all(download) == data
        assert reader_tried.is_set()
    finally:
        reader_tried.set()
        await downloads.aclose()
