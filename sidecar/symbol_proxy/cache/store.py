"""The disk cache: files addressed by the hash of their key, a hard size cap, LRU eviction.

The index lives in memory (key hash → size, mtime), so a lookup costs no system call; it is rebuilt
from the directory at start, oldest access first. Every byte on disk is accounted, including the
temporary files of downloads still running, so the cap holds at every moment: a write that would
cross it first evicts least recently used files. Nothing but file bytes is stored: no keys, no
upstream URLs, no credentials. Negative entries ("not found", "upstream failed") live in memory
with their own TTLs and a bound on their number.
"""

from __future__ import annotations

import collections
import contextlib
import dataclasses
import hashlib
import os
import threading
import time
import uuid
from collections.abc import Callable
from pathlib import Path
from typing import Literal

__all__ = ["CacheFull", "CachedFile", "DiskCache", "Miss", "TempFile"]

MissKind = Literal["not_found", "error"]


@dataclasses.dataclass(frozen=True, slots=True)
class CachedFile:
    key: str
    path: Path
    size: int
    mtime_ns: int

    @property
    def etag(self) -> str:
        return f'"{self.mtime_ns:x}-{self.size:x}"'


@dataclasses.dataclass(frozen=True, slots=True)
class Miss:
    kind: MissKind
    expires_at: float
    detail: str = ""


class CacheFull(Exception):
    """A single file is larger than the whole cache."""


def _digest(key: str) -> str:
    return hashlib.sha256(key.encode()).hexdigest()


class DiskCache:
    def __init__(
        self,
        root: Path,
        *,
        max_size: int,
        clock: Callable[[], float] = time.time,
        max_misses: int = 100_000,
    ) -> None:
        self.root = Path(root)
        self.max_size = max_size
        self._clock = clock
        self._max_misses = max_misses
        self._lock = threading.Lock()
        self._entries: collections.OrderedDict[str, tuple[int, int]] = collections.OrderedDict()
        self._misses: collections.OrderedDict[str, Miss] = collections.OrderedDict()
        self._committed = 0
        self._reserved = 0
        self.evictions = 0
        self.on_evict: Callable[[int], None] | None = None

    @property
    def objects_dir(self) -> Path:
        return self.root / "objects"

    @property
    def tmp_dir(self) -> Path:
        return self.root / "tmp"

    def _path(self, digest: str) -> Path:
        return self.objects_dir / digest[:2] / digest[2:4] / digest[4:]

    def open(self) -> None:
        """Create the directories, drop leftovers of earlier runs, index what is on disk."""
        self.objects_dir.mkdir(parents=True, exist_ok=True)
        self.tmp_dir.mkdir(parents=True, exist_ok=True)
        for leftover in self.tmp_dir.iterdir():
            with contextlib.suppress(OSError):
                leftover.unlink()
        found: list[tuple[float, str, int, int]] = []
        for path in self.objects_dir.glob("*/*/*"):
            if not path.is_file():
                continue
            digest = path.parent.parent.name + path.parent.name + path.name
            if len(digest) != 64:
                continue
            st = path.stat()
            found.append((max(st.st_atime, st.st_mtime), digest, st.st_size, st.st_mtime_ns))
        found.sort()
        with self._lock:
            self._entries.clear()
            self._committed = 0
            for _, digest, size, mtime_ns in found:
                self._entries[digest] = (size, mtime_ns)
                self._committed += size
            self._evict_locked(0)

    # -- lookups ------------------------------------------------------------------------------------

    def get(self, key: str) -> CachedFile | Miss | None:
        digest = _digest(key)
        with self._lock:
            entry = self._entries.get(digest)
            if entry is not None:
                self._entries.move_to_end(digest)
                return CachedFile(key, self._path(digest), entry[0], entry[1])
            miss = self._misses.get(key)
            if miss is None:
                return None
            if miss.expires_at <= self._clock():
                del self._misses[key]
                return None
            return miss

    def remember_miss(self, key: str, kind: MissKind, ttl: float, detail: str = "") -> None:
        if ttl <= 0:
            return
        with self._lock:
            self._misses.pop(key, None)
            self._misses[key] = Miss(kind, self._clock() + ttl, detail)
            while len(self._misses) > self._max_misses:
                self._misses.popitem(last=False)

    def forget_misses(self) -> int:
        """Drop every remembered miss (a store published new files); how many there were."""
        with self._lock:
            count = len(self._misses)
            self._misses.clear()
            return count

    # -- purging ------------------------------------------------------------------------------------

    def forget(self, key: str) -> bool:
        digest = _digest(key)
        with self._lock:
            removed = self._misses.pop(key, None) is not None
            entry = self._entries.pop(digest, None)
            if entry is not None:
                self._committed -= entry[0]
        if entry is not None:
            with contextlib.suppress(FileNotFoundError):
                self._path(digest).unlink()
            return True
        return removed

    def clear(self) -> int:
        with self._lock:
            entries = list(self._entries)
            self._entries.clear()
            self._committed = 0
            count = len(entries) + len(self._misses)
            self._misses.clear()
        for digest in entries:
            with contextlib.suppress(FileNotFoundError):
                self._path(digest).unlink()
        return count

    # -- accounting ---------------------------------------------------------------------------------

    @property
    def size(self) -> int:
        return self._committed + self._reserved

    @property
    def count(self) -> int:
        return len(self._entries)

    def _evict_locked(self, needed: int) -> None:
        """Evict LRU files until ``needed`` more bytes fit. Caller holds the lock."""
        while self._committed + self._reserved + needed > self.max_size and self._entries:
            digest, (size, _) = self._entries.popitem(last=False)
            self._committed -= size
            self.evictions += 1
            with contextlib.suppress(FileNotFoundError):
                self._path(digest).unlink()
            if self.on_evict is not None:
                self.on_evict(size)

    def _reserve(self, needed: int) -> None:
        """Make room for ``needed`` more bytes, evicting committed files; the cap is hard, so when
        other downloads' temporary files hold the rest, this download is refused (``CacheFull``)."""
        with self._lock:
            self._evict_locked(needed)
            if self._committed + self._reserved + needed > self.max_size:
                raise CacheFull(
                    f"{needed} more bytes do not fit: {self._reserved} bytes of the cache's "
                    f"{self.max_size} are held by downloads in progress"
                )
            self._reserved += needed

    def _release(self, amount: int) -> None:
        with self._lock:
            self._reserved -= amount

    def new_temp(self) -> TempFile:
        return TempFile(self)

    def _commit(self, key: str, temp: TempFile) -> CachedFile:
        digest = _digest(key)
        target = self._path(digest)
        target.parent.mkdir(parents=True, exist_ok=True)
        os.replace(temp.path, target)
        st = os.stat(target)
        with self._lock:
            old = self._entries.pop(digest, None)
            if old is not None:
                self._committed -= old[0]
            self._entries[digest] = (st.st_size, st.st_mtime_ns)
            self._committed += st.st_size
            self._reserved -= temp.reserved
            self._misses.pop(key, None)
        return CachedFile(key, target, st.st_size, st.st_mtime_ns)


