"""Kubernetes API access through the official client (the ``kubernetes`` package), off the event loop.

This is the only module that imports ``kubernetes``; the reconciler, and later the admission webhook
and the publishing service, use it through :class:`KubeApi`:

- :meth:`KubeApi.call` runs any function of a ``kubernetes.client.ApiClient`` (build the typed API
  objects, ``CoreV1Api(api_client)``, inside it) in a bounded thread pool, and translates every
  :class:`kubernetes.client.ApiException` and transport error into :class:`ApiError` and its
  subclasses. Nothing else in the package catches the client's exceptions.
- The named methods below are the seven calls the reconciler makes; they are small wrappers of
  :meth:`call` and return plain JSON bodies (``dict``), which is what the reconciler compares.

**Configuration** comes from :func:`load_configuration`: the pod's ServiceAccount when in a cluster,
else the kubeconfig (``$KUBECONFIG`` or ``~/.kube/config``, exec plugins included). In a cluster the
client re-reads the projected token file once a minute (``refresh_api_key_hook``), so rotated
ServiceAccount tokens are picked up; a 401 additionally drops the client, loads the configuration
again and retries the request once, which covers a kubeconfig whose token or certificate changed.

**Why threads.** The client is synchronous (urllib3). Each call runs in a ``ThreadPoolExecutor`` of
``workers`` threads (8 by default) whose urllib3 pool has as many connections, so at most that many
requests are in flight and the event loop, where kopf's watches run, never blocks on the network.
The measurement that backs this choice is in ``docs/operator.md`` and ``docs/benchmarks.md``.

**Why plain bodies for reads.** Responses the reconciler reads are decoded with ``json.loads`` from
the raw response (``_preload_content=False``) instead of the client's models: the reconciler compares
bodies with rendered ones, and the model round trip (attribute objects, datetimes) costs time on every
Secret read without making that comparison safer. Bodies we send use the typed models where they add
checking: a Secret to create, delete preconditions and Events (the client's models are pydantic
models, so a misspelt field fails before the request).
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import dataclasses
import datetime
import functools
import json
import os
import socket
import threading
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any, TypeVar

import urllib3
from kubernetes import client, config
from kubernetes.config import incluster_config

from symbol_operator.models import API_VERSION, GROUP, VERSION

__all__ = [
    "ApiError",
    "Conflict",
    "Connection",
    "Forbidden",
    "Gone",
    "Invalid",
    "KubeApi",
    "LoginError",
    "NotFound",
    "Unauthorized",
    "Unavailable",
    "connection",
    "load_configuration",
]

Body = dict[str, Any]
T = TypeVar("T")
PLURAL = "symbolsources"
REQUESTS = "symbolrequests"
MERGE_PATCH = "application/merge-patch+json"
PAGE_SIZE = 500
"""Items per list page: large enough that a namespace of a thousand sources is two requests."""


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


class LoginError(ApiError):
    """Neither a ServiceAccount nor a kubeconfig gives us a way to reach the API server."""


_BY_STATUS: dict[int, type[ApiError]] = {
    401: Unauthorized,
    403: Forbidden,
    404: NotFound,
    409: Conflict,
    410: Gone,
    422: Invalid,
    429: Unavailable,
}


def _from_status(status: int, text: str) -> ApiError:
    """The error for a failed response, from its Status body (first 512 characters at most: a Status
    message is short, and cutting it limits what an odd server could push into our logs)."""
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


def translate(exc: BaseException) -> ApiError | None:
    """Our error for one of the client's exceptions, or ``None`` when it is none of them."""
    if isinstance(exc, client.ApiException):
        body = exc.body.decode("utf-8", "replace") if isinstance(exc.body, bytes) else str(exc.body or "")
        return _from_status(int(exc.status or 0), body or str(exc.reason or ""))
    if isinstance(exc, urllib3.exceptions.HTTPError | OSError | TimeoutError):
        # Connection refused, TLS failures, read timeouts (urllib3 wraps them in MaxRetryError).
        return Unavailable(0, type(exc).__name__, str(exc)[:512])
    return None


SERVICE_ACCOUNT = Path("/var/run/secrets/kubernetes.io/serviceaccount")
"""Where the kubelet mounts the pod's projected ServiceAccount token and the cluster's CA."""


