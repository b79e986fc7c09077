"""What ``symbol-publish`` remembers between runs, in a state directory (docs/publish-cli.md).

* ``hashes.json``: ``(absolute path, size, mtime_ns)`` → the file's blob id and block hashes, so a
  re-run does not hash unchanged files again. A file whose mtime is less than ``RACY_NS`` old when
  it is hashed is not remembered (it may still change within the clock's granularity without
  changing its mtime: git's "racy" rule). At most ``MAX_FILES`` files are kept, the least recently
  used dropped first.
* ``blocks/<server>/<BLOBID>``: the blocks of a multi-block upload the server has acknowledged, one
  hex hash a line, appended as they are acknowledged; an interrupted upload resumes after them.
  Removed once the blob is whole.

Everything here is a cache: a missing, unreadable or corrupt file is treated as empty (and
rewritten), a state directory that cannot be written is ignored, and nothing here is trusted over
the server (a re-post that still finds the blob missing uploads every block again).
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import tempfile
import time
from pathlib import Path
from typing import Any

from symbol_publish.files import Hashed
from symbol_service import vsohash

__all__ = ["BlockJournal", "HashCache", "default_dir"]

RACY_NS = 2_000_000_000
MAX_FILES = 100_000
_VERSION = 1


def default_dir() -> Path:
    """``$SYMBOL_PUBLISH_STATE_DIR``, else ``$XDG_CACHE_HOME/symbol-publish``, else
    ``~/.cache/symbol-publish``."""
    explicit = os.environ.get("SYMBOL_PUBLISH_STATE_DIR")
    if explicit:
        return Path(explicit)
    cache = os.environ.get("XDG_CACHE_HOME")
    return (Path(cache) if cache else Path.home() / ".cache") / "symbol-publish"


class HashCache:
    """The blob ids of files hashed before; ``hits`` and ``misses`` count this run's lookups."""

    def __init__(self, directory: Path | None) -> None:
        self.path = None if directory is None else directory / "hashes.json"
        self._files: dict[str, list[Any]] = {}
        self.hits = 0
        self.misses = 0
        self._changed = False
        if self.path is not None:
            self._files = self._load(self.path)

    @staticmethod
    def _load(path: Path) -> dict[str, list[Any]]:
        try:
            document = json.loads(path.read_text(encoding="utf-8"))
        except (OSError, ValueError):
            return {}
        if not isinstance(document, dict) or document.get("version") != _VERSION:
            return {}
        files = document.get("files")
        return files if isinstance(files, dict) else {}

    @staticmethod
    def _stamp(path: Path) -> tuple[str, int, int] | None:
        try:
            info = path.stat()
        except OSError:
            return None
        return str(path.resolve()), info.st_size, info.st_mtime_ns

    def get(self, path: Path) -> Hashed | None:
        stamp = self._stamp(path)
        found = self._files.get(stamp[0]) if stamp is not None else None
        try:
            if stamp is not None and found is not None and found[:2] == [stamp[1], stamp[2]]:
                hashed = Hashed(
                    vsohash.BlobId.from_base64(found[2]), tuple(bytes.fromhex(b) for b in found[3])
                )
                self._files[stamp[0]] = self._files.pop(stamp[0])  # recently used: kept longest
                self.hits += 1
                return hashed
        except (TypeError, ValueError, IndexError):
            pass  # a corrupt record: hash again
        self.misses += 1
        return None

    def put(self, path: Path, hashed: Hashed, mtime_ns: int) -> None:
        """Remember ``hashed`` for the file as it was at ``mtime_ns`` (stat before hashing)."""
        stamp = self._stamp(path)
        if self.path is None or stamp is None or stamp[2] != mtime_ns:
            return  # changed while it was hashed
        if time.time_ns() - mtime_ns < RACY_NS:
            return
        self._files.pop(stamp[0], None)
        self._files[stamp[0]] = [stamp[1], stamp[2], hashed.blob.base64, [b.hex() for b in hashed.blocks]]
        self._changed = True

    def save(self) -> None:
        if self.path is None or not self._changed:
            return
        while len(self._files) > MAX_FILES:
            del self._files[next(iter(self._files))]
        _write_atomically(self.path, json.dumps({"version": _VERSION, "files": self._files}))


def _write_atomically(path: Path, text: str) -> None:
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        with tempfile.NamedTemporaryFile(
            "w", dir=path.parent, prefix=f".{path.name}.", delete=False, encoding="utf-8"
        ) as file:
            file.write(text)
        os.replace(file.name, path)
    except OSError:
        with contextlib.suppress(OSError, UnboundLocalError):
            os.unlink(file.name)


class BlockJournal:
    """The acknowledged blocks of multi-block uploads to one server."""

    def __init__(self, directory: Path | None, server: str) -> None:
        server_id = hashlib.sha256(server.rstrip("/").lower().encode()).hexdigest()[:16]
        self.directory = None if directory is None else directory / "blocks" / server_id

    def _path(self, blob: vsohash.BlobId) -> Path | None:
        return None if self.directory is None else self.directory / blob.hex

    def acknowledged(self, blob: vsohash.BlobId) -> set[bytes]:
        path = self._path(blob)
        if path is None:
            return set()
        try:
            lines = path.read_text(encoding="ascii").splitlines()
        except (OSError, ValueError):
            return set()
        found = set()
        for line in lines:  # a line cut off by a kill is not 64 hex digits: ignored
            if len(line) == 64:
                with contextlib.suppress(ValueError):
                    found.add(bytes.fromhex(line))
        return found

    def add(self, blob: vsohash.BlobId, block: bytes) -> None:
        path = self._path(blob)
        if path is None:
            return
        try:
            path.parent.mkdir(parents=True, exist_ok=True)
            with path.open("a", encoding="ascii") as file:
                file.write(block.hex() + "\n")
        except OSError:
            pass

    def forget(self, blob: vsohash.BlobId) -> None:
        path = self._path(blob)
        if path is not None:
            with contextlib.suppress(OSError):
                path.unlink()
