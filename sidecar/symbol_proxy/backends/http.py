"""The ``http`` backend: a symbol server, a bucket's public URL, another proxy.

One ``aiohttp.ClientSession`` (owned by the application) is shared by every HTTP-based source so
connections are pooled per host. Status codes are translated here and nowhere else: 401/403 mean
"refused", any other 4xx "not found" (Symbolicator's rule), 5xx a retryable upstream failure.
Bodies with a ``Content-Encoding`` are decoded by aiohttp; the size is then unknown up front.
"""

from __future__ import annotations

import asyncio

import aiohttp
from yarl import URL

from symbol_proxy import locations
from symbol_proxy.backends import base
from symbol_proxy.backends.httpio import HttpBodyStream, send
from symbol_proxy.config import HttpSource, UpstreamSettings

__all__ = ["HttpBackend"]


class HttpBackend:
    kind = "http"

    def __init__(
        self, source: HttpSource, settings: UpstreamSettings, *, session: aiohttp.ClientSession
    ) -> None:
        self._id = source.id
        self._base_url = source.url
        self._settings = settings
        self._session = session
        self._ssl = not source.accept_invalid_certs
        self._headers = {"User-Agent": settings.user_agent}
        self._headers.update({k: v.get_secret_value() for k, v in source.headers.items()})

    def __repr__(self) -> str:
        return f"HttpBackend({self._id!r})"

    async def open(self, location: str, *, checksum: str | None = None) -> base.ObjectStream:
        url = URL(locations.join_url(self._base_url, location), encoded=True)
        headers = self._headers
        if checksum:
            headers = {**headers, "SymbolChecksum": checksum}
        deadline = asyncio.get_running_loop().time() + self._settings.total_timeout
        response = await send(
            self._session, url, self._settings, deadline, headers=headers, where=self._id, ssl=self._ssl
        )
        status = response.status
        if status == 200:
            size = None if response.headers.get("Content-Encoding") else response.content_length
            info = base.ObjectInfo(size=size, etag=response.headers.get("ETag"))
            return HttpBodyStream(response, info, self._settings, deadline, where=self._id)
        response.release()
        if status in (401, 403):
            raise base.PermissionDenied(f"{self._id}: HTTP {status}")
        if 400 <= status < 500:
            raise base.NotFound(f"{self._id}: HTTP {status}")
        if status >= 500:
            raise base.UpstreamError(f"{self._id}: HTTP {status}", status=status, retryable=True)
        raise base.UpstreamError(f"{self._id}: unexpected HTTP {status}", status=status, retryable=False)

    async def aclose(self) -> None:
        return None  # the session belongs to the application
