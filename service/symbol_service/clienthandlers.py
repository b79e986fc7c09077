"""``client`` and ``client/{clientType}``: the service hands out its own publish CLI (spec §4 rows 2–3).

``HEAD client`` answers 200 with ``symbol-client-version`` (the task reads 404 as "feature not
enabled"). ``GET client/wheel`` answers the wheel of ``clientwheel``, built once per process on
first use (in a thread) and kept in memory, with an ``ETag`` (``If-None-Match`` → 304). Azure's own
client types ``EXE`` and ``TASK`` are Microsoft's to distribute: 404 ``ClientNotFoundException``;
any other type: 404 ``ClientTypeInvalidException``.
"""

from __future__ import annotations

import asyncio
import functools
import logging

from aiohttp import web

from symbol_service import clientwheel, errors, handlers, routes, tokens

__all__ = ["CLIENT_TYPES", "VERSION_HEADER", "ClientHandlers"]

log = logging.getLogger(__name__)

VERSION_HEADER = "symbol-client-version"
CLIENT_TYPES = ("wheel",)
"""What ``client/{clientType}`` serves, case-insensitively."""
_MICROSOFT_TYPES = ("exe", "task")


@functools.cache
def _build() -> clientwheel.ClientWheel:
    return clientwheel.from_installed()


async def _wheel() -> clientwheel.ClientWheel:
    """The wheel, built once per process (the sources do not change under a running service; two
    first calls at once may both build it, harmlessly), in a thread."""
    try:
        return await asyncio.get_running_loop().run_in_executor(None, _build)
    except LookupError as exc:
        log.warning("cannot hand out the publish client: %s", exc)
        raise errors.ServiceError(
            "ClientNotFoundException", f"The publish client is not available: {exc}."
        ) from None


class ClientHandlers(handlers.ApiBase):
    async def _client_version(
        self, request: web.Request, op: routes.Operation, who: tokens.Principal | None
    ) -> web.StreamResponse:
        wheel = await _wheel()
        return web.Response(status=200, headers={VERSION_HEADER: wheel.version, "ETag": wheel.etag})

    async def _client_download(
        self, request: web.Request, op: routes.Operation, who: tokens.Principal | None
    ) -> web.StreamResponse:
        kind = (op.client_type or "").lower()
        if kind in _MICROSOFT_TYPES:
            raise errors.ServiceError(
                "ClientNotFoundException",
                f"This server does not distribute Microsoft's {op.client_type} client; "
                f"its own publish client is client/{CLIENT_TYPES[0]}.",
            )
        if kind not in CLIENT_TYPES:
            raise errors.ServiceError(
                "ClientTypeInvalidException",
                f"The client type {op.client_type!r} is not known; this server hands out "
                f"{', '.join(CLIENT_TYPES)}.",
            )
        wheel = await _wheel()
        headers = {
            VERSION_HEADER: wheel.version,
            "ETag": wheel.etag,
            "Content-Disposition": f'attachment; filename="{wheel.filename}"',
            "Cache-Control": "no-cache",
        }
        if wheel.etag in [tag.strip() for tag in request.headers.get("If-None-Match", "").split(",")]:
            return web.Response(status=304, headers=headers)
        return web.Response(body=wheel.data, content_type="application/zip", headers=headers)
