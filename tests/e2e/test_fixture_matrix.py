"""Every real fixture file, published into a store in every layout, fetched through the proxy.

Matrix: store kind (filesystem directory, real HTTP server on 127.0.0.1) × layout (all seven) ×
every identified object of ``MANIFEST.json`` (wasm and portable PDBs included) × every way a client
asks for it (its SymSrv, SSQP and Breakpad keys, its unified path, its debuginfod path).

The stores are laid out the way real stores are, never with the proxy's own path functions:

* ``symstore``/``symstore_index2``/``ssqp``: under the keys the manifest gives (what ``symstore``
  and ``dotnet-symbol`` write: ``…FFFFFFFF`` for portable PDBs, an uppercase PE timestamp in SSQP
  keys, names as the tool spells them), with the two-tier prefix for ``symstore_index2``;
* ``native``: SymSrv keys for Windows files, Breakpad keys for ``.sym`` files, GDB's build-id tree
  and LLDB's UUID tree for ELF, wasm and Mach-O;
* ``unified`` (``sentry-cli``'s symsorter), ``debuginfod`` and ``slashsymbols``: by id.

The id-based rules are written here from ``layouts.md`` and checked against the upstream vectors
(``layout_vectors_derived.json``) before use. Then every request must get either exactly the bytes
the store holds for it (when the layout can answer it: a fixed table), a 404 (a case-keeping store
asked for a name it spells otherwise), or, for requests a layout cannot be expected to answer,
404 or a file of the same kind and id. Nothing else, on the first request and on the cached one.
"""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path
from typing import Any

import aiohttp
import pytest

from symbol_proxy.config import LayoutType
from tests.conftest import StartProxy
from tests.support.shared import FIXTURES, VECTORS, manifest
from tests.support.upstream import UpstreamStore

L = LayoutType


@dataclasses.dataclass(frozen=True)
class Fixture:
    path: str
    kind: str
    """What the file is: pe, pdb, portablepdb, elf_code, elf_debug, mach_code, mach_debug, breakpad,
    wasm (the manifest's format; ELF/Mach-O split by their SSQP key, as symstore classifies them)."""
    obj: dict[str, Any]

    @property
    def keys(self) -> dict[str, list[str]]:
        keys: dict[str, list[str]] = self.obj.get("keys") or {}
        return keys

    @property
    def code_id(self) -> str | None:
        code_id: str | None = self.obj.get("code_id")
        return code_id

    @property
    def debug_id(self) -> str:
        debug_id: str = self.obj["debug_id"]
        return debug_id

    @property
    def data(self) -> bytes:
        return (FIXTURES / self.path).read_bytes()


def _kind(entry: dict[str, Any], obj: dict[str, Any]) -> str | None:
    fmt = entry["format"]
    ssqp = ((obj.get("keys") or {}).get("ssqp") or [""])[0]
    if fmt == "elf":
        return "elf_debug" if ssqp.startswith("_.debug/") else "elf_code"
    if fmt == "macho":
        return "mach_debug" if ssqp.startswith("_.dwarf/") else "mach_code"
    return fmt if fmt in ("pe", "pdb", "portablepdb", "breakpad", "wasm") else None


def fixtures() -> list[Fixture]:
    """Single-object files with keys, and the wasm module (no key convention covers wasm)."""
    result = []
    for entry in manifest()["files"]:
        objects = entry.get("objects") or []
        if len(objects) != 1 or not (objects[0].get("keys") or entry["format"] == "wasm"):
            continue
        kind = _kind(entry, objects[0])
        if kind is not None:
            result.append(Fixture(entry["path"], kind, objects[0]))
    return result


FIXTURE_LIST = fixtures()

# --------------------------------------------------------------------------------------------------
# Id-based store paths (layouts.md §4), checked against the upstream vectors below


def breakpad_id_lower(debug_id: str) -> str:
    """``<uuid><age>`` in lowercase hex, the age unpadded (``0`` when absent)."""
    parts = debug_id.split("-")
    age = int(parts[5], 16) if len(parts) > 5 else 0
    return "".join(parts[:5]).lower() + f"{age:x}"


def gdb_path(code_id: str) -> str:
    return f"{code_id[:2]}/{code_id[2:]}"


