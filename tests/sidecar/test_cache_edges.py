"""Edges of the disk cache (``cache.store``) that the churn and download tests pass by: the exact
limits (a ttl of zero, an unannounced download of exactly half the cap), the accounting of a
reservation larger than what was written, what the ``on_evict``/``on_unlink`` hooks are told,
a file that vanished from the disk behind the cache's back, and eviction in ``shared`` mode (the
owner of a ``--workers`` cache) with files other processes hold under a shared ``flock``.

Each test was written against a surviving mutant of mutation testing (issue 14) and checked to fail
with it; everything runs on real files under ``tmp_path`` with an injected clock.
"""

from __future__ import annotations

import fcntl
import os
import re
import stat
from collections.abc import Iterator
from pathlib import Path

import pytest

from symbol_proxy.cache.store import CachedFile, CacheFull, DiskCache, Miss, TempFile

NOW = 1_000_000.0


def make_cache(root: Path, max_size: int, *, shared: bool = False) -> DiskCache:
    cache = DiskCache(root, max_size=max_size, clock=lambda: NOW, shared=shared)
    cache.open()
    return cache


def put(cache: DiskCache, key: str, data: bytes) -> CachedFile:
    temp = cache.new_temp()
    temp.reserve(len(data))
    temp.write(data)
    return temp.commit(key)


def object_bytes(cache: DiskCache) -> int:
    return sum(p.stat().st_size for p in cache.objects_dir.rglob("*") if p.is_file())


def cached(cache: DiskCache, *keys: str) -> list[str]:
    """Which of ``keys`` the cache has (without ``get``, which would reorder the LRU)."""
    return [key for key in keys if cache.touch([key]) == 1]


# --------------------------------------------------------------------------------------------------
# Negative entries


def test_a_miss_without_detail_has_an_empty_detail(tmp_path: Path) -> None:
    cache = make_cache(tmp_path, 1000)
    cache.remember_miss("k", "not_found", 60)
    assert cache.get("k") == Miss("not_found", NOW + 60, "")


def test_a_zero_ttl_stores_no_miss_at_all(tmp_path: Path) -> None:
    cache = make_cache(tmp_path, 1000)
    cache.remember_miss("zero", "error", 0)
    cache.remember_miss("kept", "error", 5)
    assert cache.forget_misses() == 1  # only "kept": a zero ttl is not even stored, expired


# --------------------------------------------------------------------------------------------------
# Reservations and temporary files


def test_a_reservation_larger_than_the_body_is_given_back_on_commit(tmp_path: Path) -> None:
    cache = make_cache(tmp_path, 1000)
    temp = cache.new_temp()
    temp.reserve(600)
    temp.write(b"x" * 250)
    assert cache.size == 600
    entry = temp.commit("k")  # no expected size: the body simply ended early
    assert entry.size == 250
    assert cache.size == object_bytes(cache) == 250
    # The 350 bytes given back are usable at once: 750 more fit beside the 250 committed.
    other = cache.new_temp()
    other.reserve(750)
    other.write(b"y" * 750)
    other.commit("other")
    assert cache.size == object_bytes(cache) == 1000
    assert cached(cache, "k", "other") == ["k", "other"]


def test_discarding_a_committed_file_changes_nothing(tmp_path: Path) -> None:
    cache = make_cache(tmp_path, 1000)
    temp = cache.new_temp()
    temp.reserve(100)
    temp.write(b"z" * 100)
    entry = temp.commit("k")
    temp.discard()  # as a ``finally`` does after a successful commit
    assert cache.size == object_bytes(cache) == 100
    assert entry.path.read_bytes() == b"z" * 100
    other = cache.new_temp()
    other.write(b"w" * 900)  # exactly the room left: nothing was released twice
    other.commit("other")
    assert cached(cache, "k", "other") == ["k", "other"]
    assert cache.size == object_bytes(cache) == 1000


def test_a_discarded_file_holds_no_reservation(tmp_path: Path) -> None:
    cache = make_cache(tmp_path, 1000)
    temp = cache.new_temp()
    temp.reserve(400)
    temp.write(b"d" * 10)
    temp.discard()
    assert temp.reserved == 0
    assert cache.size == 0
    temp.discard()
    assert cache.size == 0


