"""What a client sees in the cases where a small slip in the proxy would hand it a wrong answer.

Each test here was written against a bug introduced on purpose (see ``docs/testing.md``): the
resolver ignoring source filters, the PDB age dropped from the cache key, an upstream 401/403
answered as an upstream failure, ``X-DEBUGINFOD-MAXSIZE`` ignored or the debuginfod headers dropped,
a ``_`` request on a cache hit answered with the plain file, the per-host breaker that never opens
(or never closes again), and the ``_`` path preferred over the plain file within one source. Every
server is real and on 127.0.0.1; expected names and ids come from the shared manifest.
"""

from __future__ import annotations

import asyncio
import shutil
import subprocess
from pathlib import Path

import aiohttp
import pytest
from aiohttp.test_utils import TestServer

from symbol_proxy.objects import FileType
from tests.conftest import StartProxy
from tests.e2e.test_proxy_behaviour import fetch, symstore
from tests.support.shared import keyed_objects
from tests.support.upstream import Fault, UpstreamStore

PDB = next(o for o in keyed_objects() if o.filetype is FileType.PDB and o.keys.get("symsrv"))
PDB_KEY = PDB.keys["symsrv"][0]  # the symstore layout stores a file under its key
PDB_NAME = PDB_KEY.rsplit("/", 1)[1]
COMPRESSED_KEY = PDB_KEY[:-1] + "_"

ELF_DEBUG = next(o for o in keyed_objects() if o.filetype is FileType.ELF_DEBUG and o.keys.get("debuginfod"))
DEBUGINFOD_KEY = ELF_DEBUG.keys["debuginfod"][0]  # buildid/<id>/debuginfo, a debuginfod server's path


def debuginfod_source(url: str) -> dict[str, object]:
    """A debuginfod server's ``/buildid/`` tree; the store holds files under their manifest keys."""
    return {
        "id": "upstream",
        "type": "http",
        "url": url.rstrip("/") + "/buildid/",
        "layout": {"type": "debuginfod"},
    }


def tool(name: str) -> str:
    path = shutil.which(name)
    assert path, f"{name} is needed; run scripts/setup --test"
    return path


def cab_of(tmp_path: Path, name: str, data: bytes) -> bytes:
    """A cabinet holding ``data`` as ``name``, made by gcab (not by the code under test)."""
    folder = tmp_path / f"cab-src-{len(list(tmp_path.iterdir()))}"
    folder.mkdir()
    (folder / name).write_bytes(data)
    subprocess.run([tool("gcab"), "-c", "-z", "made.cab", name], cwd=folder, check=True)
    return (folder / "made.cab").read_bytes()


def cab_members(tmp_path: Path, cab: bytes) -> dict[str, bytes]:
    """The files in ``cab`` as cabextract unpacks them."""
    folder = tmp_path / f"cab-out-{len(list(tmp_path.iterdir()))}"
    folder.mkdir()
    (folder / "served.cab").write_bytes(cab)
    subprocess.run([tool("cabextract"), "-q", "-d", str(folder / "x"), "served.cab"], cwd=folder, check=True)
    return {p.name: p.read_bytes() for p in (folder / "x").iterdir()}


# --------------------------------------------------------------------------------------------------
# Source filters


@pytest.mark.parametrize(
    ("refusing", "allowing"),
    [
        ({"filetypes": ["pe"]}, {"filetypes": ["pdb", "pe"]}),
        ({"path_patterns": ["*not-this-one*"]}, {"path_patterns": [f"*{PDB_NAME}"]}),
        ({"requires_checksum": True}, {"requires_checksum": False}),
    ],
    ids=["filetypes", "path_patterns", "requires_checksum"],
)
async def test_a_source_whose_filters_refuse_the_lookup_is_not_asked_and_the_client_gets_404(
    refusing: dict[str, object],
    allowing: dict[str, object],
    start_proxy: StartProxy,
    upstream: tuple[UpstreamStore, str],
    http: aiohttp.ClientSession,
) -> None:
    store, url = upstream
    store.put(PDB_KEY, PDB.data)
    proxy = await start_proxy([symstore(url, filters=refusing)])
    status, body, _ = await fetch(http, proxy.make_url(f"/symbols/{PDB_KEY}"))
    assert status == 404, body
    assert store.total_requests == 0
    # The same source with filters that let the PDB through serves it: the 404 came from the filter.
    proxy = await start_proxy([symstore(url, filters=allowing)])
    status, body, _ = await fetch(http, proxy.make_url(f"/symbols/{PDB_KEY}"))
    assert status == 200 and body == PDB.data