def lldb_path(uuid_hex: str) -> str:
    u = uuid_hex.upper()
    return f"{u[0:4]}/{u[4:8]}/{u[8:12]}/{u[12:16]}/{u[16:20]}/{u[20:]}"


UNIFIED_SUFFIX = {
    "pe": "executable",
    "elf_code": "executable",
    "mach_code": "executable",
    "wasm": "executable",
    "pdb": "debuginfo",
    "portablepdb": "debuginfo",
    "elf_debug": "debuginfo",
    "mach_debug": "debuginfo",
    "breakpad": "breakpad",
}


def unified_id(kind: str, code_id: str | None, debug_id: str, main_kind: str) -> str | None:
    """symsorter's id: PE files by debug id; ELF and wasm by code id; Mach-O by UUID. A Breakpad
    file is keyed like the object's main file (``main_kind``)."""
    if kind == "breakpad":
        kind = main_kind
    if kind in ("pe", "pdb", "portablepdb"):
        return breakpad_id_lower(debug_id)
    if kind in ("mach_code", "mach_debug"):
        return code_id or "".join(debug_id.split("-")[:5])
    return code_id


def unified_path(kind: str, code_id: str | None, debug_id: str, main_kind: str) -> str | None:
    ident = unified_id(kind, code_id, debug_id, main_kind)
    return None if not ident else f"{ident[:2]}/{ident[2:]}/{UNIFIED_SUFFIX[kind]}"


def index2_path(key: str) -> str:
    """The two-tier store: the key under its first two characters, shortened to one when the second
    is ``.`` (``_.debug`` → ``_/_.debug/…``)."""
    head = key[:2]
    return f"{head[:1] if head.endswith(('.', '/')) else head}/{key}"


def slashsymbols_path(code_file: str, code_id: str) -> str:
    return f"{code_file.replace(chr(92), '/').rsplit('/', 1)[-1]}/{code_id}/symbols"


def _vector_rows() -> dict[tuple[str, str, str], list[str]]:
    with open(VECTORS / "layout_vectors_derived.json", encoding="utf-8") as handle:
        data = json.load(handle)
    return {
        (layout, filetype, name): paths
        for layout, casing, filetype, name, paths in data["rows"]
        if casing == "default"
    }


def _vector_objects() -> dict[str, dict[str, Any]]:
    with open(VECTORS / "layout_vectors_derived.json", encoding="utf-8") as handle:
        objects: dict[str, dict[str, Any]] = json.load(handle)["objects"]
    return objects


VECTOR_MAIN_KIND = {"PE": "pe", "ELF": "elf_code", "MACHO": "mach_code", "WASM": "wasm"}


@pytest.mark.parametrize("name", sorted(VECTOR_MAIN_KIND))
def test_the_store_paths_of_this_test_follow_the_upstream_vectors(name: str) -> None:
    rows, obj = _vector_rows(), _vector_objects()[name]
    code_id, debug_id, main = obj.get("code_id"), obj["debug_id"], VECTOR_MAIN_KIND[name]
    uuid_hex = "".join(debug_id.split("-")[:5])
    kinds = [("pe", "pe"), ("pdb", "pdb"), ("breakpad", "breakpad")]
    if name == "WASM":
        kinds.append(("wasm", "wasm_code"))
    for kind, filetype in kinds:
        expected = rows[("unified", filetype, name)]
        ours = unified_path(kind, code_id, debug_id, main)
        assert (expected[-1] if expected else None) == ours, (name, kind)
    if name == "MACHO":
        assert rows[("native", "mach_debug", name)] == [lldb_path(uuid_hex)]
        assert rows[("native", "mach_code", name)] == [lldb_path(uuid_hex) + ".app"]
        assert rows[("unified", "mach_debug", name)] == [unified_path("mach_debug", None, debug_id, main)]
    if code_id and name in ("ELF", "WASM"):
        assert rows[("native", "elf_code", name)] == [gdb_path(code_id)]
        assert rows[("native", "elf_debug", name)] == [gdb_path(code_id) + ".debug"]
        assert rows[("unified", "elf_debug", name)] == [unified_path("elf_debug", code_id, debug_id, main)]
    if code_id and obj.get("code_file"):
        assert rows[("slashsymbols", "pe", name)][1] == slashsymbols_path(obj["code_file"], code_id)
    for filetype in ("pe", "pdb", "elf_debug", "mach_code"):
        for path in rows[("symstore_index2", filetype, name)]:
            assert path == index2_path(path.split("/", 1)[1])