def test_a_temporary_file_is_private_to_this_process(tmp_path: Path) -> None:
    cache = make_cache(tmp_path, 1000)
    plain, packed, direct = cache.new_temp(), cache.new_temp("packed-"), TempFile(cache)
    try:
        assert re.fullmatch("[0-9a-f]{32}", plain.path.name)
        assert re.fullmatch("packed-[0-9a-f]{32}", packed.path.name)
        assert re.fullmatch("[0-9a-f]{32}", direct.path.name)
        assert stat.S_IMODE(plain.path.stat().st_mode) == 0o600
    finally:
        for temp in (plain, packed, direct):
            temp.discard()


def test_a_reservation_that_grows_adds_only_the_difference(tmp_path: Path) -> None:
    cache = make_cache(tmp_path, 1000)
    temp = cache.new_temp()
    temp.reserve(100)
    temp.reserve(300)  # a larger size announced later (a retry with another Content-Length)
    assert cache.size == 300
    temp.reserve(200)  # a smaller one keeps what is held
    assert cache.size == 300
    with pytest.raises(CacheFull, match=r"^1001 bytes do not fit a cache of 1000$"):
        temp.reserve(1001)
    temp.discard()
    assert cache.size == 0


def test_an_announced_body_may_evict_beyond_half_the_cap_when_it_outgrows_its_reservation(
    tmp_path: Path,
) -> None:
    cache = make_cache(tmp_path, 1000)
    put(cache, "a", b"a" * 400)
    put(cache, "b", b"b" * 400)
    temp = cache.new_temp()
    temp.reserve(100)
    temp.write(b"t" * 700)  # announced, so it may still evict (a and b) to grow past its size
    temp.commit("t")
    assert cached(cache, "a", "b", "t") == ["t"]
    assert cache.size == object_bytes(cache) == 700


