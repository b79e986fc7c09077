"""debuginfod ``section``/``source`` status rules and pass-through, over real sockets.

404 for what nobody has; 503 when the proxy has the file but cannot read it, because elfutils'
client falls back to fetching the whole file only on 503; pass-through answers from a debuginfod
server win over what the proxy could compute itself.
"""

from __future__ import annotations

from pathlib import Path

import aiohttp

from tests.conftest import StartProxy
from tests.support.shared import keyed_objects
from tests.support.sourcebundles import write_source_bundle
from tests.support.upstream import UpstreamStore

ELF = next(o for o in keyed_objects() if o.filetype.value == "elf_code" and o.query.code_id)
BUILD_ID = ELF.query.code_id or ""


def unified(root: Path, files: dict[str, bytes]) -> list[dict[str, object]]:
    folder = root / BUILD_ID[:2] / BUILD_ID[2:]
    folder.mkdir(parents=True)
    for name, data in files.items():
        (folder / name).write_bytes(data)
    return [{"id": "u", "type": "filesystem", "path": str(root), "layout": {"type": "unified"}}]


async def status_and_body(http: aiohttp.ClientSession, url: object) -> tuple[int, bytes]:
    async with http.get(str(url)) as response:
        return response.status, await response.read()


async def test_unreadable_files_answer_503_so_elfutils_falls_back(
    tmp_path: Path, start_proxy: StartProxy, http: aiohttp.ClientSession
) -> None:
    broken_elf = b"\x7fELF\x02\x01\x01" + bytes(57)  # a 64-bit ELF header, all zeros
    broken_bundle = b"SYSB\x02\x00\x00\x00 but not a zip"
    broken_table = bytearray(broken_elf)
    broken_table[0x28:0x30] = (1 << 20).to_bytes(8, "little")  # e_shoff far beyond the end
    broken_table[0x3A:0x3C] = (64).to_bytes(2, "little")
    broken_table[0x3C:0x3E] = (3).to_bytes(2, "little")
    proxy = await start_proxy(unified(tmp_path / "store2", {"debuginfo": bytes(broken_table)}))
    status, _ = await status_and_body(http, proxy.make_url(f"/buildid/{BUILD_ID}/section/.debug_info"))
    assert status == 503
    proxy = await start_proxy(unified(tmp_path / "store3", {"sourcebundle": broken_bundle}))
    status, _ = await status_and_body(http, proxy.make_url(f"/buildid/{BUILD_ID}/source/src/main.c"))
    assert status == 503


async def test_unknown_ids_sections_and_paths_are_404(
    tmp_path: Path, start_proxy: StartProxy, http: aiohttp.ClientSession
) -> None:
    bundle = write_source_bundle(
        {"/src/main.c": b"int x;\n"}, code_id=BUILD_ID, debug_id=BUILD_ID[:32], name="x"
    )
    proxy = await start_proxy(unified(tmp_path / "store", {"executable": ELF.data, "sourcebundle": bundle}))
    for path in (
        f"/buildid/{'ab' * 20}/section/.text",
        f"/buildid/{BUILD_ID}/section/.no_such_section",
        f"/buildid/{'ab' * 20}/source/src/main.c",
        f"/buildid/{BUILD_ID}/source/src/other.c",
        "/buildid/nothex/section/.text",
    ):
        status, _ = await status_and_body(http, proxy.make_url(path))
        assert status == 404, path
    status, body = await status_and_body(http, proxy.make_url(f"/buildid/{BUILD_ID}/source/src/main.c"))
    assert (status, body) == (200, b"int x;\n")


async def test_debuginfod_sources_are_asked_first(
    tmp_path: Path, start_proxy: StartProxy, http: aiohttp.ClientSession, upstream: tuple[UpstreamStore, str]
) -> None:
    store, url = upstream
    store.put(f"{BUILD_ID}/section/.text", b"computed by the server")
    store.put(f"{BUILD_ID}/source/src/main.c", b"from the server")
    store.put(f"{BUILD_ID}/executable", ELF.data)
    proxy = await start_proxy([{"id": "d", "type": "http", "url": url, "layout": {"type": "debuginfod"}}])
    status, body = await status_and_body(http, proxy.make_url(f"/buildid/{BUILD_ID}/section/.text"))
    assert (status, body) == (200, b"computed by the server")
    status, body = await status_and_body(http, proxy.make_url(f"/buildid/{BUILD_ID}/source/src/main.c"))
    assert (status, body) == (200, b"from the server")
    # A section the server does not have is cut from the executable it serves.
    status, body = await status_and_body(http, proxy.make_url(f"/buildid/{BUILD_ID}/section/.dynsym"))
    assert status == 200 and body and body in ELF.data
    assert store.requests[f"{BUILD_ID}/section/.dynsym"] == 1


async def test_section_and_source_follow_the_status_rules_of_every_request(
    tmp_path: Path, start_proxy: StartProxy, http: aiohttp.ClientSession, upstream: tuple[UpstreamStore, str]
) -> None:
    # Issue 8's rules (docs/reliability.md) hold for the routes of issue 7 too: a refusal is a miss
    # also when remembered, an upstream failure is 502 with the error_ttl as Retry-After, and a
    # file the cache has no room for is a 503 "ask again" (never a 502, never remembered).
    store, url = upstream
    folder = f"{BUILD_ID[:2]}/{BUILD_ID[2:]}"
    for name in ("debuginfo", "executable"):
        store.faults[f"{folder}/{name}"] = "401"
    store.faults[f"{folder}/sourcebundle"] = "500"
    source = {"id": "u", "type": "http", "url": url, "layout": {"type": "unified"}}
    cache = {"dir": str(tmp_path / "cache"), "error_ttl": 7}
    proxy = await start_proxy([source], cache=cache, upstream={"retries": 0})
    for _ in range(2):  # fresh, then remembered
        status, _ = await status_and_body(http, proxy.make_url(f"/buildid/{BUILD_ID}/section/.text"))
        assert status == 404
        async with http.get(proxy.make_url(f"/buildid/{BUILD_ID}/source/src/main.c")) as response:
            assert response.status == 502
            assert 1 <= int(response.headers["Retry-After"]) <= 7

    cap = 64 * 1024
    large = ELF.data + bytes(4 * cap)  # still the same ELF: its section table is near the start
    small_cache = {"dir": str(tmp_path / "small"), "max_size": cap}
    proxy = await start_proxy(unified(tmp_path / "store", {"debuginfo": large}), cache=small_cache)
    for _ in range(2):  # not remembered
        async with http.get(proxy.make_url(f"/buildid/{BUILD_ID}/section/.text")) as response:
            assert response.status == 503
            assert response.headers["Retry-After"] == "1"
