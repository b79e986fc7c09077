"""An in-memory backend: the fake for unit tests of error paths and of the resolver's ordering."""

from __future__ import annotations

from collections.abc import AsyncIterator

from symbol_proxy.backends import base

__all__ = ["MemoryBackend"]


class _BytesStream:
    def __init__(self, data: bytes, chunk_size: int) -> None:
        self._data = data
        self._chunk_size = chunk_size
        self._info = base.ObjectInfo(size=len(data))

    @property
    def info(self) -> base.ObjectInfo:
        return self._info

    async def chunks(self) -> AsyncIterator[bytes]:
        for start in range(0, len(self._data), self._chunk_size):
            yield self._data[start : start + self._chunk_size]

    async def aclose(self) -> None:
        return None


class MemoryBackend:
    """Serves ``files`` (location → bytes, or an exception to raise); records every ``open``."""

    kind = "memory"

    def __init__(
        self, files: dict[str, bytes | base.BackendError] | None = None, *, chunk_size: int = 65536
    ) -> None:
        self.files: dict[str, bytes | base.BackendError] = dict(files or {})
        self.opened: list[str] = []
        self._chunk_size = chunk_size

    async def open(self, location: str, *, checksum: str | None = None) -> base.ObjectStream:
        self.opened.append(location)
        found = self.files.get(location)
        if found is None:
            raise base.NotFound(location)
        if isinstance(found, base.BackendError):
            raise found
        return _BytesStream(found, self._chunk_size)

    async def aclose(self) -> None:
        return None
