"""HTTP plumbing shared by the aiohttp-based backends (http, gcs, sentry).

Sending a GET within the head timeout, reading a body chunk by chunk within the read timeout and
the overall deadline, and turning a JSON error body into a short reason: the same for every
backend that speaks HTTP, so written once. aiohttp's exceptions are translated here.
"""

from __future__ import annotations

import asyncio
import hashlib
import io
import json
from collections.abc import AsyncIterator

import aiohttp
from yarl import URL

from symbol_proxy.backends import base
from symbol_proxy.config import UpstreamSettings

__all__ = ["CHUNK_SIZE", "HttpBodyStream", "error_detail", "send"]

CHUNK_SIZE = 256 * 1024


async def send(
    session: aiohttp.ClientSession,
    url: URL,
    settings: UpstreamSettings,
    deadline: float,
    *,
    headers: dict[str, str],
    where: str,
    ssl: bool = True,
    method: str = "GET",
    data: bytes | None = None,
    wait: float | None = None,
) -> aiohttp.ClientResponse:
    """Send a request (a GET unless told otherwise, with ``data`` as its body) and wait for the
    response headers, within ``wait`` (the head timeout unless told otherwise) and the deadline.
    Only GETs follow redirects: a write's 308 is the answer itself (GCS resumable uploads)."""
    remaining = deadline - asyncio.get_running_loop().time()
    timeout = aiohttp.ClientTimeout(sock_connect=settings.connect_timeout, sock_read=settings.read_timeout)
    try:
        if remaining <= 0:
            raise TimeoutError
        async with asyncio.timeout(min(settings.head_timeout if wait is None else wait, remaining)):
            return await session.request(
                method,
                url,
                headers=headers,
                data=None if data is None else io.BytesIO(data),  # raw bytes would be sent in one go
                timeout=timeout,
                allow_redirects=method == "GET",
                max_redirects=settings.max_redirects,
                ssl=ssl,
            )
    except TimeoutError:
        raise base.UpstreamTimeout(f"{where}: no response in time") from None
    except aiohttp.TooManyRedirects:
        raise base.UpstreamError(f"{where}: too many redirects", retryable=False) from None
    except aiohttp.ClientError as exc:
        raise base.UpstreamError(f"{where}: request failed ({type(exc).__name__})") from None


async def error_detail(response: aiohttp.ClientResponse) -> str:
    """A short machine-readable reason from a JSON error body (``forbidden``), or the status."""
    try:
        async with asyncio.timeout(5):
            payload = json.loads(await response.content.read(4096))
    except (TimeoutError, aiohttp.ClientError, ValueError):
        payload = None
    finally:
        response.release()
    if isinstance(payload, dict):
        error = payload.get("error")
        if isinstance(error, dict):
            errors = error.get("errors")
            if (
                isinstance(errors, list)
                and errors
                and isinstance(errors[0], dict)
                and errors[0].get("reason")
            ):
                return str(errors[0]["reason"])[:64]
            if error.get("status"):
                return str(error["status"])[:64]
        elif isinstance(error, str):
            return error[:64]
        if isinstance(payload.get("detail"), str):
            return str(payload["detail"])[:64]
    return str(response.status)


class HttpBodyStream:
    """An aiohttp response body read chunk by chunk, with timeouts and errors translated.

    ``md5`` (hex), when given, is checked against the body at the end, unless ``defer_md5()`` handed
    the check to the caller; ``info.size`` is always checked.
    """

    def __init__(
        self,
        response: aiohttp.ClientResponse,
        info: base.ObjectInfo,
        settings: UpstreamSettings,
        deadline: float,
        *,
        where: str,
        md5: str | None = None,
    ) -> None:
        self._response = response
        self._info = info
        self._settings = settings
        self._deadline = deadline
        self._where = where
        self._md5 = md5
        self._md5_deferred = False
        self._started = False

    @property
    def info(self) -> base.ObjectInfo:
        return self._info

    def defer_md5(self) -> str | None:
        self._md5_deferred = True
        return self._md5

    async def chunks(self) -> AsyncIterator[bytes]:
        if self._started:
            raise RuntimeError("the body of an object can be read only once")
        self._started = True
        loop = asyncio.get_running_loop()
        digest = hashlib.md5(usedforsecurity=False) if self._md5 else None
        received = 0
        try:
            while True:
                remaining = self._deadline - loop.time()
                if remaining <= 0:
                    raise base.UpstreamTimeout(f"{self._where}: download took too long")
                try:
                    async with asyncio.timeout(min(self._settings.read_timeout, remaining)):
                        data = await self._response.content.read(CHUNK_SIZE)
                except TimeoutError:
                    raise base.UpstreamTimeout(f"{self._where}: the body stalled") from None
                except aiohttp.ClientError as exc:
                    raise base.UpstreamError(
                        f"{self._where}: the body broke off ({type(exc).__name__})"
                    ) from None
                if not data:
                    break
                received += len(data)
                if digest is not None and not self._md5_deferred:
                    digest.update(data)
                yield data
            if self._info.size is not None and received != self._info.size:
                raise base.UpstreamError(f"{self._where}: got {received} bytes, expected {self._info.size}")
            if digest is not None and not self._md5_deferred and digest.hexdigest() != self._md5:
                raise base.Malformed(f"{self._where}: content does not match its MD5")
        finally:
            await self.aclose()

    async def aclose(self) -> None:
        self._response.release()
