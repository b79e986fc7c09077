"""Fixtures shared by every test folder: a real proxy on 127.0.0.1 and real upstream stores."""

from __future__ import annotations

import itertools
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path
from typing import Any

import aiohttp
import pytest
import yaml
from aiohttp import web
from aiohttp.test_utils import TestServer
from prometheus_client import CollectorRegistry

from symbol_proxy.config import load_text
from tests.support.proxyserver import ProxyTestServer
from tests.support.upstream import UpstreamStore

StartProxy = Callable[..., Awaitable[TestServer]]


@pytest.fixture
async def start_proxy(tmp_path: Path) -> AsyncIterator[StartProxy]:
    """Start a real proxy: ``await start_proxy(sources, cache={...}, ...)`` returns its server, whose
    connections start on the lean path as in production (``server/fastpath.py``)."""
    counter = itertools.count()
    started: list[ProxyTestServer] = []

    async def start(sources: list[dict[str, Any]], **settings: Any) -> TestServer:
        n = next(counter)
        document: dict[str, Any] = {"cache": {"dir": str(tmp_path / f"cache-{n}")}, "sources": sources}
        for key, value in settings.items():
            if isinstance(value, dict) and isinstance(document.get(key), dict):
                document[key].update(value)
            else:
                document[key] = value
        from symbol_proxy.server.app import create_app

        config = load_text(yaml.safe_dump(document))
        app = create_app(config, registry=CollectorRegistry())
        server = ProxyTestServer(app)
        await server.start_server()
        started.append(server)
        return server

    yield start
    for server in reversed(started):
        await server.close()


@pytest.fixture
async def upstream(aiohttp_server: Callable[..., Awaitable[TestServer]]) -> tuple[UpstreamStore, str]:
    """A real HTTP store on 127.0.0.1; returns the store and its base URL."""
    store = UpstreamStore()
    server: TestServer = await aiohttp_server(store.app)
    return store, str(server.make_url("/"))


@pytest.fixture
async def http() -> AsyncIterator[aiohttp.ClientSession]:
    """A plain client that does not decode bodies, as a debugger's HTTP stack would see them."""
    async with aiohttp.ClientSession(auto_decompress=False) as session:
        yield session


def app_of(server: TestServer) -> web.Application:
    return server.app  # type: ignore[return-value]
