"""Right answers for every spelling a client sends, end to end against real stores (issue 7, part A).

Stores are laid out with the keys of ``MANIFEST.json`` (what ``symstore``, ``dotnet-symbol`` and
``sentry-cli`` write), never with the proxy's own path functions. Covers: a miss for one spelling
never hides a file stored under another, and concurrent spellings each get their own answer;
portable PDBs under the standard ``…FFFFFFFF`` key; wasm code ids with the length byte; repeated
slashes; nil ids; ``SymbolChecksum``; ``X-DEBUGINFOD-FILE``.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from aiohttp import web
from aiohttp.test_utils import TestServer

from tests.conftest import StartProxy
from tests.support.shared import FIXTURES, manifest
from tests.support.upstream import UpstreamStore


def _entry(path: str) -> dict[str, Any]:
    entry: dict[str, Any] = next(e for e in manifest()["files"] if e["path"] == path)
    return entry


def _obj(path: str) -> dict[str, Any]:
    obj: dict[str, Any] = _entry(path)["objects"][0]
    return obj


def _data(path: str) -> bytes:
    return (FIXTURES / path).read_bytes()


async def fetch(http: aiohttp.ClientSession, url: object, **kwargs: Any) -> tuple[int, bytes, dict[str, str]]:
    async with http.get(str(url), **kwargs) as response:
        return response.status, await response.read(), dict(response.headers)


def filesystem(root: Path, layout: str, files: dict[str, bytes]) -> dict[str, object]:
    for location, data in files.items():
        target = root / location
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_bytes(data)
    return {"id": "store", "type": "filesystem", "path": str(root), "layout": {"type": layout}}


def http_source(url: str, layout: str, **extra: object) -> dict[str, object]:
    return {"id": "store", "type": "http", "url": url, "layout": {"type": layout}, **extra}


# --------------------------------------------------------------------------------------------------
# 1. One spelling's miss never hides another spelling's file

PDB_PATH = "pdb/crash.pdb"
PDB_KEY = _obj(PDB_PATH)["keys"]["symsrv"][0]  # crash.pdb/<GUID><age>/crash.pdb
_, PDB_ID, _ = PDB_KEY.split("/")
MIXED = f"Case26379.pdb/{PDB_ID}/Case26379.pdb"  # the name, in a case-keeping store
LOWER = MIXED.lower()


@pytest.mark.parametrize(
    "order", [(LOWER, MIXED, LOWER), (MIXED, LOWER, MIXED)], ids=["lower-first", "mixed-first"]
)
async def test_each_spelling_gets_the_answer_the_store_gives_it_whatever_came_first(
    order: tuple[str, ...], tmp_path: Path, start_proxy: StartProxy, http: aiohttp.ClientSession
) -> None:
    source = filesystem(tmp_path / "store", "symstore", {MIXED: _data(PDB_PATH)})
    proxy = await start_proxy([source])
    for key in order:
        status, body, _ = await fetch(http, proxy.make_url(f"/symbols/{key}"))
        if key == MIXED:
            assert status == 200 and body == _data(PDB_PATH), key
        else:
            assert status == 404, key  # right: that path does not exist in a case-sensitive store


async def test_concurrent_requests_in_both_spellings_each_get_their_own_answer(
    start_proxy: StartProxy, upstream: tuple[UpstreamStore, str], http: aiohttp.ClientSession
) -> None:
    store, url = upstream
    store.put(MIXED, _data(PDB_PATH))
    store.hold = True
    proxy = await start_proxy([http_source(url, "symstore")])
    requests = [
        asyncio.ensure_future(fetch(http, proxy.make_url(f"/symbols/{key}")))
        for key in (LOWER, MIXED, LOWER, MIXED)
    ]
    while store.total_requests < 2:
        await asyncio.sleep(0.01)
    store.release.set()
    results = await asyncio.gather(*requests)
    assert [status for status, _, _ in results] == [404, 200, 404, 200]
    assert results[1][1] == results[3][1] == _data(PDB_PATH)
    assert store.requests[MIXED] == 1  # one download per spelling, still coalesced


async def test_purging_a_spelling_forgets_the_miss_of_that_spelling(
    start_proxy: StartProxy, upstream: tuple[UpstreamStore, str], http: aiohttp.ClientSession
) -> None:
    store, url = upstream
    proxy = await start_proxy([http_source(url, "symstore")], admin={"enabled": True, "token": "purge-token"})
    status, _, _ = await fetch(http, proxy.make_url(f"/symbols/{MIXED}"))
    assert status == 404
    store.put(MIXED, _data(PDB_PATH))
    status, _, _ = await fetch(http, proxy.make_url(f"/symbols/{MIXED}"))
    assert status == 404  # remembered
    admin = {"Authorization": "Bearer purge-token"}  # issue 8: the admin endpoint always needs a token
    async with http.delete(proxy.make_url(f"/admin/cache/symbols/{MIXED}"), headers=admin) as response:
        assert response.status == 200 and (await response.json())["removed"] == 1
    status, body, _ = await fetch(http, proxy.make_url(f"/symbols/{MIXED}"))
    assert status == 200 and body == _data(PDB_PATH)


async def test_spellings_that_probe_the_same_locations_share_one_download(
    start_proxy: StartProxy, upstream: tuple[UpstreamStore, str], http: aiohttp.ClientSession
) -> None:
    # An SSQP store lowercases names: every spelling asks for the same upstream file.
    store, url = upstream
    store.put(LOWER, _data(PDB_PATH))
    proxy = await start_proxy([http_source(url, "ssqp")])
    for key in (MIXED, LOWER, MIXED.upper().replace(".PDB/", ".pdb/", 1)):
        status, body, _ = await fetch(http, proxy.make_url(f"/symbols/{key}"))
        assert status == 200 and body == _data(PDB_PATH), key
    assert store.requests[LOWER] == 1


# --------------------------------------------------------------------------------------------------
# 2. Portable PDBs under their standard key


PORTABLE_PATH = "portablepdb/portable.pdb"
PORTABLE_KEY = _obj(PORTABLE_PATH)["keys"]["symsrv"][0]  # …<GUID>FFFFFFFF/portable.pdb


async def test_a_portable_pdb_under_its_standard_key_is_found_on_a_case_sensitive_store(
    tmp_path: Path, start_proxy: StartProxy, http: aiohttp.ClientSession
) -> None:
    assert PORTABLE_KEY.split("/")[1].endswith("FFFFFFFF")
    source = filesystem(tmp_path / "store", "symstore", {PORTABLE_KEY: _data(PORTABLE_PATH)})
    proxy = await start_proxy([source])
    name, ident, _ = PORTABLE_KEY.split("/")
    # As the manifest (dotnet-symbol, symstore) spells it, and as Symbolicator does (…ffffffff).
    symbolicator = f"{name}/{ident[:32]}{ident[32:].lower()}/{name}"
    for key in (PORTABLE_KEY, symbolicator):
        status, body, _ = await fetch(http, proxy.make_url(f"/symbols/{key}"))
        assert status == 200 and body == _data(PORTABLE_PATH), key


# --------------------------------------------------------------------------------------------------
# 3. Wasm code ids with the length byte

WASM_PATH = "wasm/index.wasm"


async def test_a_wasm_module_is_found_by_its_code_id_with_the_length_byte(
    tmp_path: Path, start_proxy: StartProxy, http: aiohttp.ClientSession
) -> None:
    code_id = _obj(WASM_PATH)["code_id"]
    assert len(code_id) == 34  # symbolic's id: the build_id payload, length byte included
    unified = f"{code_id[:2]}/{code_id[2:]}/executable"  # sentry-cli's unified layout
    source = filesystem(tmp_path / "store", "unified", {unified: _data(WASM_PATH)})
    proxy = await start_proxy([source])
    status, body, _ = await fetch(http, proxy.make_url(f"/unified/{unified}"))
    assert status == 200 and body == _data(WASM_PATH)


# --------------------------------------------------------------------------------------------------
# 4. Repeated slashes

ELF_DEBUG_PATH = "elf/crash.debug"


async def test_repeated_slashes_count_as_one(
    tmp_path: Path, start_proxy: StartProxy, http: aiohttp.ClientSession
) -> None:
    debuginfod_key = _obj(ELF_DEBUG_PATH)["keys"]["debuginfod"][0]  # buildid/<id>/debuginfo
    pdb_store = filesystem(tmp_path / "pdbs", "symstore", {PDB_KEY: _data(PDB_PATH)})
    elf_store = filesystem(
        tmp_path / "elf", "debuginfod", {debuginfod_key.removeprefix("buildid/"): _data(ELF_DEBUG_PATH)}
    )
    elf_store["id"] = "elf"
    proxy = await start_proxy([pdb_store, elf_store])
    build_id = debuginfod_key.split("/")[1]
    for path, data in (
        (f"/symbols//{PDB_KEY}", _data(PDB_PATH)),
        (f"/symbols/{PDB_KEY.replace('/', '//', 1)}", _data(PDB_PATH)),
        (f"//{debuginfod_key}", _data(ELF_DEBUG_PATH)),
        (f"/buildid//{build_id}//debuginfo", _data(ELF_DEBUG_PATH)),
    ):
        url = proxy.make_url("/").with_path(path, encoded=True)
        status, body, _ = await fetch(http, url)
        assert status == 200 and body == data, path


# --------------------------------------------------------------------------------------------------
# 5. Nil ids

NIL_SYM_PATH = "breakpad/windows/basic32-dwarf.sym"


async def test_a_nil_id_never_answers_for_a_module_of_another_name(
    tmp_path: Path, start_proxy: StartProxy, http: aiohttp.ClientSession
) -> None:
    key = _obj(NIL_SYM_PATH)["keys"]["breakpad"][0]  # basic32-dwarf.dll/000…0/basic32-dwarf.dll.sym
    name, nil_id, _ = key.split("/")
    assert not nil_id.strip("0")
    unified_location = f"{nil_id[:2]}/{nil_id[2:].lower()}/breakpad"  # sentry-cli: keyed by id only
    unified = filesystem(tmp_path / "unified", "unified", {unified_location: _data(NIL_SYM_PATH)})
    native = filesystem(tmp_path / "native", "native", {key: _data(NIL_SYM_PATH)})
    native["id"] = "native"
    proxy = await start_proxy([unified, native])
    other = f"other.dll/{nil_id}/other.dll.sym"
    status, body, _ = await fetch(http, proxy.make_url(f"/symbols/{other}"))
    assert status == 404, body[:80]
    status, _, _ = await fetch(http, proxy.make_url(f"/unified/{unified_location}"))
    assert status == 404
    # A lookup that carries the module's own name is answered by the store that keeps the name.
    status, body, _ = await fetch(http, proxy.make_url(f"/symbols/{key}"))
    assert status == 200 and body == _data(NIL_SYM_PATH)
    assert name in key


# --------------------------------------------------------------------------------------------------
# 9. SymbolChecksum

INTEGRATION = _obj("pe/integration.dll")
CHECKSUM = INTEGRATION["format_details"]["pdb_checksums"][0]  # what the PE says its PDB hashes to
PPDB_KEY = PORTABLE_KEY  # the same PDB as integration.dll's (same #Pdb id)


class NuGetLikeServer:
    """A symbol server that, like NuGet's, refuses portable PDBs without the right checksum."""

    def __init__(self, files: dict[str, tuple[bytes, str]]) -> None:
        self.files = files
        self.seen: list[str | None] = []
        self.app = web.Application()
        self.app.router.add_get("/{path:.*}", self.handle)

    async def handle(self, request: web.Request) -> web.StreamResponse:
        checksum = request.headers.get("SymbolChecksum")
        self.seen.append(checksum)
        entry = self.files.get(request.match_info["path"])
        if entry is None:
            return web.Response(status=404)
        data, expected = entry
        if checksum is None or expected.lower() not in checksum.lower().split(";"):
            return web.Response(status=403, text="checksum required")
        return web.Response(body=data, content_type="application/octet-stream")


