"""The ``filesystem`` backend: a directory on local disk or a mounted share.

File access runs in the default executor so a slow share never blocks the event loop. Locations come
from layouts and are relative; anything that would escape the root is refused as "not found".

Writes (publishing) go to a temporary file beside the target (``.<name>.tmp-<random>``), are flushed to
disk, and then appear at once: ``put`` renames over the target, ``create`` hard-links the temporary
file to the target, which fails if the name is taken, so of two racing creators exactly one wins.
``copy`` hard-links the source under a temporary name and renames that over the target (no bytes
copied; nothing is ever changed in place, so the copy keeps its content). A crash leaves at most a
temporary file, never a partial object under its real name; ``list`` skips temporary files and
``remove_incomplete`` deletes the old ones (garbage collection).
"""

from __future__ import annotations

import asyncio
import datetime
import errno
import os
import re
import secrets
import stat
from collections.abc import AsyncIterator
from pathlib import Path

from symbol_proxy.backends import base
from symbol_proxy.config import FilesystemSource

__all__ = ["FilesystemBackend"]

CHUNK_SIZE = 256 * 1024
_TEMPORARY = re.compile(r"^\..+\.tmp-[0-9a-f]{16}$")
"""The name ``_write_temporary`` gives a file while it is written."""


def _safe_join(root: Path, location: str) -> Path:
    parts = [p for p in location.replace("\\", "/").split("/") if p]
    if not parts or any(p in (".", "..") for p in parts):
        raise base.NotFound(f"not a valid location: {location!r}")
    return root.joinpath(*parts)


class _FileStream:
    def __init__(self, fd: int, size: int) -> None:
        self._fd = fd
        self._info = base.ObjectInfo(size=size)

    @property
    def info(self) -> base.ObjectInfo:
        return self._info

    async def chunks(self) -> AsyncIterator[bytes]:
        loop = asyncio.get_running_loop()
        offset = 0
        try:
            while True:
                data = await loop.run_in_executor(None, os.pread, self._fd, CHUNK_SIZE, offset)
                if not data:
                    break
                offset += len(data)
                yield data
        except OSError as exc:
            raise base.UpstreamError(f"read failed: {exc.strerror}", retryable=False) from None
        finally:
            await self.aclose()

    async def aclose(self) -> None:
        fd, self._fd = self._fd, -1
        if fd >= 0:
            os.close(fd)


