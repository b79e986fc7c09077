"""What ``symbol-publish`` remembers between runs, in a state directory (docs/publish-cli.md).

* ``files.json``: ``(absolute path, size, mtime_ns)`` → the objects ``symbolic`` found in the file
  (format, kind, arch, ids, features: an ``Identity`` each) and its blob id and block hashes, so a
  re-run neither parses nor hashes unchanged files again. A file whose mtime is less than ``RACY_NS`` old when
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

from symbol_proxy.objects import DebugId, InvalidId
from symbol_publish.files import Hashed
from symbol_publish.identities import Format, Identity
from symbol_service import vsohash

__all__ = ["BlockJournal", "FileCache", "default_dir"]

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


class FileCache:
    """What was read from files before: their objects (the scan) and their hashes.

    ``scan_hits``/``hash_hits`` count this run's answers from the cache, ``*_misses`` the files read
    again. A record belongs to one ``(size, mtime_ns)`` of its path; a changed file starts a new one.
    """

    def __init__(self, directory: Path | None) -> None:
        self.directory = directory
        self.path = None if directory is None else directory / "files.json"
        self._files: dict[str, dict[str, Any]] = {}
        self.scan_hits = self.scan_misses = self.hash_hits = self.hash_misses = 0
        self._changed = False
        if self.path is not None:
            self._files = self._load(self.path)

    @staticmethod
    def _load(path: Path) -> dict[str, dict[str, Any]]:
        try:
            document = json.loads(path.read_text(encoding="utf-8"))
        except (OSError, ValueError):
            return {}
        if not isinstance(document, dict) or document.get("version") != _VERSION:
            return {}
        files = document.get("files")
        if not isinstance(files, dict):
            return {}
        return {k: v for k, v in files.items() if isinstance(v, dict)}

    @staticmethod
    def _stamp(path: Path) -> tuple[str, int, int] | None:
        try:
            info = path.stat()
        except OSError:
            return None
        return str(path.absolute()), info.st_size, info.st_mtime_ns

    def _record(self, path: Path, field: str) -> Any:
        stamp = self._stamp(path)
        if stamp is None:
            return None
        record = self._files.get(stamp[0])
        if record is None or [record.get("size"), record.get("mtime_ns")] != [stamp[1], stamp[2]]:
            return None
        self._files[stamp[0]] = self._files.pop(stamp[0])  # recently used: kept longest
        return record.get(field)

    def _put(self, path: Path, mtime_ns: int, field: str, value: Any) -> None:
        """Remember ``value`` for the file as it was at ``mtime_ns`` (its stat before reading it)."""
        stamp = self._stamp(path)
        if self.path is None or stamp is None or stamp[2] != mtime_ns:
            return  # changed while it was read
        if time.time_ns() - mtime_ns < RACY_NS:
            return
        record = self._files.pop(stamp[0], None)
        if record is None or [record.get("size"), record.get("mtime_ns")] != [stamp[1], stamp[2]]:
            record = {"size": stamp[1], "mtime_ns": stamp[2]}
        record[field] = value
        self._files[stamp[0]] = record
        self._changed = True

    def objects(self, path: Path) -> tuple[Identity, ...] | None:
        """The objects an earlier scan found in the unchanged file."""
        found = self._record(path, "objects")
        try:
            if isinstance(found, list) and found:
                identities = tuple(_identity(item) for item in found)
                self.scan_hits += 1
                return identities
        except (TypeError, ValueError, KeyError, InvalidId):
            pass  # a corrupt record: read the file again
        self.scan_misses += 1
        return None

    def put_objects(self, path: Path, mtime_ns: int, identities: tuple[Identity, ...]) -> None:
        self._put(path, mtime_ns, "objects", [_identity_record(i) for i in identities])

    def hashed(self, path: Path) -> Hashed | None:
        found = self._record(path, "hash")
        try:
            if isinstance(found, list):
                hashed = Hashed(
                    vsohash.BlobId.from_base64(found[0]), tuple(bytes.fromhex(b) for b in found[1])
                )
                self.hash_hits += 1
                return hashed
        except (TypeError, ValueError, IndexError):
            pass
        self.hash_misses += 1
        return None

    def put_hashed(self, path: Path, mtime_ns: int, hashed: Hashed) -> None:
        self._put(path, mtime_ns, "hash", [hashed.blob.base64, [b.hex() for b in hashed.blocks]])

    def save(self) -> None:
        if self.path is None or not self._changed:
            return
        while len(self._files) > MAX_FILES:
            del self._files[next(iter(self._files))]
        _write_atomically(self.path, json.dumps({"version": _VERSION, "files": self._files}))
        self._changed = False


def _identity_record(identity: Identity) -> dict[str, Any]:
    return {
        "name": identity.name,
        "format": identity.format.value,
        "kind": identity.kind,
        "arch": identity.arch,
        "debug_id": None if identity.debug_id is None else str(identity.debug_id),
        "code_id": identity.code_id,
        "features": sorted(identity.features),
        "module_name": identity.module_name,
    }


def _identity(record: dict[str, Any]) -> Identity:
    debug_id = record["debug_id"]
    return Identity(
        name=str(record["name"]),
        format=Format(record["format"]),
        kind=str(record["kind"]),
        arch=str(record["arch"]),
        debug_id=None if debug_id is None else DebugId.parse(str(debug_id)),
        code_id=None if record["code_id"] is None else str(record["code_id"]),
        features=frozenset(str(f) for f in record["features"]),
        module_name=None if record["module_name"] is None else str(record["module_name"]),
    )


def _write_atomically(path: Path, text: str) -> None:
    """A temporary file beside ``path``, renamed over it: a reader sees the old or the new file.
    A state directory that cannot be written is left alone (the cache is an optimisation)."""
    temporary: str | None = None
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        with tempfile.NamedTemporaryFile(
            "w", dir=path.parent, prefix=f".{path.name}.", delete=False, encoding="utf-8"
        ) as file:
            temporary = file.name
            file.write(text)
        os.replace(temporary, path)
    except OSError:
        if temporary is not None:
            with contextlib.suppress(OSError):
                os.unlink(temporary)


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