async def test_the_symbol_checksum_reaches_sources_that_require_it_and_keys_the_cache(
    start_proxy: StartProxy,
    http: aiohttp.ClientSession,
    aiohttp_server: Callable[..., Awaitable[TestServer]],
) -> None:
    assert INTEGRATION["keys"]["symsrv_pdb_lookup"][0].split("/")[1] == PPDB_KEY.split("/")[1]
    nuget = NuGetLikeServer({PPDB_KEY: (_data(PORTABLE_PATH), CHECKSUM)})
    server = await aiohttp_server(nuget.app)
    source = http_source(str(server.make_url("/")), "symstore", filters={"requires_checksum": True})
    proxy = await start_proxy([source], cache={"negative_ttl": 3600})
    url = proxy.make_url(f"/symbols/{PPDB_KEY}")
    wrong = "SHA256:" + "0" * 64

    status, body, _ = await fetch(http, url, headers={"SymbolChecksum": CHECKSUM})
    assert status == 200 and body == _data(PORTABLE_PATH)
    assert CHECKSUM in nuget.seen
    # The cached file is only for requests with that checksum: not for another, not for none.
    status, _, _ = await fetch(http, url, headers={"SymbolChecksum": wrong})
    assert status == 404
    assert wrong in nuget.seen
    status, _, _ = await fetch(http, url)
    assert status == 404  # the source needs a checksum: it is not asked
    assert None not in nuget.seen
    # A miss with one checksum does not hide the file from the right one either.
    status, body, _ = await fetch(http, url, headers={"SymbolChecksum": CHECKSUM.lower()})
    assert status == 200 and body == _data(PORTABLE_PATH)


