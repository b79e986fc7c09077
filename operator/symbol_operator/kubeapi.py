"""A small async Kubernetes API client: the handful of calls the reconciler makes besides kopf's watches.

kopf ships no client. The reconciler needs seven calls (list SymbolSources, get/create/patch/delete
one Secret, patch a status subresource, create an Event), so instead of a general client library
this module is an aiohttp session built from kopf's own login functions
(:func:`kopf.login_with_service_account`, then :func:`kopf.login_with_kubeconfig`): the operator
authenticates exactly as kopf does, with no second dependency to keep in step.

Every HTTP and transport error is translated here, once, into :class:`ApiError` and its subclasses;
nothing else in the package catches aiohttp errors. A 401 triggers one fresh login (projected
ServiceAccount tokens rotate) and a single retry.
"""

from __future__ import annotations

import asyncio
import datetime
import json
import socket
from collections.abc import Callable, Mapping
from typing import Any
from urllib.parse import quote

import aiohttp
import kopf

from symbol_operator.models import API_VERSION, GROUP, VERSION

__all__ = [
    "ApiError",
    "Conflict",
    "Forbidden",
    "Gone",
    "Invalid",
    "KubeApi",
    "NotFound",
    "Unauthorized",
    "Unavailable",
    "login",
]

Body = dict[str, Any]
SOURCES = f"/apis/{GROUP}/{VERSION}/namespaces/{{namespace}}/symbolsources"
MERGE_PATCH = "application/merge-patch+json"


class ApiError(Exception):
    """The API server refused a request, or could not be reached."""

    def __init__(self, status: int, reason: str, message: str) -> None:
        super().__init__(f"{status} {reason}: {message}" if status else message)
        self.status = status
        self.reason = reason
        self.message = message


class Unauthorized(ApiError):
    """401: the credentials are not (or no longer) valid."""


class Forbidden(ApiError):
    """403: RBAC denies the request; the message names the verb and resource."""


class NotFound(ApiError):
    """404."""


class Conflict(ApiError):
    """409: the object exists already, or its resourceVersion moved on."""


class Gone(ApiError):
    """410: a list continuation token expired."""


class Invalid(ApiError):
    """422: the object fails validation (schema, CEL)."""


class Unavailable(ApiError):
    """5xx, 429, timeouts and connection errors: worth retrying later."""


_BY_STATUS: dict[int, type[ApiError]] = {
    401: Unauthorized,
    403: Forbidden,
    404: NotFound,
    409: Conflict,
    410: Gone,
    422: Invalid,
    429: Unavailable,
}


def _error(status: int, text: str) -> ApiError:
    """Build the error for a failed response from its Status body (first 512 characters at most: a
    Status message is short, and cutting it limits what an odd server could push into our logs)."""
    reason, message = "", text[:512]
    try:
        body = json.loads(text)
        if isinstance(body, dict):
            reason = str(body.get("reason", ""))
            message = str(body.get("message", message))[:512]
    except ValueError:
        pass
    cls = _BY_STATUS.get(status) or (Unavailable if status >= 500 else ApiError)
    return cls(status, reason, message)


def login() -> kopf.ConnectionInfo:
    """Credentials as kopf finds them: the pod's ServiceAccount, else the kubeconfig."""
    settings = kopf.OperatorSettings()
    info = kopf.login_with_service_account(settings=settings) or kopf.login_with_kubeconfig(settings=settings)
    if info is None:
        raise kopf.LoginError("no ServiceAccount token and no kubeconfig: cannot reach the API server")
    return info