class FilesystemBackend:
    kind = "filesystem"

    def __init__(self, source: FilesystemSource) -> None:
        self._root = Path(source.path)

    async def open(self, location: str, *, checksum: str | None = None) -> base.ObjectStream:
        path = _safe_join(self._root, location)
        loop = asyncio.get_running_loop()
        return await loop.run_in_executor(None, self._open_sync, path)

    @staticmethod
    def _open_sync(path: Path) -> _FileStream:
        try:
            fd = os.open(path, os.O_RDONLY | getattr(os, "O_CLOEXEC", 0))
        except FileNotFoundError:
            raise base.NotFound(str(path.name)) from None
        except NotADirectoryError:
            raise base.NotFound(str(path.name)) from None
        except PermissionError:
            raise base.PermissionDenied(f"cannot read {path.name}") from None
        except IsADirectoryError:
            raise base.NotFound(str(path.name)) from None
        except OSError as exc:
            if exc.errno in (errno.ENAMETOOLONG, errno.ELOOP):
                raise base.NotFound(str(path.name)) from None
            raise base.UpstreamError(f"cannot open {path.name}: {exc.strerror}") from None
        st = os.fstat(fd)
        if not stat.S_ISREG(st.st_mode):
            os.close(fd)
            raise base.NotFound(str(path.name))
        return _FileStream(fd, st.st_size)

    async def aclose(self) -> None:
        return None

    # ---------------------------------------------------------------------------------------------
    # Writing (publishing)

    def _target(self, location: str) -> Path:
        return _safe_join(self._root, location)

    async def _write_temporary(self, path: Path, chunks: AsyncIterator[bytes], size: int | None) -> Path:
        """Write ``chunks`` to a new temporary file beside ``path``; the caller renames or links it."""
        loop = asyncio.get_running_loop()
        temporary = path.with_name(f".{path.name}.tmp-{secrets.token_hex(8)}")
        fd = await loop.run_in_executor(None, _create_file, temporary)
        written = 0
        try:
            async for chunk in chunks:
                written += len(chunk)
                if size is not None and written > size:
                    raise base.Malformed(f"{path.name}: more than the declared {size} bytes")
                await loop.run_in_executor(None, _write_all, fd, chunk)
            if size is not None and written != size:
                raise base.Malformed(f"{path.name}: {written} bytes, not the declared {size}")
            await loop.run_in_executor(None, os.fsync, fd)
        except BaseException:
            os.close(fd)
            fd = -1
            _remove(temporary)
            raise
        finally:
            if fd >= 0:
                os.close(fd)
        return temporary

    async def put(self, location: str, chunks: AsyncIterator[bytes], *, size: int | None = None) -> None:
        path = self._target(location)
        temporary = await self._write_temporary(path, chunks, size)
        try:
            await asyncio.get_running_loop().run_in_executor(None, os.replace, temporary, path)
        except OSError as exc:
            _remove(temporary)
            raise _write_error(path, exc) from None

    async def create(self, location: str, chunks: AsyncIterator[bytes], *, size: int | None = None) -> None:
        path = self._target(location)
        if path.exists():
            raise base.AlreadyExists(path.name)  # cheap early answer; the link below decides
        temporary = await self._write_temporary(path, chunks, size)
        try:
            await asyncio.get_running_loop().run_in_executor(None, os.link, temporary, path)
        except FileExistsError:
            raise base.AlreadyExists(path.name) from None
        except OSError as exc:
            raise _write_error(path, exc) from None
        finally:
            _remove(temporary)

    async def head(self, location: str) -> base.ObjectInfo:
        path = self._target(location)
        loop = asyncio.get_running_loop()
        try:
            st = await loop.run_in_executor(None, os.stat, path)
        except (FileNotFoundError, NotADirectoryError):
            raise base.NotFound(path.name) from None
        except OSError as exc:
            raise _write_error(path, exc) from None
        if not stat.S_ISREG(st.st_mode):
            raise base.NotFound(path.name)
        return base.ObjectInfo(size=st.st_size)

    async def copy(self, source: str, destination: str) -> None:
        """A hard link to the source's file, renamed over the destination: no bytes are copied (a
        sealed request's publication is hundreds of thousands of copies). Safe because no write
        changes a file in place: ``put`` renames a new file over the old name, so the destination
        keeps the content it had. Where links are impossible (another filesystem, a share without
        them) the bytes are copied."""
        loop = asyncio.get_running_loop()
        try:
            await loop.run_in_executor(None, _link_over, self._target(source), self._target(destination))
            return
        except FileNotFoundError:
            raise base.NotFound(Path(source).name) from None
        except OSError as exc:
            if exc.errno not in (errno.EXDEV, errno.EPERM, errno.EMLINK, errno.ENOTSUP):
                raise _write_error(self._target(destination), exc) from None
        stream = await self.open(source)

        async def body() -> AsyncIterator[bytes]:
            async for chunk in stream.chunks():
                yield chunk

        try:
            await self.put(destination, body(), size=stream.info.size)
        finally:
            await stream.aclose()

    async def delete(self, location: str) -> None:
        path = self._target(location)
        try:
            await asyncio.get_running_loop().run_in_executor(None, _remove, path)
        except OSError as exc:
            raise _write_error(path, exc) from None

    # ---------------------------------------------------------------------------------------------
    # Listing (garbage collection)

    async def list(self, prefix: str) -> AsyncIterator[base.Listed]:
        loop = asyncio.get_running_loop()
        for item in await loop.run_in_executor(None, _walk, self._root, prefix, False):
            yield item

    async def remove_incomplete(self, before: datetime.datetime) -> int:
        loop = asyncio.get_running_loop()
        removed = 0
        for item in await loop.run_in_executor(None, _walk, self._root, "", True):
            if item.modified < before:
                await loop.run_in_executor(None, _remove, self._root / item.location)
                removed += 1
        return removed


def _walk(root: Path, prefix: str, temporaries: bool) -> list[base.Listed]:
    """The files below ``root`` whose location starts with ``prefix``: the complete ones, or only the
    temporary files of unfinished writes."""
    folder, _, _ = prefix.rpartition("/")
    start = root.joinpath(*[p for p in folder.split("/") if p]) if folder else root
    found = []
    for directory, _, names in os.walk(start):
        for name in names:
            if bool(_TEMPORARY.match(name)) != temporaries:
                continue
            path = Path(directory, name)
            location = path.relative_to(root).as_posix()
            if not location.startswith(prefix):
                continue
            try:
                st = path.stat()
            except FileNotFoundError:
                continue  # removed while we walked
            modified = datetime.datetime.fromtimestamp(st.st_mtime, datetime.UTC)
            found.append(base.Listed(location, st.st_size, modified))
    return found


def _link_over(source: Path, destination: Path) -> None:
    """Make ``destination`` another name of ``source``'s file, replacing what was there at once."""
    destination.parent.mkdir(parents=True, exist_ok=True)
    temporary = destination.with_name(f".{destination.name}.tmp-{secrets.token_hex(8)}")
    os.link(source, temporary)
    try:
        os.replace(temporary, destination)
    finally:
        # When the destination is already a link to the same file (a publish repeated after a
        # crash), rename(2) does nothing and succeeds: the temporary name would stay behind.
        _remove(temporary)


def _create_file(path: Path) -> int:
    flags = os.O_WRONLY | os.O_CREAT | os.O_EXCL | getattr(os, "O_CLOEXEC", 0)
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        return os.open(path, flags, 0o644)
    except OSError as exc:
        raise _write_error(path, exc) from None


def _write_all(fd: int, data: bytes) -> None:
    view = memoryview(data)
    while view:
        written = os.write(fd, view)
        view = view[written:]


def _remove(path: Path) -> None:
    try:
        path.unlink()
    except FileNotFoundError:
        pass


def _write_error(path: Path, exc: OSError) -> base.BackendError:
    if isinstance(exc, PermissionError):
        return base.PermissionDenied(f"cannot write {path.name}")
    return base.UpstreamError(f"cannot write {path.name}: {exc.strerror}", retryable=False)
