"""The ``filesystem`` backend: a directory on local disk or a mounted share.

File access runs in the default executor so a slow share never blocks the event loop. Locations come
from layouts and are relative; anything that would escape the root is refused as "not found".
"""

from __future__ import annotations

import asyncio
import errno
import os
import stat
from collections.abc import AsyncIterator
from pathlib import Path

from symbol_proxy.backends import base
from symbol_proxy.config import FilesystemSource

__all__ = ["FilesystemBackend"]

CHUNK_SIZE = 256 * 1024


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