class KubeApi:
    """An authenticated session; create it inside the event loop that uses it, close it at the end."""

    def __init__(
        self, credentials: Callable[[], kopf.ConnectionInfo] = login, *, timeout: float = 30.0
    ) -> None:
        self._credentials = credentials
        self._timeout = aiohttp.ClientTimeout(total=timeout)
        self._session: aiohttp.ClientSession | None = None
        self._server = ""
        self._lock = asyncio.Lock()

    async def _open(self, *, fresh: bool = False) -> aiohttp.ClientSession:
        async with self._lock:
            if self._session is not None and not fresh:
                return self._session
            if self._session is not None:
                await self._session.close()
            info = self._credentials()
            self._server = info.server.rstrip("/")
            self._session = aiohttp.ClientSession(
                connector=aiohttp.TCPConnector(ssl=info.as_ssl_context(), limit=32),
                headers={**info.as_http_headers(), "User-Agent": "symbol-operator"},
                timeout=self._timeout,
                trust_env=info.trust_env,
            )
            return self._session

    async def close(self) -> None:
        async with self._lock:
            if self._session is not None:
                await self._session.close()
                self._session = None

    async def request(
        self,
        method: str,
        path: str,
        *,
        params: Mapping[str, str] | None = None,
        body: Mapping[str, Any] | None = None,
        content_type: str = "application/json",
    ) -> Body:
        """One request; returns the decoded JSON body or raises the matching :class:`ApiError`."""
        data = None if body is None else json.dumps(body).encode()
        headers = {"Content-Type": content_type} if data is not None else {}
        for attempt in (1, 2):
            session = await self._open(fresh=attempt == 2)
            try:
                async with session.request(
                    method, self._server + path, params=params, data=data, headers=headers
                ) as response:
                    text = await response.text()
                    if response.status == 401 and attempt == 1:
                        continue
                    if response.status >= 400:
                        raise _error(response.status, text)
                    decoded = json.loads(text) if text else {}
                    return decoded if isinstance(decoded, dict) else {}
            except (aiohttp.ClientError, TimeoutError, OSError) as exc:
                raise Unavailable(0, type(exc).__name__, f"{method} {path}: {exc!r}") from exc
        raise AssertionError("unreachable")  # pragma: no cover

    async def list_all(self, path: str) -> list[Body]:
        """Every item of a collection, following ``continue`` tokens (500 per page)."""
        items: list[Body] = []
        params = {"limit": "500"}
        while True:
            page = await self.request("GET", path, params=params)
            items.extend(page.get("items") or [])
            token = (page.get("metadata") or {}).get("continue")
            if not token:
                return items
            params = {"limit": "500", "continue": token}

    # ----------------------------------------------------------------------------------------------
    # The calls the reconciler makes.

    async def list_sources(self, namespace: str) -> list[Body]:
        return await self.list_all(SOURCES.format(namespace=quote(namespace)))

    async def patch_source_status(self, namespace: str, name: str, status: Mapping[str, Any]) -> Body:
        path = f"{SOURCES.format(namespace=quote(namespace))}/{quote(name)}/status"
        return await self.request("PATCH", path, body={"status": status}, content_type=MERGE_PATCH)

    async def get_secret(self, namespace: str, name: str) -> Body | None:
        try:
            return await self.request("GET", f"/api/v1/namespaces/{quote(namespace)}/secrets/{quote(name)}")
        except NotFound:
            return None

    async def create_secret(self, namespace: str, body: Mapping[str, Any]) -> Body:
        return await self.request("POST", f"/api/v1/namespaces/{quote(namespace)}/secrets", body=body)

    async def patch_secret(self, namespace: str, name: str, patch: Mapping[str, Any]) -> Body:
        path = f"/api/v1/namespaces/{quote(namespace)}/secrets/{quote(name)}"
        return await self.request("PATCH", path, body=patch, content_type=MERGE_PATCH)

    async def delete_secret(self, namespace: str, name: str, resource_version: str) -> None:
        path = f"/api/v1/namespaces/{quote(namespace)}/secrets/{quote(name)}"
        options = {
            "apiVersion": "v1",
            "kind": "DeleteOptions",
            "preconditions": {"resourceVersion": resource_version},
        }
        await self.request("DELETE", path, body=options)

    async def post_event(
        self, namespace: str, involved: Mapping[str, str], *, type_: str, reason: str, message: str
    ) -> None:
        """A core/v1 Event about a SymbolSource (``involved``: name and uid)."""
        now = datetime.datetime.now(datetime.UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
        body = {
            "apiVersion": "v1",
            "kind": "Event",
            "metadata": {"generateName": f"{involved['name']}.", "namespace": namespace},
            "involvedObject": {
                "apiVersion": API_VERSION,
                "kind": "SymbolSource",
                "namespace": namespace,
                "name": involved["name"],
                "uid": involved["uid"],
            },
            "type": type_,
            "reason": reason,
            "message": message[:1024],
            "source": {"component": "symbol-operator"},
            "reportingComponent": "symbol-operator",
            "reportingInstance": socket.gethostname()[:128],
            "firstTimestamp": now,
            "lastTimestamp": now,
            "count": 1,
        }
        await self.request("POST", f"/api/v1/namespaces/{quote(namespace)}/events", body=body)
