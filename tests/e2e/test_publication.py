"""Publish-to-visible in the proxy: a source's ``publication`` generation (rendered by the operator
after it publishes into the store) that changes on a reload drops the cached 404s, so a file just
published is served at once instead of after ``negative_ttl``; a reload that leaves it unchanged
keeps them (the cache still protects the store from repeated misses)."""

from __future__ import annotations

import json
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import aiohttp
from aiohttp.test_utils import TestServer
from prometheus_client import CollectorRegistry

from symbol_proxy.config import load_text
from symbol_proxy.server.app import create_app, reload_config
from tests.conftest import app_of
from tests.support.shared import keyed_objects

PDB = next(o for o in keyed_objects() if o.filetype.value == "pdb")
KEY = PDB.keys["symsrv"][0]


async def test_a_new_publication_drops_cached_misses(
    tmp_path: Path, aiohttp_server: Callable[..., Awaitable[TestServer]], http: aiohttp.ClientSession
) -> None:
    store = tmp_path / "store"
    store.mkdir()
    config_path = tmp_path / "proxy.yaml"

    def write(publication: str | None) -> str:
        source: dict[str, Any] = {"id": "published", "type": "filesystem", "path": str(store)}
        source["layout"] = {"type": "symstore"}
        if publication is not None:
            source["publication"] = publication
        text = json.dumps(
            {
                "cache": {"dir": str(tmp_path / "cache"), "negative_ttl": 3600},
                "reload": {"poll_interval": 0},
                "sources": [source],
            }
        )
        config_path.write_text(text)
        return text

    server = await aiohttp_server(
        create_app(load_text(write(None)), registry=CollectorRegistry(), config_path=config_path)
    )

    async def fetch() -> tuple[int, bytes]:
        async with http.get(server.make_url(f"/symbols/{KEY}")) as response:
            return response.status, await response.read()

    assert (await fetch())[0] == 404
    (store / KEY).parent.mkdir(parents=True)
    (store / KEY).write_bytes(PDB.data)
    assert (await fetch())[0] == 404  # the miss is cached
    write(None)
    assert await reload_config(app_of(server))
    assert (await fetch())[0] == 404  # a reload alone keeps it
    write("20261206T101500.000000Z-abc")
    assert await reload_config(app_of(server))
    assert await fetch() == (200, PDB.data)