async def test_a_file_is_only_served_to_a_request_whose_checksum_it_matches(
    tmp_path: Path, start_proxy: StartProxy, http: aiohttp.ClientSession
) -> None:
    # A store that ignores the header (a directory) has the file: the proxy checks it itself.
    source = filesystem(tmp_path / "store", "symstore", {PPDB_KEY: _data(PORTABLE_PATH)})
    proxy = await start_proxy([source])
    url = proxy.make_url(f"/symbols/{PPDB_KEY}")
    status, _, _ = await fetch(http, url, headers={"SymbolChecksum": "SHA256:" + "ab" * 32})
    assert status == 404
    status, body, _ = await fetch(http, url, headers={"SymbolChecksum": CHECKSUM})
    assert status == 200 and body == _data(PORTABLE_PATH)
    status, body, _ = await fetch(http, url)
    assert status == 200 and body == _data(PORTABLE_PATH)


async def test_a_malformed_symbol_checksum_is_a_clear_400(
    start_proxy: StartProxy, upstream: tuple[UpstreamStore, str], http: aiohttp.ClientSession
) -> None:
    store, url = upstream
    proxy = await start_proxy([http_source(url, "symstore")])
    status, body, _ = await fetch(
        http, proxy.make_url(f"/symbols/{PPDB_KEY}"), headers={"SymbolChecksum": "not a checksum"}
    )
    assert status == 400 and b"SymbolChecksum" in body
    assert store.total_requests == 0


# --------------------------------------------------------------------------------------------------
# 12. X-DEBUGINFOD-FILE


async def test_x_debuginfod_file_names_the_stored_file(
    tmp_path: Path, start_proxy: StartProxy, http: aiohttp.ClientSession
) -> None:
    gdb_path = _obj(ELF_DEBUG_PATH)["keys"]["gdb_build_id_path"][0]  # .build-id/xx/rest.debug
    location = gdb_path.removeprefix(".build-id/")  # the native layout's build-id tree
    source = filesystem(tmp_path / "store", "native", {location: _data(ELF_DEBUG_PATH)})
    proxy = await start_proxy([source])
    key = _obj(ELF_DEBUG_PATH)["keys"]["debuginfod"][0]
    for attempt in ("miss", "hit"):
        status, body, headers = await fetch(http, proxy.make_url(f"/{key}"))
        assert status == 200 and body == _data(ELF_DEBUG_PATH), attempt
        assert headers["X-DEBUGINFOD-FILE"] == location, attempt