# --------------------------------------------------------------------------------------------------
# The PDB age is part of the identity


async def test_two_pdbs_with_one_guid_and_different_ages_each_get_their_own_bytes(
    start_proxy: StartProxy, upstream: tuple[UpstreamStore, str], http: aiohttp.ClientSession
) -> None:
    store, url = upstream
    name, ident, _ = PDB_KEY.split("/")
    guid, age = ident[:32], ident[32:]
    other_key = f"{name}/{guid}{int(age, 16) + 1:X}/{name}"
    other_data = PDB.data[:-16] + b"another age....."
    store.put(PDB_KEY, PDB.data)
    store.put(other_key, other_data)
    proxy = await start_proxy([symstore(url)])
    for _ in range(2):  # a miss, then a cache hit
        for key, data in ((PDB_KEY, PDB.data), (other_key, other_data)):
            status, body, _ = await fetch(http, proxy.make_url(f"/symbols/{key}"))
            assert status == 200 and body == data, key


# --------------------------------------------------------------------------------------------------
# Refusals are misses


@pytest.mark.parametrize("fault", ["401", "403"])
async def test_an_upstream_that_refuses_is_a_404_for_the_client(
    fault: Fault, start_proxy: StartProxy, upstream: tuple[UpstreamStore, str], http: aiohttp.ClientSession
) -> None:
    store, url = upstream
    store.put(PDB_KEY, PDB.data)
    store.faults[PDB_KEY] = fault
    store.faults[COMPRESSED_KEY] = fault
    proxy = await start_proxy([symstore(url)], cache={"negative_ttl": 0, "error_ttl": 0})
    status, body, _ = await fetch(http, proxy.make_url(f"/symbols/{PDB_KEY}"))
    assert status == 404, body
    assert store.requests[PDB_KEY] >= 1  # it was asked, and refused


# --------------------------------------------------------------------------------------------------
# debuginfod headers


async def test_debuginfod_maxsize_is_honoured_on_a_miss_and_on_a_hit(
    start_proxy: StartProxy, upstream: tuple[UpstreamStore, str], http: aiohttp.ClientSession
) -> None:
    store, url = upstream
    store.put(DEBUGINFOD_KEY, ELF_DEBUG.data)
    size = len(ELF_DEBUG.data)
    source = debuginfod_source(url)
    target = f"/{DEBUGINFOD_KEY}"

    cold = await start_proxy([source])
    status, _, _ = await fetch(http, cold.make_url(target), headers={"X-DEBUGINFOD-MAXSIZE": str(size - 1)})
    assert status == 406

    proxy = await start_proxy([source])
    status, body, _ = await fetch(http, proxy.make_url(target), headers={"X-DEBUGINFOD-MAXSIZE": str(size)})
    assert status == 200 and body == ELF_DEBUG.data
    status, _, _ = await fetch(http, proxy.make_url(target), headers={"X-DEBUGINFOD-MAXSIZE": str(size - 1)})
    assert status == 406  # now a cache hit
    status, body, _ = await fetch(http, proxy.make_url(target), headers={"X-DEBUGINFOD-MAXSIZE": "junk"})
    assert status == 400, body


async def test_debuginfod_answers_carry_the_file_and_size_headers_on_a_miss_and_on_a_hit(
    start_proxy: StartProxy, upstream: tuple[UpstreamStore, str], http: aiohttp.ClientSession
) -> None:
    store, url = upstream
    store.put(DEBUGINFOD_KEY, ELF_DEBUG.data)
    proxy = await start_proxy([debuginfod_source(url)])
    for _ in range(2):  # a miss, then a hit
        status, body, headers = await fetch(http, proxy.make_url(f"/{DEBUGINFOD_KEY}"))
        assert status == 200 and body == ELF_DEBUG.data
        assert headers.get("X-DEBUGINFOD-FILE"), headers
        assert headers.get("X-DEBUGINFOD-SIZE") == str(len(ELF_DEBUG.data)), headers
    assert store.requests[DEBUGINFOD_KEY] == 1


