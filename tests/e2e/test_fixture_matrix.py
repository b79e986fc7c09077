"""Every real fixture file, published into a store in every layout, fetched through the proxy.

Matrix: store kind (filesystem directory, real HTTP server on 127.0.0.1) × layout (all seven) ×
every keyed object of ``MANIFEST.json`` × every way a client asks for it (its SymSrv and SSQP keys,
its unified path, its debuginfod path). Each file is stored at the path its layout gives it; the
proxy must answer each request with exactly the bytes stored at the first candidate path of that
request, or 404 when there is none, and never anything else. On top, a fixed table says which
requests each layout must be able to serve at all, so the matrix cannot pass by serving nothing.
"""

from __future__ import annotations

from pathlib import Path

import aiohttp
import pytest

from symbol_proxy import keys, layouts
from symbol_proxy.config import Layout, LayoutType
from symbol_proxy.objects import FileType
from tests.conftest import StartProxy
from tests.support.shared import FixtureObject, keyed_objects
from tests.support.upstream import UpstreamStore

F = FileType
SYMSTORE_KINDS = {F.PE, F.PDB, F.PORTABLEPDB, F.ELF_CODE, F.ELF_DEBUG, F.MACH_CODE, F.MACH_DEBUG}
SYMSRV_MUST_SERVE: dict[LayoutType, set[FileType]] = {
    LayoutType.SYMSTORE: SYMSTORE_KINDS,
    LayoutType.SSQP: SYMSTORE_KINDS,
    LayoutType.SYMSTORE_INDEX2: SYMSTORE_KINDS,
    LayoutType.NATIVE: SYMSTORE_KINDS | {F.BREAKPAD},
    # A unified store is keyed by debug id: a PE cannot be found by its code id (symbolicator#1451),
    # and a portable PDB is stored under its real stamp, not the FFFFFFFF of its SymSrv key.
    LayoutType.UNIFIED: {F.PDB, F.ELF_CODE, F.ELF_DEBUG, F.MACH_CODE, F.MACH_DEBUG, F.BREAKPAD},
    LayoutType.DEBUGINFOD: {F.ELF_CODE, F.ELF_DEBUG},
    LayoutType.SLASHSYMBOLS: {F.PE, F.ELF_CODE, F.MACH_CODE},
}
OBJECTS = keyed_objects()


def stored_path(layout: LayoutType, obj: FixtureObject) -> str | None:
    paths = layouts.get_directory_paths(Layout(type=layout), obj.filetype, obj.query)
    return paths[-1] if paths else None


def unified_path(obj: FixtureObject) -> str | None:
    return stored_path(LayoutType.UNIFIED, obj)


def requests_for(obj: FixtureObject) -> list[tuple[str, str]]:
    """(protocol, URL path) pairs a client could send for this object."""
    result = []
    for name in ("symsrv", "ssqp"):
        for key in obj.keys.get(name, []):
            result.append((name, f"/symbols/{key}"))
    path = unified_path(obj)
    if path:
        result.append(("unified", f"/unified/{path}"))
    for key in obj.keys.get("debuginfod", []):
        kind = key.rsplit("/", 1)[-1]
        if (kind == "debuginfo") == (obj.filetype is F.ELF_DEBUG):
            result.append(("debuginfod", f"/{key}"))
    return result


def parse(protocol: str, url_path: str) -> keys.Lookup:
    if protocol in ("symsrv", "ssqp"):
        return keys.parse_symsrv_request(url_path.removeprefix("/symbols/"))
    if protocol == "unified":
        return keys.parse_unified_request(url_path.removeprefix("/unified/"))
    _, build_id, kind = url_path.strip("/").split("/")
    return keys.parse_debuginfod_request(build_id, kind)


def candidates(layout: LayoutType, lookup: keys.Lookup) -> list[str]:
    """The paths the proxy probes on a single source, in priority order."""
    result: list[str] = []
    for alternative in lookup.alternatives:
        for filetype in alternative.filetypes:
            for path in reversed(
                layouts.get_directory_paths(Layout(type=layout), filetype, alternative.query)
            ):
                if path not in result:
                    result.append(path)
    return result


def publish(layout: LayoutType) -> dict[str, bytes]:
    files: dict[str, bytes] = {}
    for obj in OBJECTS:
        path = stored_path(layout, obj)
        if path is not None:
            files.setdefault(path, obj.data)  # ids shared by several fixtures: the first one stays
    return files


@pytest.mark.parametrize("layout", list(LayoutType), ids=str)
@pytest.mark.parametrize("store_kind", ["filesystem", "http"])
async def test_every_fixture_is_served_byte_identical_in_every_layout(
    layout: LayoutType,
    store_kind: str,
    tmp_path: Path,
    start_proxy: StartProxy,
    upstream: tuple[UpstreamStore, str],
    http: aiohttp.ClientSession,
) -> None:
    files = publish(layout)
    if store_kind == "filesystem":
        root = tmp_path / "store"
        for path, data in files.items():
            target = root / path
            target.parent.mkdir(parents=True, exist_ok=True)
            target.write_bytes(data)
        source = {"id": "store", "type": "filesystem", "path": str(root), "layout": {"type": str(layout)}}
    else:
        store, base_url = upstream
        for path, data in files.items():
            store.put(path, data)
        source = {"id": "store", "type": "http", "url": base_url, "layout": {"type": str(layout)}}
    proxy = await start_proxy([source])

    problems: list[str] = []
    served = 0
    # The cache is keyed case-insensitively: once one spelling of a key was served, every spelling is.
    served_keys: dict[str, bytes] = {}
    for obj in OBJECTS:
        for protocol, url_path in requests_for(obj):
            lookup = parse(protocol, url_path)
            expected_path = next((p for p in candidates(layout, lookup) if p in files), None)
            expected = files[expected_path] if expected_path else served_keys.get(lookup.cache_key)
            # SSQP keys carry lowercased names: a case-sensitive store in a case-keeping layout
            # cannot be asked for them; an ssqp-layout store (lowercase names) must serve both.
            keyed = protocol == "symsrv" or (protocol == "ssqp" and layout is LayoutType.SSQP)
            must = (
                keyed and obj.filetype in SYMSRV_MUST_SERVE[layout] and stored_path(layout, obj) is not None
            )
            must = must or (protocol == "unified" and layout is LayoutType.UNIFIED)
            must = must or (protocol == "debuginfod" and layout in (LayoutType.DEBUGINFOD, LayoutType.NATIVE))
            if must and expected_path is None:
                problems.append(f"{obj.name} {url_path}: no candidate reaches {stored_path(layout, obj)}")
                continue
            for attempt in ("miss", "hit"):
                async with http.get(proxy.make_url(url_path)) as response:
                    body = await response.read()
                    status = response.status
                if expected is None:
                    if status != 404:
                        problems.append(f"{obj.name} {url_path} ({attempt}): {status}, expected 404")
                elif status != 200 or body != expected:
                    problems.append(f"{obj.name} {url_path} ({attempt}): {status}, {len(body)} bytes")
                else:
                    served += 1
                    served_keys[lookup.cache_key] = body
    assert not problems, "\n".join(problems)
    assert served > 0
