"""A real HTTP symbol store for tests: serves files from a dict, counts requests, injects faults.

Faults are set per location: ``"500"`` answers 500, ``"timeout"`` never answers, ``"reset"`` closes
the connection after the headers, ``"truncate"`` announces the full length and sends half,
``"html"`` answers 200 with an HTML page, ``"slow"`` sends the body in small delayed pieces.
"""

from __future__ import annotations

import asyncio
import collections
from typing import Literal

from aiohttp import web

Fault = Literal["500", "timeout", "reset", "truncate", "html", "slow", "403", "401"]


class UpstreamStore:
    def __init__(self) -> None:
        self.files: dict[str, bytes] = {}
        self.faults: dict[str, Fault] = {}
        self.requests: collections.Counter[str] = collections.Counter()
        self.headers_seen: list[dict[str, str]] = []
        self.release = asyncio.Event()
        """Set to let requests held by the ``hold`` option through."""
        self.hold = False
        self.app = web.Application()
        self.app.router.add_get("/{path:.*}", self.handle)

    def put(self, location: str, data: bytes) -> None:
        self.files[location.lstrip("/")] = data

    @property
    def total_requests(self) -> int:
        return sum(self.requests.values())

    async def handle(self, request: web.Request) -> web.StreamResponse:
        location = request.match_info["path"]
        self.requests[location] += 1
        self.headers_seen.append(dict(request.headers))
        if self.hold:
            await self.release.wait()
        fault = self.faults.get(location)
        if fault == "timeout":
            await asyncio.sleep(3600)
        if fault in ("500", "403", "401"):
            return web.Response(status=int(fault), text="failure")
        if fault == "html":
            return web.Response(
                status=200, text="<html><body>Sign in</body></html>", content_type="text/html"
            )
        data = self.files.get(location)
        if data is None:
            return web.Response(status=404, text="not found")
        response = web.StreamResponse(status=200)
        response.content_length = len(data)
        response.content_type = "application/octet-stream"
        await response.prepare(request)
        if fault == "reset":
            assert request.transport is not None
            request.transport.abort()
            return response
        if fault == "truncate":
            await response.write(data[: len(data) // 2])
            assert request.transport is not None
            request.transport.close()
            return response
        if fault == "slow":
            for start in range(0, len(data), 4096):
                await response.write(data[start : start + 4096])
                await asyncio.sleep(0.01)
        else:
            await response.write(data)
        await response.write_eof()
        return response
