"""Cloud sources through the running proxy: a priority list mixing filesystem, http, s3, gcs and
sentry, where the same key exists in two sources (the first in order wins) and a failing source
does not hide the others; and every fixture file fetched through the proxy from an S3 prefix whose
keys were written lowercased, with ``casing: lowercase``."""

from __future__ import annotations

import contextlib
import urllib.error
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from aiohttp.test_utils import TestServer

from tests.conftest import StartProxy
from tests.sidecar.backends.conftest import S3World
from tests.support import shared
from tests.support.objectstores import FakeGcs
from tests.support.sentryserver import SentryServer
from tests.support.upstream import UpstreamStore

PDB = next(o for o in shared.keyed_objects() if o.entry["path"] == "pdb/crash.pdb")
KEY = PDB.keys["symsrv"][0]


def s3_source(world: S3World, **extra: Any) -> dict[str, Any]:
    return {
        "id": "s3",
        "type": "s3",
        "bucket": "symbols",
        "region": ["us-east-1", world.server.endpoint],
        "access_key": world.admin[0],
        "secret_key": world.admin[1],
        "layout": {"type": "symstore"},
        **extra,
    }


GCS_COPY = PDB.data[:-16] + b"gcs-copy-padding"


@pytest.fixture
def gcs(fake_gcs: FakeGcs, monkeypatch: pytest.MonkeyPatch) -> FakeGcs:
    """fake-gcs-server holding a *different* file under the PDB's key, reached through
    ``STORAGE_EMULATOR_HOST`` (so no token is fetched)."""
    with contextlib.suppress(urllib.error.HTTPError):  # 409: made by an earlier test of the session
        fake_gcs.create_bucket("mixed")
    fake_gcs.upload("mixed", KEY, GCS_COPY)
    monkeypatch.setenv("STORAGE_EMULATOR_HOST", fake_gcs.endpoint)
    return fake_gcs


@pytest.fixture
async def sentry(aiohttp_server: Callable[..., Awaitable[TestServer]]) -> tuple[SentryServer, str]:
    store = SentryServer(token="sntrys_mixed")
    store.add("pdb", PDB.obj["debug_id"], None, "crash.pdb", PDB.data)
    server = await aiohttp_server(store.app)
    return store, str(server.make_url("/api/0/projects/acme/native/files/dsyms/"))


async def get(http: aiohttp.ClientSession, proxy: TestServer, path: str) -> tuple[int, bytes]:
    async with http.get(proxy.make_url(path)) as response:
        return response.status, await response.read()


async def test_the_first_source_in_order_wins_and_failing_sources_hide_nothing(
    s3_world: S3World,
    gcs: FakeGcs,
    sentry: tuple[SentryServer, str],
    upstream: tuple[UpstreamStore, str],
    start_proxy: StartProxy,
    http: aiohttp.ClientSession,
    tmp_path: Path,
) -> None:
    dead, dead_url = upstream
    dead.faults[KEY] = "500"
    dead.faults[KEY[:-1] + "_"] = "500"
    empty = tmp_path / "empty"
    empty.mkdir()
    sentry_store, sentry_url = sentry
    filesystem = {"id": "fs", "type": "filesystem", "path": str(empty), "layout": {"type": "symstore"}}
    http_dead = {"id": "dead", "type": "http", "url": dead_url, "layout": {"type": "symstore"}}
    gcs_source = {"id": "gcs", "type": "gcs", "bucket": "mixed", "layout": {"type": "symstore"}}
    sentry_source = {"id": "sentry", "type": "sentry", "url": sentry_url, "token": "sntrys_mixed"}
    retries = {"retries": 0}

    proxy = await start_proxy(
        [filesystem, http_dead, s3_source(s3_world), gcs_source, sentry_source], upstream=retries
    )
    assert await get(http, proxy, f"/symbols/{KEY}") == (200, PDB.data)
    assert dead.requests[KEY] == 1  # the dead source was asked, and did not hide the others

    proxy = await start_proxy(
        [filesystem, http_dead, gcs_source, s3_source(s3_world), sentry_source], upstream=retries
    )
    assert await get(http, proxy, f"/symbols/{KEY}") == (200, GCS_COPY)

    proxy = await start_proxy(
        [http_dead, s3_source(s3_world, prefix="nothing-here"), sentry_source], upstream=retries
    )
    assert await get(http, proxy, f"/symbols/{KEY}") == (200, PDB.data)
    assert sentry_store.listings and sentry_store.downloads, "the Sentry source was searched and used"


async def test_fixture_files_come_through_the_proxy_from_a_lowercased_s3_prefix(
    s3_world: S3World, start_proxy: StartProxy, http: aiohttp.ClientSession
) -> None:
    proxy = await start_proxy(
        [
            s3_source(
                s3_world,
                bucket="team-symbols",
                prefix="/team-a/",
                layout={"type": "symstore", "casing": "lowercase"},
            )
        ]
    )
    served = 0
    for stored in s3_world.files:
        status, body = await get(http, proxy, f"/symbols/{stored.symstore_key}")
        assert (status, body == stored.data) == (200, True), stored.symstore_key
        served += 1
    assert served == len(s3_world.files) > 10
    status, _ = await get(http, proxy, "/symbols/missing.pdb/497B72F6390A44FC878E5A2D63B6CC4B1/missing.pdb")
    assert status == 404