# --------------------------------------------------------------------------------------------------
# Where each layout's store keeps a fixture


def _main_kind(fixture: Fixture) -> str:
    """For a Breakpad file: the kind of object it describes (by its debug file's name)."""
    name = fixture.obj.get("debug_file") or ""
    if name.lower().endswith((".pdb", ".exe", ".dll")):
        return "pe"
    return "elf_code" if fixture.code_id and len(fixture.code_id) != 32 else "mach_code"


def _nil(fixture: Fixture) -> bool:
    return not fixture.debug_id.replace("-", "").strip("0")


def store_paths(layout: LayoutType, fixture: Fixture) -> list[str]:
    keys, kind, code_id = fixture.keys, fixture.kind, fixture.code_id
    windows = kind in ("pe", "pdb", "portablepdb")
    if layout in (L.SYMSTORE, L.SYMSTORE_INDEX2):
        stored = keys.get("symsrv") if windows else keys.get("ssqp") if kind != "breakpad" else []
        return [index2_path(k) if layout is L.SYMSTORE_INDEX2 else k for k in stored or []]
    if layout is L.SSQP:
        return list(keys.get("ssqp") or [])
    if layout is L.NATIVE:
        if windows:
            return list(keys.get("symsrv") or [])
        if kind == "breakpad":
            return list(keys.get("breakpad") or [])
        if kind in ("elf_code", "elf_debug", "wasm") and code_id:
            return [gdb_path(code_id) + (".debug" if kind == "elf_debug" else "")]
        if kind in ("mach_code", "mach_debug") and code_id:
            return [lldb_path(code_id) + (".app" if kind == "mach_code" else "")]
        return []
    if layout is L.UNIFIED:
        if _nil(fixture) and kind in ("pe", "pdb", "portablepdb", "breakpad"):
            return []  # no id to sort it under
        path = unified_path(kind, code_id, fixture.debug_id, _main_kind(fixture))
        return [path] if path else []
    if layout is L.DEBUGINFOD:
        return [k.removeprefix("buildid/") for k in keys.get("debuginfod") or []]
    code_file = fixture.obj.get("code_file")
    if kind in ("pe", "elf_code", "mach_code") and code_id and code_file:
        return [slashsymbols_path(code_file, code_id)]
    return []


def publish(layout: LayoutType) -> dict[str, bytes]:
    files: dict[str, bytes] = {}
    for fixture in FIXTURE_LIST:
        for path in store_paths(layout, fixture):
            files.setdefault(path, fixture.data)  # ids shared by several fixtures: the first one stays
    return files


# --------------------------------------------------------------------------------------------------
# What clients ask, and what each layout must answer


@dataclasses.dataclass(frozen=True)
class Request:
    protocol: str  # symsrv, ssqp, breakpad, unified, debuginfod
    path: str
    fixture: Fixture


def requests_for(fixture: Fixture) -> list[Request]:
    result = []
    for protocol in ("symsrv", "ssqp", "breakpad"):
        for key in fixture.keys.get(protocol, []):
            result.append(Request(protocol, f"/symbols/{key}", fixture))
    if not (_nil(fixture) and fixture.kind in ("pe", "pdb", "portablepdb", "breakpad")):
        path = unified_path(fixture.kind, fixture.code_id, fixture.debug_id, _main_kind(fixture))
        if path:
            result.append(Request("unified", f"/unified/{path}", fixture))
    for key in fixture.keys.get("debuginfod", []):
        if (key.endswith("/debuginfo")) == (fixture.kind == "elf_debug"):
            result.append(Request("debuginfod", f"/{key}", fixture))
    return result


