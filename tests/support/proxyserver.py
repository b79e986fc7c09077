"""aiohttp's ``TestServer`` serving through the proxy's own site, so tests see what production does:
every connection starts on the lean path (``symbol_proxy.server.fastpath``) and is handed to
aiohttp's full routing for whatever the lean path does not answer."""

from __future__ import annotations

import asyncio
from typing import Any

from aiohttp.test_utils import TestServer
from yarl import URL

from symbol_proxy.server.fastpath import FastSite

__all__ = ["ProxyTestServer"]


class ProxyTestServer(TestServer):
    async def start_server(self, loop: asyncio.AbstractEventLoop | None = None, **kwargs: Any) -> None:
        if self.runner:
            return
        self.runner = await self._make_runner(handler_cancellation=True, **kwargs)
        await self.runner.setup()
        site = FastSite(self.runner, self.host, self.port or 0)
        await site.start()
        self.port = site.port
        self.scheme = "http"
        self._root = URL(f"http://{self.host}:{self.port}")