def load_configuration(service_account: Path = SERVICE_ACCOUNT) -> client.Configuration:
    """The client configuration: the pod's ServiceAccount in a cluster, else the kubeconfig.

    In a cluster (``KUBERNETES_SERVICE_HOST`` set and a token mounted) the client re-reads the token
    file at most a minute after it last did, so a rotated projected token is used without a restart.
    Blocking (reads files, may run a kubeconfig exec plugin): :class:`KubeApi` calls it in its threads.
    """
    configuration = client.Configuration()
    if os.environ.get("KUBERNETES_SERVICE_HOST") and (service_account / "token").is_file():
        loader = incluster_config.InClusterConfigLoader(  # type: ignore[no-untyped-call]
            token_filename=str(service_account / "token"), cert_filename=str(service_account / "ca.crt")
        )
        try:
            loader.load_and_set(configuration)  # type: ignore[no-untyped-call]
        except config.ConfigException as exc:
            raise LoginError(0, "BadServiceAccount", f"the ServiceAccount mount is unusable: {exc}") from None
        return configuration
    try:
        # $KUBECONFIG is read now: the client reads it once, when it is imported.
        config.load_kube_config(  # type: ignore[no-untyped-call]
            config_file=os.environ.get("KUBECONFIG") or None, client_configuration=configuration
        )
    except (config.ConfigException, OSError) as exc:
        raise LoginError(
            0, "NoCredentials", f"no ServiceAccount token and no usable kubeconfig: {exc}"
        ) from None
    return configuration


@dataclasses.dataclass(frozen=True)
class Connection:
    """Where and how to reach the API server, for clients other than ours (kopf's watches)."""

    server: str
    ca_path: str | None
    insecure: bool
    scheme: str | None
    token: str | None = dataclasses.field(repr=False)
    certificate_path: str | None
    private_key_path: str | None


def connection(service_account: Path = SERVICE_ACCOUNT) -> Connection:
    """The configuration of :func:`load_configuration`, spelled out (kopf's login handler uses it, so
    kopf and this module find the same credentials; kopf's own use of the client would read
    ``$KUBECONFIG`` only as it was when the client was first imported)."""
    configuration = load_configuration(service_account)
    header = configuration.get_api_key_with_prefix("BearerToken") or configuration.get_api_key_with_prefix(
        "authorization"
    )
    scheme, _, token = (header or "").rpartition(" ")
    return Connection(
        server=configuration.host,
        ca_path=configuration.ssl_ca_cert,
        insecure=not configuration.verify_ssl,
        scheme=scheme or None,
        token=token or None,
        certificate_path=configuration.cert_file,
        private_key_path=configuration.key_file,
    )