MUST_SERVE: dict[LayoutType, set[str]] = {
    L.SYMSTORE: {"symsrv", "ssqp"},
    L.SYMSTORE_INDEX2: {"symsrv", "ssqp"},
    L.SSQP: {"symsrv", "ssqp"},
    L.NATIVE: {"symsrv", "ssqp", "breakpad", "debuginfod"},
    L.UNIFIED: {"unified"},
    L.DEBUGINFOD: {"debuginfod"},
    L.SLASHSYMBOLS: {"symsrv", "ssqp"},
}
CASE_KEEPING = {L.SYMSTORE, L.SYMSTORE_INDEX2, L.NATIVE}


def _key_name(path: str) -> str | None:
    """The file name a store path or a request spells (``name/id/name``), if it carries one."""
    parts = path.removeprefix("/symbols/").split("/")
    if len(parts) >= 3 and (parts[-3] == parts[-1] or parts[-1].endswith(".sym")):
        return parts[-3]
    return None


def expectation(layout: LayoutType, request: Request, files: dict[str, bytes]) -> bytes | str | None:
    """The exact bytes the proxy must answer with, ``None`` for a required 404, ``"any"`` when the
    layout cannot be expected to answer (then a 404 or a file of the same kind and id)."""
    fixture = request.fixture
    stored = [p for p in store_paths(layout, fixture) if p in files]
    if request.protocol not in MUST_SERVE[layout] or not stored:
        return "any"
    # The stored path this very request names, when the fixture is stored under several.
    tail = request.path.split("/", 2)[2] if request.protocol != "debuginfod" else request.path[9:]
    stored.sort(key=lambda p: not (p.lower().endswith(tail.lower()) or tail.lower().endswith(p.lower())))
    if layout is L.SLASHSYMBOLS and _key_name(request.path) != stored[0].split("/")[0]:
        return "any"  # asked under another name than the code file's
    if layout is L.NATIVE and fixture.kind in ("mach_code", "mach_debug", "elf_code", "elf_debug"):
        return files[stored[0]]  # stored by id only: any spelling of the key finds it
    if layout in CASE_KEEPING:
        stored_name, asked_name = _key_name(stored[0]), _key_name(request.path)
        if stored_name is not None and asked_name is not None and stored_name != asked_name:
            return None  # another path on a case-sensitive store, and no other spelling's answer
    return files[stored[0]]


def _same_kind_and_id(a: Fixture, b: Fixture) -> bool:
    if a.kind != b.kind and {a.kind, b.kind} != {"pdb", "portablepdb"}:
        return False
    return (a.code_id is not None and a.code_id == b.code_id) or a.debug_id == b.debug_id


def test_the_matrix_covers_wasm_portable_pdbs_and_every_request_kind() -> None:
    kinds = {f.kind for f in FIXTURE_LIST}
    assert {"wasm", "portablepdb", "pdb", "pe", "elf_code", "elf_debug", "mach_code", "mach_debug"} <= kinds
    protocols = {r.protocol for f in FIXTURE_LIST for r in requests_for(f)}
    assert protocols == {"symsrv", "ssqp", "breakpad", "unified", "debuginfod"}
    portable = [p for f in FIXTURE_LIST if f.kind == "portablepdb" for p in store_paths(L.SYMSTORE, f)]
    assert portable and all(p.split("/")[1].endswith("FFFFFFFF") for p in portable)


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
    served = {protocol: 0 for protocol in MUST_SERVE[layout]}
    for fixture in FIXTURE_LIST:
        for request in requests_for(fixture):
            expected = expectation(layout, request, files)
            for attempt in ("miss", "hit"):
                async with http.get(proxy.make_url(request.path)) as response:
                    body = await response.read()
                    status = response.status
                where = f"{fixture.path} {request.path} ({attempt})"
                if expected is None:
                    if status != 404:
                        problems.append(f"{where}: {status}, expected 404")
                elif isinstance(expected, bytes):
                    if status != 200 or body != expected:
                        problems.append(f"{where}: {status} with {len(body)} bytes, expected the stored file")
                    else:
                        served[request.protocol] += 1
                elif status == 200:
                    if not any(f.data == body and _same_kind_and_id(f, fixture) for f in FIXTURE_LIST):
                        problems.append(f"{where}: 200 with a file of another kind or id")
                elif status != 404:
                    problems.append(f"{where}: {status}")
    assert not problems, "\n".join(problems)
    assert all(served.values()), served  # every kind of request the layout answers was served