class TempFile:
    """A file under ``tmp/`` owned by one download; its bytes count against the cap as written."""

    def __init__(self, cache: DiskCache) -> None:
        self._cache = cache
        self.path = cache.tmp_dir / uuid.uuid4().hex
        self._fd: int | None = os.open(self.path, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC, 0o600)
        self.written = 0
        self.reserved = 0
        self._closed = False

    def reserve(self, size: int) -> None:
        if size > self._cache.max_size:
            raise CacheFull(f"{size} bytes do not fit a cache of {self._cache.max_size}")
        if size > self.reserved:
            self._cache._reserve(size - self.reserved)
            self.reserved = size

    def write(self, data: bytes) -> None:
        if self._fd is None:
            raise ValueError("temporary file is closed")
        end = self.written + len(data)
        if end > self._cache.max_size:
            raise CacheFull(f"file grows beyond the cache size of {self._cache.max_size}")
        if end > self.reserved:
            self._cache._reserve(end - self.reserved)
            self.reserved = end
        view = memoryview(data)
        while view:
            done = os.write(self._fd, view)
            view = view[done:]
        self.written = end

    def commit(self, key: str, *, expected_size: int | None = None) -> CachedFile:
        if expected_size is not None and expected_size != self.written:
            self.discard()
            raise ValueError(f"got {self.written} bytes, expected {expected_size}")
        self._close_fd()
        if self.reserved > self.written:
            self._cache._release(self.reserved - self.written)
            self.reserved = self.written
        cached = self._cache._commit(key, self)
        self._closed = True
        return cached

    def _close_fd(self) -> None:
        if self._fd is not None:
            os.close(self._fd)
            self._fd = None

    def discard(self) -> None:
        if self._closed:
            return
        self._closed = True
        self._close_fd()
        with contextlib.suppress(FileNotFoundError):
            self.path.unlink()
        self._cache._release(self.reserved)
        self.reserved = 0
