"""The cluster cache tier with real proxies: sidecars whose first source is a central proxy (an ``http``
source in the ``symstore`` layout, as the chart's ``clusterCache`` and its opt-in SymbolSource render it)
and whose next source is the real upstream.

Covered: many cold sidecars whose only source is the central cache, asking for one file at once, cause
one upstream download; a sidecar that also lists the upstream still gets files when the central cache is
down. (With both sources listed every sidecar also probes the upstream on a miss, because the proxy
asks all sources at once and keeps their priority only for the answer; see docs/helm.md.)"""

from __future__ import annotations

import asyncio

import aiohttp

from tests.conftest import StartProxy
from tests.support.shared import keyed_objects
from tests.support.upstream import UpstreamStore

PDB = next(o for o in keyed_objects() if o.filetype.value == "pdb")
PDB_KEY = PDB.keys["symsrv"][0]
SIDECARS = 12


def sources(central: str, upstream: str) -> list[dict[str, object]]:
    return [
        {"id": "cluster-cache", "type": "http", "url": f"{central}symbols/", "layout": {"type": "symstore"}},
        {"id": "upstream", "type": "http", "url": upstream, "layout": {"type": "symstore"}},
    ]


async def get(http: aiohttp.ClientSession, url: object) -> tuple[int, bytes]:
    async with http.get(str(url)) as response:
        return response.status, await response.read()


async def test_cold_sidecars_asking_at_once_cause_one_upstream_download(
    start_proxy: StartProxy, upstream: tuple[UpstreamStore, str], http: aiohttp.ClientSession
) -> None:
    store, url = upstream
    store.put(PDB_KEY, PDB.data)
    central = await start_proxy(
        [{"id": "upstream", "type": "http", "url": url, "layout": {"type": "symstore"}}]
    )
    only_central = sources(str(central.make_url("/")), url)[:1]
    sidecars = [await start_proxy(only_central) for _ in range(SIDECARS)]
    store.hold = True
    asked = [asyncio.ensure_future(get(http, s.make_url(f"/symbols/{PDB_KEY}"))) for s in sidecars]
    for _ in range(3000):
        if store.total_requests:
            break
        await asyncio.sleep(0.01)
    await asyncio.sleep(0.3)
    store.release.set()
    results = await asyncio.gather(*asked)
    assert results == [(200, PDB.data)] * SIDECARS
    assert store.requests[PDB_KEY] == 1


async def test_a_sidecar_falls_back_to_the_next_source_when_the_central_cache_is_down(
    start_proxy: StartProxy, upstream: tuple[UpstreamStore, str], http: aiohttp.ClientSession
) -> None:
    store, url = upstream
    store.put(PDB_KEY, PDB.data)
    central = await start_proxy(
        [{"id": "upstream", "type": "http", "url": url, "layout": {"type": "symstore"}}]
    )
    central_url = str(central.make_url("/"))
    await central.close()
    sidecar = await start_proxy(sources(central_url, url))
    assert await get(http, sidecar.make_url(f"/symbols/{PDB_KEY}")) == (200, PDB.data)
    assert store.requests[PDB_KEY] == 1