def test_short_writes_are_completed(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """``write(2)`` may write less than asked (a signal, a nearly full disk): the rest follows."""
    cache = make_cache(tmp_path, 1000)
    real_write = os.write

    def at_most_7(fd: int, data: bytes | memoryview) -> int:
        return real_write(fd, bytes(data[:7]))

    temp = cache.new_temp()
    monkeypatch.setattr(os, "write", at_most_7)
    temp.write(bytes(range(100)))
    monkeypatch.undo()
    entry = temp.commit("k", expected_size=100)
    assert entry.path.read_bytes() == bytes(range(100))


def test_writing_to_a_closed_file_says_so(tmp_path: Path) -> None:
    cache = make_cache(tmp_path, 1000)
    temp = cache.new_temp()
    temp.discard()
    with pytest.raises(ValueError, match=r"^temporary file is closed$"):
        temp.write(b"late")


def test_a_body_growing_beyond_the_cap_names_the_cap(tmp_path: Path) -> None:
    cache = make_cache(tmp_path, 1000)
    temp = cache.new_temp()
    temp.write(b"a" * 600)
    with pytest.raises(CacheFull, match=r"^file grows beyond the cache size of 1000$"):
        temp.write(b"a" * 401)
    temp.discard()


def test_an_unannounced_body_of_exactly_half_the_cap_may_still_evict(tmp_path: Path) -> None:
    cache = make_cache(tmp_path, 1000)
    put(cache, "old", b"o" * 400)
    put(cache, "new", b"n" * 400)
    temp = cache.new_temp()
    temp.write(b"h" * 500)  # 1000 // 2: still allowed to make room, so "old" goes
    temp.commit("half")
    assert cached(cache, "old", "new", "half") == ["new", "half"]
    assert cache.size == object_bytes(cache) == 900

    temp = cache.new_temp()
    with pytest.raises(CacheFull):
        temp.write(b"h" * 501)  # beyond half: it must fit in free space (100 bytes), evicts nothing
    temp.discard()
    assert cached(cache, "new", "half") == ["new", "half"]


# --------------------------------------------------------------------------------------------------
# Hooks and files gone from the disk


def test_a_single_byte_over_the_cap_evicts(tmp_path: Path) -> None:
    cache = make_cache(tmp_path, 1000)
    put(cache, "a", b"a" * 500)
    put(cache, "b", b"b" * 500)
    put(cache, "c", b"c")
    assert cached(cache, "a", "b", "c") == ["b", "c"]
    assert cache.size == object_bytes(cache) == 501
    put(cache, "d", b"d" * 501)  # 2 over: b (500) is enough
    assert cached(cache, "b", "c", "d") == ["c", "d"]
    put(cache, "e", b"e" * 500)  # 2 over: c (1) leaves one byte missing, so d goes as well
    assert cached(cache, "c", "d", "e") == ["e"]
    assert cache.size == object_bytes(cache) == 500


def test_on_evict_is_told_the_size_of_each_evicted_file(tmp_path: Path) -> None:
    cache = make_cache(tmp_path, 1000)
    sizes: list[int] = []
    cache.on_evict = sizes.append
    put(cache, "a", b"a" * 300)
    put(cache, "b", b"b" * 200)
    put(cache, "c", b"c" * 400)
    put(cache, "d", b"d" * 500)  # evicts a (300) and b (200)
    assert sizes == [300, 200]
    assert cache.evictions == 2


def test_on_unlink_is_told_the_path_of_a_replaced_file(tmp_path: Path) -> None:
    cache = make_cache(tmp_path, 1000)
    first = put(cache, "k", b"first")
    unlinked: list[Path] = []
    cache.on_unlink = unlinked.append
    put(cache, "k", b"second version")
    assert unlinked == [first.path]


def test_a_file_deleted_behind_the_caches_back_is_forgotten_and_evicted_quietly(tmp_path: Path) -> None:
    cache = make_cache(tmp_path, 1000)
    gone = put(cache, "gone", b"g" * 300)
    gone.path.unlink()
    assert cache.forget("gone") is True
    assert cache.size == 0

    lost = put(cache, "lost", b"l" * 600)
    lost.path.unlink()
    put(cache, "big", b"b" * 600)  # evicts "lost", whose file is already gone
    assert cached(cache, "lost", "big") == ["big"]
    assert cache.size == object_bytes(cache) == 600


# --------------------------------------------------------------------------------------------------
# touch (hits other workers served)


def test_touch_counts_the_cached_keys_and_moves_only_them_to_the_end(tmp_path: Path) -> None:
    cache = make_cache(tmp_path, 1000)
    for key in "abcd":
        put(cache, key, key.encode() * 250)
    assert cache.touch([]) == 0
    assert cache.touch(["a", "x", "b", "y"]) == 2
    assert cache.touch(["c", "a", "b", "d"]) == 4
    put(cache, "e", b"e" * 500)  # LRU order now c, a, b, d: c and a go
    assert cached(cache, "a", "b", "c", "d", "e") == ["b", "d", "e"]


# --------------------------------------------------------------------------------------------------
# Eviction in shared mode (the owner of a ``--workers`` cache)


@pytest.fixture
def held() -> Iterator[list[int]]:
    """Descriptors holding a shared ``flock``, as a follower sending a file does; closed after."""
    fds: list[int] = []
    yield fds
    for fd in fds:
        os.close(fd)


def hold(fds: list[int], entry: CachedFile) -> None:
    fd = os.open(entry.path, os.O_RDONLY)
    fcntl.flock(fd, fcntl.LOCK_SH | fcntl.LOCK_NB)
    fds.append(fd)


def test_shared_eviction_takes_lru_files_until_enough_room_and_no_more(tmp_path: Path) -> None:
    cache = make_cache(tmp_path, 1000, shared=True)
    sizes: list[int] = []
    cache.on_evict = sizes.append
    for key, size in (("a", 100), ("b", 200), ("c", 300), ("d", 400)):
        put(cache, key, key.encode() * size)
    put(cache, "e", b"e" * 300)  # exactly a (100) and b (200) make the room: c stays
    assert sizes == [100, 200]
    assert cache.size == object_bytes(cache) == 1000
    put(cache, "f", b"f" * 301)  # c (300) leaves one byte missing: d goes too
    assert sizes == [100, 200, 300, 400]
    assert cached(cache, "a", "b", "c", "d", "e", "f") == ["e", "f"]
    assert cache.size == object_bytes(cache) == 601
    assert cache.evictions == 4


def test_shared_eviction_passes_over_pinned_and_held_files(tmp_path: Path, held: list[int]) -> None:
    cache = make_cache(tmp_path, 1000, shared=True)
    entries = {key: put(cache, key, key.encode() * 250) for key in "abcd"}
    hold(held, entries["a"])  # another worker sends a
    with cache.pinned("b"):  # a response of this worker sends b
        put(cache, "e", b"e" * 250)  # c is the least recently used file nobody holds
        assert cached(cache, "a", "b", "c", "d", "e") == ["a", "b", "d", "e"]
        assert os.read(held[0], 4) == b"aaaa"
    assert cache.size == object_bytes(cache) == 1000


def test_shared_eviction_refuses_when_every_file_is_held(tmp_path: Path, held: list[int]) -> None:
    cache = make_cache(tmp_path, 1000, shared=True)
    for key in "ab":
        hold(held, put(cache, key, key.encode() * 500))
    temp = cache.new_temp()
    with pytest.raises(CacheFull):
        temp.write(b"c" * 100)
    temp.discard()
    assert cached(cache, "a", "b") == ["a", "b"]
    assert cache.size == object_bytes(cache) == 1000


def test_shared_eviction_drops_a_file_already_gone_from_the_disk(tmp_path: Path) -> None:
    cache = make_cache(tmp_path, 1000, shared=True)
    sizes: list[int] = []
    cache.on_evict = sizes.append
    gone = put(cache, "gone", b"g" * 400)
    put(cache, "kept", b"k" * 400)
    gone.path.unlink()
    descriptors = set(os.listdir("/proc/self/fd"))
    put(cache, "new", b"n" * 400)  # 200 over: "gone" leaves the index, though it had no file
    assert set(os.listdir("/proc/self/fd")) == descriptors, "no descriptor was closed or leaked"
    assert sizes == [400]
    assert cached(cache, "gone", "kept", "new") == ["kept", "new"]
    assert cache.size == object_bytes(cache) == 800


def test_shared_eviction_releases_the_locks_it_took(tmp_path: Path) -> None:
    cache = make_cache(tmp_path, 1000, shared=True)
    before = set(os.listdir("/proc/self/fd"))
    for n in range(6):
        put(cache, f"k{n}", b"x" * 400)  # each commit past the second evicts one file
    assert cache.evictions == 4
    assert set(os.listdir("/proc/self/fd")) == before


def test_files_live_under_objects_sharded_by_digest(tmp_path: Path) -> None:
    """The layout a restart (and a follower, and a cache of an earlier version) finds them in."""
    cache = make_cache(tmp_path, 1000)
    entry = put(cache, "k", b"bytes")
    parts = entry.path.relative_to(tmp_path).parts
    assert parts[0] == "objects"
    assert [len(part) for part in parts[1:]] == [2, 2, 60]


def test_an_unshared_cache_ignores_other_processes_locks(tmp_path: Path, held: list[int]) -> None:
    """A single process's cache (the default) has no followers: it evicts by LRU alone."""
    cache = DiskCache(tmp_path, max_size=1000)
    cache.open()
    hold(held, put(cache, "a", b"a" * 500))
    put(cache, "b", b"b" * 500)
    put(cache, "c", b"c" * 500)
    assert cached(cache, "a", "b", "c") == ["b", "c"]


def test_a_restart_indexes_every_file_past_stray_entries(tmp_path: Path) -> None:
    """Entries the cache never writes (a directory, a name of the wrong length, a directory left in
    ``tmp/``) are passed over, and every cache file around them is still found."""
    first = make_cache(tmp_path, 100_000)
    data = {f"k{n}": bytes([65 + n]) * (100 + n) for n in range(6)}
    entries = {key: put(first, key, value) for key, value in data.items()}
    for n, entry in enumerate(entries.values()):
        for m in range(20):  # beside every file, so one comes before most files in any order
            (entry.path.parent / f"stray-dir-{n}-{m}").mkdir()
            (entry.path.parent / f"short-{n}-{m}").write_bytes(b"not a cache file")
    (tmp_path / "tmp" / "a-leftover-directory").mkdir()

    again = make_cache(tmp_path, 100_000)
    assert again.count == len(data)
    assert again.size == sum(len(value) for value in data.values())
    for key, value in data.items():
        found = again.get(key)
        assert isinstance(found, CachedFile) and found.path.read_bytes() == value
