"""``foo.pd_`` requests when the source has only ``foo.pdb`` (issue 7, items 10 and 11).

The proxy answers with a cabinet made from the plain file. Its first bytes must not wait until the
whole file is downloaded and compressed, and a ``.pd_`` request that goes away must leave nothing
behind: no CAB built for nobody and no cached copy of one.
"""

from __future__ import annotations

import asyncio
import gzip
import os
import shutil
import subprocess
from collections.abc import Callable
from pathlib import Path

import aiohttp
import pytest
from aiohttp import web
from aiohttp.test_utils import TestServer

from symbol_proxy.compression import write_cab
from symbol_proxy.server.state import STATE
from tests.conftest import StartProxy, app_of
from tests.e2e.test_proxy_behaviour import PDB, PDB_KEY, cache_bytes, symstore

PLAIN_NAME = PDB_KEY.rsplit("/", 1)[1]
CAB_KEY = PDB_KEY[:-1] + "_"


def large_pdb(size: int) -> bytes:
    """A PDB-shaped file: the fixture's real MSF header, then incompressible bytes."""
    return PDB.data[:4096] + os.urandom(size - 4096)


class HeldUpstream:
    """Serves one file, sending its first ``first`` bytes at once and the rest once released."""

    def __init__(self, data: bytes, first: int) -> None:
        self.data = data
        self.first = first
        self.release = asyncio.Event()
        self.app = web.Application()
        self.app.router.add_get("/{path:.*}", self.handle)

    async def handle(self, request: web.Request) -> web.StreamResponse:
        if request.match_info["path"] != PDB_KEY:
            return web.Response(status=404)
        response = web.StreamResponse()
        response.content_length = len(self.data)
        await response.prepare(request)
        await response.write(self.data[: self.first])
        await self.release.wait()
        await response.write(self.data[self.first :])
        await response.write_eof()
        return response


def extract(cab: bytes, tmp_path: Path) -> bytes:
    cabextract = shutil.which("cabextract")
    assert cabextract, "cabextract is needed; run scripts/setup --test"
    tmp_path.mkdir(parents=True, exist_ok=True)
    path = tmp_path / "served.pd_"
    path.write_bytes(cab)
    out = tmp_path / "out"
    subprocess.run([cabextract, "-q", "-d", str(out), str(path)], check=True)
    return (out / PLAIN_NAME).read_bytes()


async def test_a_cab_starts_before_the_plain_file_is_complete(
    tmp_path: Path,
    start_proxy: StartProxy,
    aiohttp_server: Callable[..., asyncio.Future[TestServer]],
    http: aiohttp.ClientSession,
) -> None:
    data = large_pdb(12 * 1024 * 1024)
    held = HeldUpstream(data, first=2 * 1024 * 1024)
    server = await aiohttp_server(held.app)
    proxy = await start_proxy([symstore(str(server.make_url("/")))])
    async with http.get(proxy.make_url(f"/symbols/{CAB_KEY}")) as response:
        # The upstream has sent a sixth of the file and waits: the cabinet must already be flowing.
        # (No timing is asserted: without streaming this read waits for a release that never comes.)
        first = await asyncio.wait_for(response.content.readexactly(1024 * 1024), timeout=60)
        assert response.status == 200
        assert first[:4] == b"MSCF"
        held.release.set()
        body = first + await response.read()
    assert int(response.headers["Content-Length"]) == len(body)
    assert extract(body, tmp_path) == data


@pytest.mark.parametrize("wrap", ["gzip", "cab"])
async def test_a_wrapped_upstream_file_flows_to_every_reader_before_its_body_is_complete(
    tmp_path: Path,
    start_proxy: StartProxy,
    aiohttp_server: Callable[..., asyncio.Future[TestServer]],
    http: aiohttp.ClientSession,
    wrap: str,
) -> None:
    # Issue 8: a gzip (or CAB) body is unpacked as it arrives, so readers get the plain file's
    # first bytes while the upstream still holds back most of the body, and nothing but the plain
    # file is written (no packed scratch copy).
    data = large_pdb(12 * 1024 * 1024)
    if wrap == "gzip":
        packed = gzip.compress(data, 1)
    else:
        (tmp_path / "plain").write_bytes(data)
        write_cab(tmp_path / "plain", tmp_path / "packed", PLAIN_NAME, level=1)
        packed = (tmp_path / "packed").read_bytes()
    held = HeldUpstream(packed, first=3 * 1024 * 1024)
    server = await aiohttp_server(held.app)
    proxy = await start_proxy([symstore(str(server.make_url("/")))])
    state = app_of(proxy)[STATE]
    async with (
        http.get(proxy.make_url(f"/symbols/{PDB_KEY}")) as one,
        http.get(proxy.make_url(f"/symbols/{PDB_KEY}")) as other,
    ):
        # No timing is asserted: without unpacking as it arrives these reads wait for a release
        # that never comes.
        firsts = [
            await asyncio.wait_for(response.content.readexactly(1024 * 1024), timeout=60)
            for response in (one, other)
        ]
        assert [response.status for response in (one, other)] == [200, 200]
        assert firsts == [data[: 1024 * 1024]] * 2
        scratch = [
            p.name for p in state.cache.tmp_dir.iterdir() if p.name.startswith(("packed-", "unpacked-"))
        ]
        assert scratch == [], "no scratch copy of the packed body"
        held.release.set()
        bodies = [first + await response.read() for first, response in zip(firsts, (one, other), strict=True)]
    assert bodies == [data, data]
    # The readers can have every byte before the download commits the file: wait for it to end.
    for _ in range(600):
        if state.downloads.in_flight == 0:
            break
        await asyncio.sleep(0.05)
    assert state.cache.count == 1