class KubeApi:
    """The API server through the official client, with calls run in a bounded thread pool.

    Create it anywhere; it connects on first use. ``close()`` releases the threads and connections.
    """

    def __init__(
        self,
        configuration: Callable[[], client.Configuration] = load_configuration,
        *,
        timeout: float = 30.0,
        workers: int = 8,
    ) -> None:
        self._configuration = configuration
        self.timeout = timeout
        """Seconds per request (connect and read), passed as ``_request_timeout`` by the calls here."""
        self.workers = workers
        self._executor = concurrent.futures.ThreadPoolExecutor(workers, thread_name_prefix="kubeapi")
        self._client: client.ApiClient | None = None
        self._lock = threading.Lock()

    def _api_client(self, stale: client.ApiClient | None = None) -> client.ApiClient:
        """The shared ApiClient; a new one (fresh configuration) when ``stale`` is still current."""
        with self._lock:
            if self._client is not None and self._client is not stale:
                return self._client
            configuration = self._configuration()
            configuration.connection_pool_maxsize = self.workers
            old, self._client = self._client, client.ApiClient(configuration)
            self._client.user_agent = "symbol-operator"
        if old is not None:
            old.close()  # type: ignore[no-untyped-call]
        return self._client

    def _run(self, fn: Callable[[client.ApiClient], T]) -> T:
        """In a worker thread: one call, retried once with a fresh configuration after a 401."""
        api_client = self._api_client()
        try:
            return fn(api_client)
        except client.ApiException as exc:
            if exc.status != 401:
                raise
        return fn(self._api_client(stale=api_client))

    async def call(self, fn: Callable[[client.ApiClient], T]) -> T:
        """Run ``fn(api_client)`` in the pool; the client's errors arrive as :class:`ApiError`."""
        loop = asyncio.get_running_loop()
        try:
            return await loop.run_in_executor(self._executor, self._run, fn)
        except ApiError:
            raise
        except Exception as exc:
            error = translate(exc)
            if error is None:
                raise
            raise error from exc

    async def close(self) -> None:
        """Wait for running calls, then close the connections (in a thread: both may block)."""
        loop = asyncio.get_running_loop()
        await loop.run_in_executor(None, functools.partial(self._executor.shutdown, wait=True))
        with self._lock:
            old, self._client = self._client, None
        if old is not None:
            old.close()  # type: ignore[no-untyped-call]

    # ----------------------------------------------------------------------------------------------
    # The calls the reconciler makes.

    @staticmethod
    def _body(response: object) -> Body:
        """The JSON body of a raw response (the client's stubs name the model type even then)."""
        if not isinstance(response, urllib3.BaseHTTPResponse):
            raise TypeError(f"expected a raw response, got {type(response).__name__}")
        decoded = json.loads(response.data) if response.data else {}
        return decoded if isinstance(decoded, dict) else {}

    async def list_sources(self, namespace: str) -> list[Body]:
        """Every SymbolSource of a namespace, following ``continue`` tokens."""
        return await self._list_all(namespace, PLURAL)

    async def _list_all(self, namespace: str, plural: str, label_selector: str | None = None) -> list[Body]:
        """Every custom object of one kind in a namespace (optionally by labels), page by page."""

        def list_all(api_client: client.ApiClient) -> list[Body]:
            api = client.CustomObjectsApi(api_client)
            items: list[Body] = []
            token: str | None = None
            while True:
                page = self._body(
                    api.list_namespaced_custom_object(
                        GROUP,
                        VERSION,
                        namespace,
                        plural,
                        label_selector=label_selector,
                        limit=PAGE_SIZE,
                        _preload_content=False,
                        _request_timeout=self.timeout,
                        _continue=token,
                    )
                )
                items.extend(page.get("items") or [])
                token = (page.get("metadata") or {}).get("continue")
                if not token:
                    return items

        return await self.call(list_all)

    async def patch_source(self, namespace: str, name: str, patch: Mapping[str, Any]) -> Body:
        """A JSON merge patch of a SymbolSource itself (the lifecycle's publication annotation)."""
        return await self.call(
            lambda api_client: self._body(
                client.CustomObjectsApi(api_client).patch_namespaced_custom_object(
                    GROUP,
                    VERSION,
                    namespace,
                    PLURAL,
                    name,
                    dict(patch),
                    _content_type=MERGE_PATCH,
                    _preload_content=False,
                    _request_timeout=self.timeout,
                )
            )
        )

    async def patch_source_status(self, namespace: str, name: str, status: Mapping[str, Any]) -> Body:
        return await self.call(
            lambda api_client: self._body(
                client.CustomObjectsApi(api_client).patch_namespaced_custom_object_status(
                    GROUP,
                    VERSION,
                    namespace,
                    PLURAL,
                    name,
                    {"status": dict(status)},
                    _content_type=MERGE_PATCH,
                    _preload_content=False,
                    _request_timeout=self.timeout,
                )
            )
        )

    async def get_secret(self, namespace: str, name: str) -> Body | None:
        try:
            return await self.call(
                lambda api_client: self._body(
                    client.CoreV1Api(api_client).read_namespaced_secret(
                        name, namespace, _preload_content=False, _request_timeout=self.timeout
                    )
                )
            )
        except NotFound:
            return None

    async def create_secret(self, namespace: str, body: Mapping[str, Any]) -> Body:
        return await self.call(
            lambda api_client: self._body(
                client.CoreV1Api(api_client).create_namespaced_secret(
                    namespace,
                    client.V1Secret.model_validate(dict(body)),
                    _preload_content=False,
                    _request_timeout=self.timeout,
                )
            )
        )

    async def patch_secret(self, namespace: str, name: str, patch: Mapping[str, Any]) -> Body:
        return await self.call(
            lambda api_client: self._body(
                client.CoreV1Api(api_client).patch_namespaced_secret(
                    name,
                    namespace,
                    dict(patch),
                    _content_type=MERGE_PATCH,
                    _preload_content=False,
                    _request_timeout=self.timeout,
                )
            )
        )

    async def delete_secret(self, namespace: str, name: str, resource_version: str) -> None:
        precondition = client.V1Preconditions(resource_version=resource_version)
        options = client.V1DeleteOptions(preconditions=precondition)
        await self.call(
            lambda api_client: client.CoreV1Api(api_client).delete_namespaced_secret(
                name, namespace, body=options, _preload_content=False, _request_timeout=self.timeout
            )
        )

    async def post_event(
        self,
        namespace: str,
        involved: Mapping[str, str],
        *,
        type_: str,
        reason: str,
        message: str,
        kind: str = "SymbolSource",
    ) -> None:
        """A core/v1 Event about a SymbolSource, or another ``kind`` of ours (``involved``: name and
        uid)."""
        now = datetime.datetime.now(datetime.UTC).replace(microsecond=0)
        event = client.CoreV1Event(
            metadata=client.V1ObjectMeta(generate_name=f"{involved['name']}.", namespace=namespace),
            involved_object=client.V1ObjectReference(
                api_version=API_VERSION,
                kind=kind,
                namespace=namespace,
                name=involved["name"],
                uid=involved["uid"],
            ),
            type=type_,
            reason=reason,
            message=message[:1024],
            source=client.V1EventSource(component="symbol-operator"),
            reporting_component="symbol-operator",
            reporting_instance=socket.gethostname()[:128],
            first_timestamp=now,
            last_timestamp=now,
            count=1,
        )
        await self.call(
            lambda api_client: client.CoreV1Api(api_client).create_namespaced_event(
                namespace, event, _preload_content=False, _request_timeout=self.timeout
            )
        )

    # ----------------------------------------------------------------------------------------------
    # SymbolRequests: the publishing service's record of each request (its RequestStore) and the
    # operator's lifecycle handlers. Bodies are plain JSON; a body to replace carries its
    # metadata.resourceVersion, so the API server refuses a stale one with 409 (Conflict).

    async def list_requests(self, namespace: str, label_selector: str | None = None) -> list[Body]:
        return await self._list_all(namespace, REQUESTS, label_selector)

    async def get_request(self, namespace: str, name: str) -> Body | None:
        try:
            return await self.call(
                lambda api_client: self._body(
                    client.CustomObjectsApi(api_client).get_namespaced_custom_object(
                        GROUP,
                        VERSION,
                        namespace,
                        REQUESTS,
                        name,
                        _preload_content=False,
                        _request_timeout=self.timeout,
                    )
                )
            )
        except NotFound:
            return None

    async def create_request(self, namespace: str, body: Mapping[str, Any]) -> Body:
        """Create a SymbolRequest; :class:`Conflict` when its metadata.name is taken."""
        return await self.call(
            lambda api_client: self._body(
                client.CustomObjectsApi(api_client).create_namespaced_custom_object(
                    GROUP,
                    VERSION,
                    namespace,
                    REQUESTS,
                    dict(body),
                    _preload_content=False,
                    _request_timeout=self.timeout,
                )
            )
        )

    async def replace_request(
        self, namespace: str, name: str, body: Mapping[str, Any], *, status: bool = False
    ) -> Body:
        """PUT the object (or, with ``status``, its status subresource); :class:`Conflict` when the
        body's resourceVersion is no longer current."""

        def replace(api_client: client.ApiClient) -> Body:
            api = client.CustomObjectsApi(api_client)
            put = (
                api.replace_namespaced_custom_object_status
                if status
                else api.replace_namespaced_custom_object
            )
            return self._body(
                put(
                    GROUP,
                    VERSION,
                    namespace,
                    REQUESTS,
                    name,
                    dict(body),
                    _preload_content=False,
                    _request_timeout=self.timeout,
                )
            )

        return await self.call(replace)

    async def patch_request(
        self, namespace: str, name: str, patch: Mapping[str, Any], *, status: bool = False
    ) -> Body:
        """A JSON merge patch of the object (or of its status subresource)."""

        def patch_it(api_client: client.ApiClient) -> Body:
            api = client.CustomObjectsApi(api_client)
            call = api.patch_namespaced_custom_object_status if status else api.patch_namespaced_custom_object
            return self._body(
                call(
                    GROUP,
                    VERSION,
                    namespace,
                    REQUESTS,
                    name,
                    dict(patch),
                    _content_type=MERGE_PATCH,
                    _preload_content=False,
                    _request_timeout=self.timeout,
                )
            )

        return await self.call(patch_it)

    async def delete_request(self, namespace: str, name: str, uid: str) -> None:
        """Delete the SymbolRequest if it is still the object ``uid`` (absent is not an error)."""
        options = client.V1DeleteOptions(preconditions=client.V1Preconditions(uid=uid))
        try:
            await self.call(
                lambda api_client: client.CustomObjectsApi(api_client).delete_namespaced_custom_object(
                    GROUP,
                    VERSION,
                    namespace,
                    REQUESTS,
                    name,
                    body=options,
                    _preload_content=False,
                    _request_timeout=self.timeout,
                )
            )
        except NotFound:
            return
