"""A client of the Symbol Service REST API (Azure DevOps' and ours), as its documented routes are.

Every HTTP call goes through ``SymbolService._call``, and this is the only module that knows
aiohttp: its errors and the service's status codes become the small set of exceptions below, which
the CLI maps to exit codes. Idempotent calls are retried on network errors and 5xx answers; the
token goes only into the ``Authorization`` header and never into a message.
"""

from __future__ import annotations

import asyncio
import base64
import datetime
import io
from collections.abc import AsyncIterator
from typing import Any

import aiohttp

__all__ = [
    "AuthError",
    "RequestExists",
    "ServerError",
    "ServiceError",
    "SymbolService",
]

API_VERSION = "1.0"
RETRIES = 3
"""Attempts of an idempotent call before a network error or a 5xx is final."""
_TIMEOUT = aiohttp.ClientTimeout(total=None, connect=30, sock_read=300)


class ServiceError(Exception):
    """The service refused a call (a 4xx other than the ones below); ``type_key`` is Azure's."""

    def __init__(self, message: str, *, status: int | None = None, type_key: str | None = None) -> None:
        super().__init__(message)
        self.status = status
        self.type_key = type_key


class AuthError(ServiceError):
    """401 (no or unknown token) or 403 (the token lacks the scope)."""


class RequestExists(ServiceError):
    """409: a request with that name exists, or an entry exists with other content."""


class ServerError(ServiceError):
    """5xx or the network, after the retries."""


def _message(status: int, body: Any, fallback: str) -> tuple[str, str | None]:
    if isinstance(body, dict) and body.get("message"):
        return str(body["message"]), body.get("typeKey")
    return fallback or f"HTTP {status}", None


class SymbolService:
    """``url`` is the organization's base URL, e.g. ``https://artifacts.dev.azure.com/fabrikam``."""

    def __init__(self, url: str, token: str | None, session: aiohttp.ClientSession) -> None:
        self.url = url.rstrip("/")
        self._session = session
        self._headers = {
            "Accept": f"application/json; api-version={API_VERSION}",
            "X-TFS-FedAuthRedirect": "Suppress",  # 401 instead of a sign-in page
        }
        if token:
            credential = base64.b64encode(f":{token}".encode()).decode()
            self._headers["Authorization"] = f"Basic {credential}"

    async def _call(
        self,
        method: str,
        url: str,
        *,
        json: Any = None,
        params: dict[str, str] | None = None,
        retry: bool = True,
    ) -> tuple[int, Any]:
        attempts = RETRIES if retry else 1
        for attempt in range(attempts):
            try:
                async with self._session.request(
                    method, url, json=json, params=params, headers=self._headers, timeout=_TIMEOUT
                ) as response:
                    body: Any = None
                    if response.content_type == "application/json":
                        body = await response.json()
                    else:
                        await response.read()
                    if response.status < 500:
                        return response.status, body
                    message, key = _message(response.status, body, response.reason or "")
                    error: ServiceError = ServerError(
                        f"{method} {url}: {response.status} {message}", status=response.status, type_key=key
                    )
            except (TimeoutError, aiohttp.ClientError) as exc:
                error = ServerError(f"{method} {url}: {type(exc).__name__}: {exc}")
            if attempt + 1 < attempts:
                await asyncio.sleep(0.5 * 2**attempt)
        raise error

    @staticmethod
    def _raise_for(method: str, url: str, status: int, body: Any) -> None:
        message, key = _message(status, body, "")
        text = f"{method} {url}: {status} {message}"
        if status in (401, 403):
            raise AuthError(text, status=status, type_key=key)
        if status == 409:
            raise RequestExists(text, status=status, type_key=key)
        raise ServiceError(text, status=status, type_key=key)

    async def _json(
        self, method: str, path: str, *, expect: tuple[int, ...] = (200,), retry: bool = True, **kwargs: Any
    ) -> Any:
        url = f"{self.url}/_apis/symbol/{path}"
        status, body = await self._call(method, url, retry=retry, **kwargs)
        if status not in expect:
            self._raise_for(method, url, status, body)
        return body

    async def create_request(
        self, name: str, description: str, expiration: datetime.datetime | None
    ) -> dict[str, Any]:
        body: dict[str, Any] = {"name": name, "description": description, "isChunked": False}
        if expiration is not None:
            body["expirationDate"] = expiration.strftime("%Y-%m-%dT%H:%M:%SZ")
        # Retried like the rest: when a create reached the service before the answer was lost, the
        # retry answers 409, and the caller finds its own request by name and description.
        result: dict[str, Any] = await self._json("POST", "requests", json=body, expect=(200, 201))
        return result

    async def find_request(self, name: str) -> dict[str, Any] | None:
        url = f"{self.url}/_apis/symbol/requests"
        status, body = await self._call("GET", url, params={"requestName": name})
        if status == 404:
            return None
        if status != 200:
            self._raise_for("GET", url, status, body)
        result: dict[str, Any] = body
        return result

    async def post_entries(self, request_id: str, entries: list[dict[str, Any]]) -> list[dict[str, Any]]:
        body = await self._json(
            "POST",
            f"requests/{request_id}/debugentries",
            json={"createBehavior": "throwIfExists", "debugEntries": entries},
            expect=(200, 201),  # the spec's example answers 201; clients accept both
        )
        value: list[dict[str, Any]] = body["value"]
        return value

    async def upload(self, blob_uri: str, data: AsyncIterator[bytes], size: int) -> None:
        """One PUT of the whole file (not retried here: the body is a stream; the caller re-posts)."""
        await self._send("PUT", blob_uri, data, size)

    async def upload_block(self, blob_uri: str, block_hash: bytes, data: bytes) -> None:
        """One block of a multi-block upload (spec §7); not retried here, the caller retries it."""
        await self._send(
            "POST",
            blob_uri,
            data,
            len(data),
            params={"blockHash": block_hash.hex().upper()},
            headers={"Content-Range": f"bytes */{len(data)}"},
        )

    async def _send(
        self,
        method: str,
        url: str,
        data: AsyncIterator[bytes] | bytes,
        size: int,
        *,
        params: dict[str, str] | None = None,
        headers: dict[str, str] | None = None,
    ) -> None:
        sent = dict(
            self._headers,
            **{"Content-Type": "application/octet-stream", "Content-Length": str(size)},
            **(headers or {}),
        )
        try:
            body_data = io.BytesIO(data) if isinstance(data, bytes) else data  # aiohttp streams a file
            async with self._session.request(
                method, url, data=body_data, params=params, headers=sent, timeout=_TIMEOUT
            ) as response:
                body: Any = await response.json() if response.content_type == "application/json" else None
                if response.status in (200, 201):
                    return
                if response.status >= 500:
                    message, _ = _message(response.status, body, response.reason or "")
                    raise ServerError(f"{method} {url}: {response.status} {message}", status=response.status)
                self._raise_for(method, url, response.status, body)
        except (TimeoutError, aiohttp.ClientError) as exc:
            raise ServerError(f"{method} {url}: {type(exc).__name__}: {exc}") from None

    async def seal(self, request_id: str) -> dict[str, Any]:
        result: dict[str, Any] = await self._json(
            "PATCH", f"requests/{request_id}", json={"status": "sealed"}
        )
        return result
