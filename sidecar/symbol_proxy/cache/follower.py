"""The cache as a ``--workers`` follower sees it: the owner's directory, read, never written.

The owner process (worker 0) downloads, commits, evicts and remembers misses; a follower answers
hits from the same ``objects/`` directory and hands everything else to the owner. A committed file
appears by ``rename``, so a file present under its digest path is always whole: a hit costs one
``stat``. The protocol that keeps the owner's cap exact while followers send files:

- a follower reads a file it keeps in memory (small files) with no lock: memory holds no disk;
- a follower keeps a larger file open only with a shared ``flock`` on it, taken and then checked
  against the path (same inode), so a file the owner unlinked in between is never served;
- the owner evicts a file only under an exclusive ``flock`` it got without waiting, and passes over
  files a follower holds, as it does over files its own responses pin (``DiskCache(shared=True)``);
- a follower keeps no index and writes nothing: its only memory is the "not found" answers the owner
  gave it, for a few seconds;
- followers give their kept handles up every ``HANDLE_SECONDS`` (responses still sending keep theirs
  until done), so a file held this way is evictable again soon after its last request.

Hits are reported to the owner in batches (``touch``), so the one LRU order is every worker's.
"""

from __future__ import annotations

import contextlib
import fcntl
import os
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import BinaryIO

from symbol_proxy.cache.store import CachedFile, DiskCache, Miss, TempFile, _digest

__all__ = ["HANDLE_SECONDS", "FollowerCache"]

HANDLE_SECONDS = 2.0
"""How long a follower keeps a large file's handle (and so its shared lock) after opening it."""
MAX_TOUCHES = 65_536
"""Hits remembered between two reports to the owner; beyond that the oldest are not reported."""


class FollowerCache(DiskCache):
    def __init__(self, root: Path, *, max_size: int) -> None:
        super().__init__(root, max_size=max_size)
        self._touched: dict[str, None] = {}
        self._touch_lock = threading.Lock()

    def open(self) -> None:
        """Nothing to index or clean: the owner does both."""

    def get(self, key: str) -> CachedFile | Miss | None:
        if self._misses:
            miss = super().get(key)  # no entries: only this worker's short-lived misses
            if miss is not None:
                return miss
        path = self._path(_digest(key))
        try:
            st = os.stat(path)
        except OSError:
            return None
        with self._touch_lock:
            if len(self._touched) < MAX_TOUCHES:
                self._touched[key] = None
        return CachedFile(key, path, st.st_size, st.st_mtime_ns)

    def take_touches(self) -> list[str]:
        """The keys hit since the last call (for the owner's LRU)."""
        with self._touch_lock:
            touched, self._touched = list(self._touched), {}
        return touched

    def read_small(self, entry: CachedFile) -> bytes | None:
        """The whole file, if it is still the one ``entry`` describes."""
        try:
            with open(entry.path, "rb") as handle:
                st = os.fstat(handle.fileno())
                if (st.st_size, st.st_mtime_ns) != (entry.size, entry.mtime_ns):
                    return None
                data = handle.read()
        except OSError:
            return None
        return data if len(data) == entry.size else None

    def open_shared(self, entry: CachedFile) -> BinaryIO | None:
        """A handle of ``entry``'s file holding a shared lock, or ``None`` if the owner removed or
        replaced the file (checked after the lock is held, so an unlink cannot slip in between)."""
        try:
            handle = open(entry.path, "rb")  # noqa: SIM115 - kept open by HotFiles
        except OSError:
            return None
        try:
            fcntl.flock(handle.fileno(), fcntl.LOCK_SH)
            held = os.fstat(handle.fileno())
            now = os.stat(entry.path)
        except OSError:
            handle.close()
            return None
        same = (held.st_dev, held.st_ino) == (now.st_dev, now.st_ino)
        if not same or (held.st_size, held.st_mtime_ns) != (entry.size, entry.mtime_ns):
            handle.close()
            return None
        return handle

    @contextlib.contextmanager
    def pinned(self, key: str) -> Iterator[None]:
        """A follower's responses are pinned by the shared lock of the handle they send from."""
        yield

    # The owner's business: a follower never writes or evicts. It remembers only the "not found"
    # answers the owner gave it, briefly (``workers.FOLLOWER_MISS_SECONDS``).
    def new_temp(self, prefix: str = "") -> TempFile:
        raise RuntimeError("a --workers follower never downloads; the owner does")