# --------------------------------------------------------------------------------------------------
# `_` requests


async def test_a_compressed_name_is_a_cabinet_on_a_cache_hit_too(
    tmp_path: Path, start_proxy: StartProxy, upstream: tuple[UpstreamStore, str], http: aiohttp.ClientSession
) -> None:
    store, url = upstream
    store.put(PDB_KEY, PDB.data)
    proxy = await start_proxy([symstore(url)])
    status, body, _ = await fetch(http, proxy.make_url(f"/symbols/{PDB_KEY}"))
    assert status == 200 and body == PDB.data  # the plain file is now cached
    for _ in range(2):  # the cabinet is made from the cached file, then itself served from the cache
        status, body, _ = await fetch(http, proxy.make_url(f"/symbols/{COMPRESSED_KEY}"))
        assert status == 200 and body[:4] == b"MSCF", body[:16]
        assert cab_members(tmp_path, body) == {PDB_NAME: PDB.data}
    assert store.requests[PDB_KEY] == 1


async def test_within_one_source_the_plain_file_wins_over_its_compressed_twin(
    tmp_path: Path, start_proxy: StartProxy, upstream: tuple[UpstreamStore, str], http: aiohttp.ClientSession
) -> None:
    store, url = upstream
    twin = PDB.data[:-16] + b"compressed twin."
    store.put(PDB_KEY, PDB.data)
    store.put(COMPRESSED_KEY, cab_of(tmp_path, PDB_NAME, twin))
    proxy = await start_proxy([symstore(url)])
    status, body, _ = await fetch(http, proxy.make_url(f"/symbols/{PDB_KEY}"))
    assert status == 200 and body == PDB.data
    # Only the twin: then it is used (so the first answer was a choice, not the twin being unreadable).
    del store.files[PDB_KEY]
    proxy = await start_proxy([symstore(url)])
    status, body, _ = await fetch(http, proxy.make_url(f"/symbols/{PDB_KEY}"))
    assert status == 200 and body == twin


# --------------------------------------------------------------------------------------------------
# The per-host breaker


async def test_a_failing_host_is_left_alone_once_its_breaker_opens_and_asked_again_after_it_closes(
    start_proxy: StartProxy, upstream: tuple[UpstreamStore, str], http: aiohttp.ClientSession
) -> None:
    store, url = upstream
    store.put(PDB_KEY, PDB.data)
    target = f"/symbols/{PDB_KEY}"
    threshold = 3

    async def open_breaker(block_time: float) -> tuple[TestServer, int]:
        store.faults[PDB_KEY] = "500"
        proxy = await start_proxy(
            [symstore(url)],
            cache={"negative_ttl": 0, "error_ttl": 0},
            upstream={
                "retries": 0,
                "breaker_threshold": threshold,
                "breaker_window": 600,
                "breaker_block_time": block_time,
            },
        )
        before = store.requests[PDB_KEY]
        for _ in range(threshold):
            status, _, _ = await fetch(http, proxy.make_url(target))
            assert status == 502
        assert store.requests[PDB_KEY] == before + threshold
        return proxy, store.requests[PDB_KEY]

    # Open (blocked far longer than the test runs, so a slow machine sees the same): the host is not
    # asked at all, and the client still gets a clear upstream error.
    proxy, asked = await open_breaker(block_time=600)
    for _ in range(3):
        status, body, _ = await fetch(http, proxy.make_url(target))
        assert status == 502, body
    assert store.requests[PDB_KEY] == asked
    # The host recovers; once a short block time is over it is asked again and the file is served.
    proxy, asked = await open_breaker(block_time=0.2)
    del store.faults[PDB_KEY]
    for _ in range(600):
        status, body, _ = await fetch(http, proxy.make_url(target))
        if status == 200:
            break
        await asyncio.sleep(0.1)
    assert status == 200 and body == PDB.data
    assert store.requests[PDB_KEY] == asked + 1
