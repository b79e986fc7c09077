"""The ``--workers`` cache protocol between the owner (``DiskCache(shared=True)``) and a follower
(``FollowerCache``) on one directory: a file a follower holds is not evicted, a file the owner
removed or replaced is never served, and the owner's LRU follows the hits followers report."""

from __future__ import annotations

import fcntl
import os
from pathlib import Path

import pytest

from symbol_proxy.cache import follower as follower_module
from symbol_proxy.cache.follower import FollowerCache
from symbol_proxy.cache.store import CachedFile, DiskCache, Miss


def owner_with(root: Path, files: dict[str, bytes], max_size: int) -> DiskCache:
    cache = DiskCache(root, max_size=max_size, shared=True)
    cache.open()
    for key, data in files.items():
        temp = cache.new_temp()
        temp.write(data)
        temp.commit(key)
    return cache


def on_disk(root: Path) -> int:
    return sum(p.stat().st_size for p in (root / "objects").rglob("*") if p.is_file())


def test_a_file_a_follower_holds_is_passed_over_by_eviction_and_evicted_once_let_go(tmp_path: Path) -> None:
    owner = owner_with(tmp_path, {"a": b"A" * 400, "b": b"B" * 400}, max_size=1000)
    follower = FollowerCache(tmp_path, max_size=1000)
    entry = follower.get("a")
    assert isinstance(entry, CachedFile)
    handle = follower.open_shared(entry)
    assert handle is not None

    temp = owner.new_temp()
    temp.write(b"C" * 400)  # needs room: "a" is least recently used, but a follower holds it
    temp.commit("c")
    assert isinstance(follower.get("a"), CachedFile) and follower.get("b") is None
    assert handle.read() == b"A" * 400
    assert on_disk(tmp_path) <= 1000

    handle.close()
    temp = owner.new_temp()
    temp.write(b"D" * 400)
    temp.commit("d")
    assert follower.get("a") is None and isinstance(follower.get("c"), CachedFile)
    assert owner.get("a") is None
    assert on_disk(tmp_path) <= 1000


def test_a_follower_never_opens_a_file_the_owner_removed_or_replaced(tmp_path: Path) -> None:
    owner = owner_with(tmp_path, {"a": b"old bytes"}, max_size=10_000)
    follower = FollowerCache(tmp_path, max_size=10_000)
    seen = follower.get("a")
    assert isinstance(seen, CachedFile)

    owner.forget("a")  # between the follower's lookup and its open
    assert follower.open_shared(seen) is None
    assert follower.read_small(seen) is None
    assert follower.get("a") is None

    temp = owner.new_temp()
    temp.write(b"new bytes, longer")
    temp.commit("a")
    assert follower.open_shared(seen) is None  # the same path is another file now
    assert follower.read_small(seen) is None
    fresh = follower.get("a")
    assert isinstance(fresh, CachedFile)
    handle = follower.open_shared(fresh)
    assert handle is not None and handle.read() == b"new bytes, longer"
    handle.close()
    assert follower.read_small(fresh) == b"new bytes, longer"


@pytest.mark.parametrize(
    ("replacement", "same_time"),
    [
        # The handle is of an unlinked file, whose size and time still match the lookup.
        (b"second, another file", False),
        # Another file of the same size, given the same time: only the inode tells them apart.
        (b"other", True),
    ],
    ids=["another-file", "same-size-and-time"],
)
def test_a_file_replaced_between_a_followers_open_and_its_lock_is_not_served(
    replacement: bytes, same_time: bool, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    owner = owner_with(tmp_path, {"a": b"first"}, max_size=10_000)
    follower = FollowerCache(tmp_path, max_size=10_000)
    seen = follower.get("a")
    assert isinstance(seen, CachedFile)
    real_flock = fcntl.flock

    def replaced_first(fd: int, operation: int) -> None:
        # The owner evicts the file and commits a new one after the follower's open.
        owner.forget("a")
        temp = owner.new_temp()
        temp.write(replacement)
        committed = temp.commit("a")
        if same_time:
            os.utime(committed.path, ns=(seen.mtime_ns, seen.mtime_ns))
        real_flock(fd, operation)

    monkeypatch.setattr(follower_module.fcntl, "flock", replaced_first)
    assert follower.open_shared(seen) is None


def test_hits_reported_by_a_follower_protect_a_file_from_eviction(tmp_path: Path) -> None:
    files = {"old": b"1" * 300, "newer": b"2" * 300, "newest": b"3" * 300}
    owner = owner_with(tmp_path, files, max_size=1000)
    follower = FollowerCache(tmp_path, max_size=1000)
    assert isinstance(follower.get("old"), CachedFile)
    assert isinstance(follower.get("old"), CachedFile)
    touched = follower.take_touches()
    assert touched == ["old"]
    assert follower.take_touches() == []
    assert owner.touch([*touched, "never-cached"]) == 1

    temp = owner.new_temp()
    temp.write(b"4" * 300)
    temp.commit("fourth")
    assert isinstance(follower.get("old"), CachedFile)
    assert follower.get("newer") is None


def test_a_follower_writes_nothing_and_remembers_only_misses_until_a_reload(tmp_path: Path) -> None:
    owner_with(tmp_path, {"a": b"x"}, max_size=100)
    follower = FollowerCache(tmp_path, max_size=100)
    follower.open()
    assert (tmp_path / "tmp").is_dir() and isinstance(follower.get("a"), CachedFile)
    follower.remember_miss("b", "not_found", ttl=60)
    assert isinstance(follower.get("b"), Miss) and follower.count == 0
    assert follower.forget_misses() == 1 and follower.get("b") is None
    with pytest.raises(RuntimeError, match="never downloads"):
        follower.new_temp()


def test_a_follower_sees_the_owners_file_as_the_owner_does(tmp_path: Path) -> None:
    owner = owner_with(tmp_path, {"a": b"the bytes of a"}, max_size=10_000)
    follower = FollowerCache(tmp_path, max_size=10_000)
    seen = follower.get("a")
    assert seen == owner.get("a")  # key, path, size and time: the same entry
    assert isinstance(seen, CachedFile) and seen.key == "a"
    assert follower.read_small(seen) == b"the bytes of a"


def test_the_hits_a_follower_remembers_between_reports_are_bounded(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    owner_with(tmp_path, {"a": b"1", "b": b"2", "c": b"3"}, max_size=100)
    follower = FollowerCache(tmp_path, max_size=100)
    monkeypatch.setattr(follower_module, "MAX_TOUCHES", 2)
    for key in "abca":
        assert isinstance(follower.get(key), CachedFile)
    assert follower.take_touches() == ["a", "b"]  # c came after the bound was reached
    assert isinstance(follower.get("c"), CachedFile)
    assert follower.take_touches() == ["c"]


def test_a_follower_refuses_to_download_with_a_clear_message(tmp_path: Path) -> None:
    follower = FollowerCache(tmp_path, max_size=100)
    with pytest.raises(RuntimeError, match=r"^a --workers follower never downloads; the owner does$"):
        follower.new_temp()