async def test_a_cancelled_cab_request_leaves_no_work_and_no_cached_copy(
    tmp_path: Path, start_proxy: StartProxy, http: aiohttp.ClientSession, upstream: tuple[object, str]
) -> None:
    store, url = upstream
    data = large_pdb(16 * 1024 * 1024)
    store.put(PDB_KEY, data)  # type: ignore[attr-defined]
    proxy = await start_proxy([symstore(url)])
    state = app_of(proxy)[STATE]

    async def cab_then_cancel() -> None:
        async with http.get(proxy.make_url(f"/symbols/{CAB_KEY}")) as response:
            await response.content.readexactly(1)
            response.close()  # the client keeps the .pdb answer and drops this one

    # Like samply's symsrv client: both names at once, and the .pd_ request cancelled.
    cab_request = asyncio.ensure_future(cab_then_cancel())
    async with http.get(proxy.make_url(f"/symbols/{PDB_KEY}")) as response:
        assert await response.read() == data
    await cab_request
    for _ in range(600):  # let any background work finish
        if state.downloads.in_flight == 0:
            break
        await asyncio.sleep(0.05)
    await asyncio.sleep(0.5)
    assert state.downloads.in_flight == 0
    assert state.cache.count == 1, "only the plain file may be cached"
    assert not any(state.cache.tmp_dir.glob("cab-*"))

    # And a full .pd_ request now streams from the cached plain file: still nothing more cached.
    async with http.get(proxy.make_url(f"/symbols/{CAB_KEY}")) as response:
        assert extract(await response.read(), tmp_path) == data
    assert state.cache.count == 1


@pytest.mark.parametrize("size", [0, 1, 32 * 1024, 32 * 1024 + 1, 100_000])
async def test_cabs_of_every_block_boundary_unpack_to_the_file(
    tmp_path: Path,
    start_proxy: StartProxy,
    http: aiohttp.ClientSession,
    upstream: tuple[object, str],
    size: int,
) -> None:
    store, url = upstream
    data = PDB.data[:size] if size <= len(PDB.data) else large_pdb(size)
    store.put(PDB_KEY, data)  # type: ignore[attr-defined]
    proxy = await start_proxy([symstore(url)])
    for attempt in range(2):  # a miss, then a hit
        async with http.get(proxy.make_url(f"/symbols/{CAB_KEY}")) as response:
            body = await response.read()
        if size < 64:  # too short to be recognised as a PDB: the source does not have one
            assert response.status == 404
            return
        assert response.status == 200
        assert extract(body, tmp_path / str(attempt)) == data


async def test_head_of_a_cab_announces_the_length_of_its_body(
    start_proxy: StartProxy, http: aiohttp.ClientSession, upstream: tuple[object, str]
) -> None:
    store, url = upstream
    store.put(PDB_KEY, PDB.data)  # type: ignore[attr-defined]
    proxy = await start_proxy([symstore(url)])
    for _ in range(2):  # a miss, then a hit
        async with http.head(proxy.make_url(f"/symbols/{CAB_KEY}")) as response:
            assert response.status == 200
            announced = int(response.headers["Content-Length"])
        async with http.get(proxy.make_url(f"/symbols/{CAB_KEY}")) as response:
            assert len(await response.read()) == announced


@pytest.mark.parametrize("size", [300_000, 6 * 1024 * 1024])
async def test_a_cab_of_a_file_the_cache_has_no_room_for_streams_from_the_passed_through_bytes(
    tmp_path: Path,
    start_proxy: StartProxy,
    http: aiohttp.ClientSession,
    upstream: tuple[object, str],
    size: int,
) -> None:
    # Issue 8 passes a file through when the cache has no room; issue 7 streams `_` answers as
    # stored cabinets. Together: the stored cabinet follows the passed-through bytes (up to 4 MiB
    # and beyond), no MSZIP cabinet is built, and nothing is written to the cache.
    store, url = upstream
    data = large_pdb(size)
    store.put(PDB_KEY, data)  # type: ignore[attr-defined]
    cap = 128 * 1024
    cache_dir = tmp_path / "cache"
    proxy = await start_proxy([symstore(url)], cache={"dir": str(cache_dir), "max_size": cap})
    state = app_of(proxy)[STATE]
    for attempt in range(2):  # nothing is kept, so both are misses
        async with http.get(proxy.make_url(f"/symbols/{CAB_KEY}")) as response:
            assert response.status == 200
            body = await response.read()
        assert int(response.headers["Content-Length"]) == len(body)
        assert body[42:44] == b"\0\0", "the CFFOLDER's typeCompress: stored blocks"
        assert extract(body, tmp_path / str(attempt)) == data
        assert state.cache.count == 0
        assert cache_bytes(cache_dir) <= cap
