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
import fcntl
import functools
import hashlib
import os
import threading
import time
import uuid
from collections.abc import Callable, Iterable, Iterator
from pathlib import Path
from typing import Literal

__all__ = ["CacheFull", "CachedFile", "DiskCache", "Miss", "TempFile"]

MissKind = Literal["not_found", "denied", "error", "timeout"]


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


MEMO_SIZE = 4096
"""Recent keys whose digest and file path are kept, so a hit costs neither a hash nor pathlib."""


@functools.lru_cache(maxsize=MEMO_SIZE)
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
        shared: bool = False,
    ) -> None:
        self.root = Path(root)
        self.shared = shared
        """Other processes (``--workers`` followers) read the files too, each holding a shared
        ``flock`` on a file while it may send it: eviction passes over a file locked so, as over
        a pinned one, and unlinks a victim only while it holds the exclusive lock."""
        self._objects = self.root / "objects"
        self._paths: dict[str, Path] = {}
        self.max_size = max_size
        self._clock = clock
        self._max_misses = max_misses
        self._lock = threading.Lock()
        self._entries: collections.OrderedDict[str, tuple[int, int]] = collections.OrderedDict()
        self._misses: collections.OrderedDict[str, Miss] = collections.OrderedDict()
        self._committed = 0
        self._reserved = 0
        self._pins: collections.Counter[str] = collections.Counter()
        self.evictions = 0
        self.on_evict: Callable[[int], None] | None = None
        self.on_unlink: Callable[[Path], None] | None = None
        """Called with the path of every file removed from the index (evicted, forgotten, cleared),
        from whichever thread removed it: holders of open handles close them, so the bytes of a
        removed file leave the disk at once instead of lingering as deleted-but-open."""

    @property
    def objects_dir(self) -> Path:
        return self._objects

    @property
    def tmp_dir(self) -> Path:
        return self.root / "tmp"

    def _path(self, digest: str) -> Path:
        # A pure function of the digest, asked on every hit: pathlib's joins cost more than the rest
        # of a hit's lookup, so recent paths are kept (Paths are immutable; sharing them is safe).
        path = self._paths.get(digest)
        if path is None:
            if len(self._paths) >= MEMO_SIZE:
                self._paths.clear()
            path = self._paths[digest] = self._objects / digest[:2] / digest[2:4] / digest[4:]
        return path

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

    def now(self) -> float:
        """The clock misses expire by."""
        return self._clock()

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

    def touch(self, keys: Iterable[str]) -> int:
        """Mark ``keys`` as just used (hits another worker served); returns how many are cached."""
        found = 0
        with self._lock:
            for key in keys:
                digest = _digest(key)
                if digest in self._entries:
                    self._entries.move_to_end(digest)
                    found += 1
        return found

    def remember_miss(self, key: str, kind: MissKind, ttl: float, detail: str = "") -> None:
        if ttl <= 0:
            return
        with self._lock:
            self._misses.pop(key, None)
            self._misses[key] = Miss(kind, self._clock() + ttl, detail)
            while len(self._misses) > self._max_misses:
                self._misses.popitem(last=False)

    # -- purging ------------------------------------------------------------------------------------

    def forget(self, key: str) -> bool:
        digest = _digest(key)
        with self._lock:
            removed = self._misses.pop(key, None) is not None
            entry = self._entries.pop(digest, None)
            if entry is not None:
                self._committed -= entry[0]
        if entry is not None:
            self._unlink(digest)
            return True
        return removed

    def forget_misses(self) -> int:
        """Drop every remembered miss (a reload that can change the answers, such as a store that
        published new files); returns how many."""
        with self._lock:
            count = len(self._misses)
            self._misses.clear()
        return count

    def clear(self) -> int:
        with self._lock:
            entries = list(self._entries)
            self._entries.clear()
            self._committed = 0
            count = len(entries) + len(self._misses)
            self._misses.clear()
        for digest in entries:
            self._unlink(digest)
        return count

    def _unlink(self, digest: str) -> None:
        path = self._path(digest)
        with contextlib.suppress(FileNotFoundError):
            path.unlink()
        if self.on_unlink is not None:
            self.on_unlink(path)

    # -- pins ---------------------------------------------------------------------------------------

    @contextlib.contextmanager
    def pinned(self, key: str) -> Iterator[None]:
        """While the block runs, the file under ``key`` (present now or committed later) is never
        evicted: a response being sent from it cannot lose its file, and no open handle of an
        evicted file keeps bytes on disk beyond the cap."""
        digest = _digest(key)
        with self._lock:
            self._pins[digest] += 1
        try:
            yield
        finally:
            with self._lock:
                self._pins[digest] -= 1
                if self._pins[digest] <= 0:
                    del self._pins[digest]

    # -- accounting ---------------------------------------------------------------------------------

    @property
    def size(self) -> int:
        return self._committed + self._reserved

    @property
    def count(self) -> int:
        return len(self._entries)

    def _evict_locked(self, needed: int) -> None:
        """Evict LRU files that nobody pins until ``needed`` more bytes fit. Caller holds the lock."""
        excess = self._committed + self._reserved + needed - self.max_size
        if excess <= 0:
            return
        if self.shared:
            locked = self._victims_shared(excess)
            try:
                self._drop_locked([digest for digest, _ in locked])
            finally:
                for _, fd in locked:
                    if fd >= 0:
                        os.close(fd)
            return
        victims: list[str] = []
        for digest, (size, _) in self._entries.items():  # least recently used first
            if digest in self._pins:
                continue
            victims.append(digest)
            excess -= size
            if excess <= 0:
                break
        self._drop_locked(victims)

    def _drop_locked(self, victims: list[str]) -> None:
        for digest in victims:
            size, _ = self._entries.pop(digest)
            self._committed -= size
            self.evictions += 1
            self._unlink(digest)
            if self.on_evict is not None:
                self.on_evict(size)

    def _victims_shared(self, excess: int) -> list[tuple[str, int]]:
        """LRU files neither pinned here nor locked by another process, each returned with a
        descriptor holding its exclusive lock (the caller unlinks, then closes)."""
        victims: list[tuple[str, int]] = []
        for digest, (size, _) in self._entries.items():
            if digest in self._pins:
                continue
            try:
                fd = os.open(self._path(digest), os.O_RDONLY | os.O_CLOEXEC)
            except FileNotFoundError:
                fd = -1  # already gone from the disk: drop it from the index all the same
            else:
                try:
                    fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                except BlockingIOError:
                    os.close(fd)
                    continue  # another worker is sending it
            victims.append((digest, fd))
            excess -= size
            if excess <= 0:
                break
        return victims

    def _reserve(self, needed: int, *, may_evict: bool = True) -> None:
        """Make room for ``needed`` more bytes, evicting committed files (unless ``may_evict`` is
        false); the cap is hard, so when pinned files and other downloads' temporary files hold the
        rest, this download is refused (``CacheFull``)."""
        with self._lock:
            if may_evict:
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

    def new_temp(self, prefix: str = "") -> TempFile:
        """A temporary file under ``tmp/`` whose bytes count against the cap: a download's file,
        or scratch space (``packed-``, ``unpacked-``) that is never committed."""
        return TempFile(self, prefix)

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
        if old is not None and self.on_unlink is not None:
            self.on_unlink(target)  # replaced: handles of the old file must not keep its blocks
        return CachedFile(key, target, st.st_size, st.st_mtime_ns)


UNANNOUNCED_SHARE = 2
"""A download whose size was not announced may evict other files only while it stays within
1/``UNANNOUNCED_SHARE`` of the cap; beyond that it must fit in free space. So one oversized chunked
body is refused before it has flushed the whole cache."""


class TempFile:
    """A file under ``tmp/`` owned by one download; its bytes count against the cap as written."""

    def __init__(self, cache: DiskCache, prefix: str = "") -> None:
        self._cache = cache
        self.path = cache.tmp_dir / f"{prefix}{uuid.uuid4().hex}"
        self.announced = False
        self._fd: int | None = os.open(self.path, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC, 0o600)
        self.written = 0
        self.reserved = 0
        self._closed = False

    def reserve(self, size: int) -> None:
        if size > self._cache.max_size:
            raise CacheFull(f"{size} bytes do not fit a cache of {self._cache.max_size}")
        self.announced = True
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
            may_evict = self.announced or end <= self._cache.max_size // UNANNOUNCED_SHARE
            self._cache._reserve(end - self.reserved, may_evict=may_evict)
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

    def close(self) -> None:
        """Stop writing; the bytes stay (and stay counted) until ``discard`` or ``commit``."""
        self._close_fd()

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
