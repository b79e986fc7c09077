"""The cluster cache tier with real proxies: sidecars whose first source is a central proxy (an ``http``
source in the ``symstore`` layout, as the chart's ``clusterCache`` and its opt-in SymbolSource render it)
and whose next source is the real upstream, marked ``fallback`` so it is asked only when the central
cache has not answered with the file.

Covered: many cold sidecars asking for one file at once cause one upstream download, both with the
central cache as their only source and with the upstream as its fallback; without ``fallback`` every
sidecar also asks the upstream; a sidecar still gets files when the central cache is down; a file that
no source has is a 404."""

from __future__ import annotations

import asyncio
from collections.abc import Callable

import aiohttp

from tests.conftest import StartProxy
from tests.support.shared import keyed_objects
from tests.support.upstream import UpstreamStore

PDB = next(o for o in keyed_objects() if o.filetype.value == "pdb")
PDB_KEY = PDB.keys["symsrv"][0]
SIDECARS = 12


def sources(central: str, upstream: str, *, fallback: bool = True) -> list[dict[str, object]]:
    return [
        {"id": "cluster-cache", "type": "http", "url": f"{central}symbols/", "layout": {"type": "symstore"}},
        {
            "id": "upstream",
            "type": "http",
            "url": upstream,
            "layout": {"type": "symstore"},
            "fallback": fallback,
        },
    ]


async def get(http: aiohttp.ClientSession, url: object) -> tuple[int, bytes]:
    async with http.get(str(url)) as response:
        return response.status, await response.read()


async def cold_sidecars_asking_at_once(
    start_proxy: StartProxy,
    upstream: tuple[UpstreamStore, str],
    http: aiohttp.ClientSession,
    sidecar_sources: Callable[[str], list[dict[str, object]]],
) -> None:
    """Start a central cache and ``SIDECARS`` sidecars, hold the upstream until the first request for
    the file arrives (and a moment longer, so every sidecar has asked), then let it answer."""
    store, url = upstream
    store.put(PDB_KEY, PDB.data)
    central = await start_proxy(
        [{"id": "upstream", "type": "http", "url": url, "layout": {"type": "symstore"}}]
    )
    listed = sidecar_sources(str(central.make_url("/")))
    sidecars = [await start_proxy(listed) for _ in range(SIDECARS)]
    store.hold = True
    asked = [asyncio.ensure_future(get(http, s.make_url(f"/symbols/{PDB_KEY}"))) for s in sidecars]
    for _ in range(3000):
        if store.requests[PDB_KEY]:
            break
        await asyncio.sleep(0.01)
    await asyncio.sleep(0.3)
    store.release.set()
    results = await asyncio.gather(*asked)
    assert results == [(200, PDB.data)] * SIDECARS


async def test_cold_sidecars_asking_at_once_cause_one_upstream_download(
    start_proxy: StartProxy, upstream: tuple[UpstreamStore, str], http: aiohttp.ClientSession
) -> None:
    url = upstream[1]
    await cold_sidecars_asking_at_once(start_proxy, upstream, http, lambda central: sources(central, url)[:1])
    assert upstream[0].requests[PDB_KEY] == 1


async def test_with_the_upstream_as_fallback_cold_sidecars_cause_one_upstream_download(
    start_proxy: StartProxy, upstream: tuple[UpstreamStore, str], http: aiohttp.ClientSession
) -> None:
    url = upstream[1]
    await cold_sidecars_asking_at_once(start_proxy, upstream, http, lambda central: sources(central, url))
    assert upstream[0].requests == {key: 1 for key in upstream[0].requests}
    assert upstream[0].requests[PDB_KEY] == 1


async def test_without_fallback_every_cold_sidecar_also_asks_the_upstream(
    start_proxy: StartProxy, upstream: tuple[UpstreamStore, str], http: aiohttp.ClientSession
) -> None:
    url = upstream[1]
    await cold_sidecars_asking_at_once(
        start_proxy, upstream, http, lambda central: sources(central, url, fallback=False)
    )
    assert upstream[0].requests[PDB_KEY] > 1


async def test_many_sidecars_fall_back_to_the_upstream_when_the_central_cache_is_down(
    start_proxy: StartProxy, upstream: tuple[UpstreamStore, str], http: aiohttp.ClientSession
) -> None:
    store, url = upstream
    store.put(PDB_KEY, PDB.data)
    central = await start_proxy(
        [{"id": "upstream", "type": "http", "url": url, "layout": {"type": "symstore"}}]
    )
    central_url = str(central.make_url("/"))
    await central.close()
    sidecars = [await start_proxy(sources(central_url, url)) for _ in range(SIDECARS)]
    results = await asyncio.gather(*(get(http, s.make_url(f"/symbols/{PDB_KEY}")) for s in sidecars))
    assert results == [(200, PDB.data)] * SIDECARS
    assert store.requests[PDB_KEY] == SIDECARS


async def test_a_file_that_no_source_has_is_a_404_for_the_sidecar(
    start_proxy: StartProxy, upstream: tuple[UpstreamStore, str], http: aiohttp.ClientSession
) -> None:
    store, url = upstream
    central = await start_proxy(
        [{"id": "upstream", "type": "http", "url": url, "layout": {"type": "symstore"}}]
    )
    sidecar = await start_proxy(sources(str(central.make_url("/")), url))
    status, _ = await get(http, sidecar.make_url(f"/symbols/{PDB_KEY}"))
    assert status == 404
    # Asked once by the central cache, and once by the sidecar after the central cache's miss.
    assert store.requests[PDB_KEY] == 2
