"""The aiohttp application of the publishing service.

One catch-all route hands every API call to ``routes.resolve`` (so case-insensitive matching and
the older route forms live in one pure table), then authenticates: an operation that needs a scope
and comes without a known token gets 401 with ``WWW-Authenticate: Basic realm=…`` (debuggers ask for
a PAT only on that challenge), a known token without the scope gets 403. Every ``ServiceError``
becomes Azure's WrappedException body with its status; anything else is logged and answered 500
with a body that names no detail. ``/healthz``, ``/readyz`` and ``/metrics`` are served beside the
API without a token (they say nothing about the store's content).

The service keeps no state of its own between calls: requests live in the ``RequestStore``, blobs
and manifests in the store, so replicas can share one address once the store of requests is the
Kubernetes API (see ``requeststore``).
"""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator

from aiohttp import web
from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, generate_latest

from symbol_proxy.backends import base
from symbol_service import apiversion, blobs, errors, manifests, routes, tokens
from symbol_service.api import Api
from symbol_service.config import Limits
from symbol_service.handlers import json_response
from symbol_service.metrics import Metrics
from symbol_service.requeststore import RequestStore

__all__ = ["API", "create_app"]

log = logging.getLogger(__name__)

API = web.AppKey("api", Api)
TOKENS = web.AppKey("tokens", tokens.Authenticator)
BACKEND = web.AppKey("backend", base.WritableBackend)

MARKER = f"{blobs.PREFIX}/store.json"
REALM = "symbol-service"
CHALLENGE = f'Basic realm="{REALM}", Bearer realm="{REALM}"'


def _error_response(error: errors.ServiceError) -> web.Response:
    response = json_response(errors.wrapped_exception(error), status=error.status)
    response.headers["X-TFS-ServiceError"] = error.header()
    if error.status == 401:
        response.headers["WWW-Authenticate"] = CHALLENGE
    return response


async def _dispatch(request: web.Request) -> web.StreamResponse:
    api = request.app[API]
    label = "unrouted"
    status = 500
    try:
        operation = routes.resolve(request.method, request.path, request.query)
        label = operation.op.value
        principal = request.app[TOKENS].authenticate(tokens.credential(request.headers.get("Authorization")))
        scope = operation.scope
        if scope is not None and principal is None:
            raise errors.ServiceError("NotAuthorizedException", "A personal access token is required.")
        if scope is not None and principal is not None and not principal.allows(scope):
            raise errors.ServiceError("AccessDeniedException", f"The token lacks the scope {scope.value}.")
        # Every version gets the same answers; the version is read so a log can tell old clients apart.
        version = apiversion.api_version(request.query.get("api-version"), request.headers.get("Accept"))
        log.debug("%s %s (api-version %s)", request.method, label, version)
        response = await api.handle(request, operation, principal)
        status = response.status
        return response
    except errors.ServiceError as exc:
        status = exc.status
        return _error_response(exc)
    except base.BackendError as exc:
        log.warning("store failure in %s: %s", label, exc)
        status = 503
        return _error_response(
            errors.ServiceError("ServiceUnavailableException", "The symbol store failed; retry.")
        )
    except Exception:
        log.exception("unexpected failure in %s", label)
        return _error_response(
            errors.ServiceError("InternalServerErrorException", "The server failed unexpectedly; retry.")
        )
    finally:
        api.metrics.requests.labels(label, str(status)).inc()


async def _healthz(request: web.Request) -> web.Response:
    return web.Response(text="ok\n")


async def _readyz(request: web.Request) -> web.Response:
    """Ready when the store holds our marker object, written on first use: a store that is gone,
    unreachable, read-only or the wrong bucket makes the replica unready instead of failing calls."""
    backend = request.app[BACKEND]
    try:
        try:
            await backend.head(MARKER)
        except base.NotFound:

            async def body() -> AsyncIterator[bytes]:
                yield b'{"kind": "symbol-service publish store"}\n'

            try:
                await backend.create(MARKER, body())
            except base.AlreadyExists:
                pass
    except base.BackendError as exc:
        return web.Response(status=503, text=f"store not usable: {type(exc).__name__}\n")
    return web.Response(text="ready\n")


async def _metrics(request: web.Request) -> web.Response:
    body = generate_latest(request.app[API].metrics.registry)
    return web.Response(body=body, headers={"Content-Type": CONTENT_TYPE_LATEST})


def create_app(
    backend: base.WritableBackend,
    requests: RequestStore,
    token_table: tokens.Authenticator,
    *,
    limits: Limits | None = None,
    public_url: str | None = None,
    registry: CollectorRegistry | None = None,
) -> web.Application:
    """The service over ``backend`` (the publish store) and ``requests`` (the request records)."""
    limits = limits or Limits()
    # aiohttp's own cap applies to request.read()/json(); we stream bodies and check limits ourselves.
    app = web.Application(client_max_size=limits.max_json_body)
    app[API] = Api(
        requests=requests,
        blob_store=blobs.BlobStore(backend),
        manifest_store=manifests.ManifestStore(backend),
        limits=limits,
        metrics=Metrics(registry or CollectorRegistry()),
        public_url=public_url,
    )
    app[TOKENS] = token_table
    app[BACKEND] = backend

    async def close_backend(app: web.Application) -> AsyncIterator[None]:
        yield
        await backend.aclose()

    app.cleanup_ctx.append(close_backend)
    app.router.add_get("/healthz", _healthz)
    app.router.add_get("/readyz", _readyz)
    app.router.add_get("/metrics", _metrics)
    app.router.add_route("*", "/{tail:.*}", _dispatch)
    return app
