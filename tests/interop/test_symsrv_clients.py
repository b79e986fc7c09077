"""SymSrv and Breakpad HTTP clients against the proxy, with files checked byte for byte.

* pdbparse's ``symchk.py`` asks for ``foo.pd_`` first and unpacks it with cabextract;
* samply's ``symsrv`` crate (``symsrv-fetch``) asks for the plain and the ``_`` name at once and
  keeps the first answer, unpacking CABs with the ``cab`` crate;
* rust-minidump's ``breakpad-symbols`` HTTP supplier (``breakpad-fetch``) fetches a Breakpad
  ``.sym`` file.

``scripts/setup --test`` installs pdbparse into its own virtualenv and builds the two Rust clients
(sources in ``tests/clients/rust``), all under ``~/.cache/symbol-operator``.
"""

from __future__ import annotations

import asyncio
import os
from pathlib import Path

import pytest

from symbol_proxy.server.state import STATE
from tests.conftest import StartProxy, app_of
from tests.interop.test_debuginfod_clients import require, run
from tests.support.shared import FixtureObject, keyed_objects

pytestmark = pytest.mark.interop

TOOLS = Path(os.environ.get("SYMBOL_OPERATOR_CACHE", Path.home() / ".cache" / "symbol-operator"))
PDB = next(o for o in keyed_objects() if o.filetype.value == "pdb")
BREAKPAD = next(
    o
    for o in keyed_objects()
    if o.filetype.value == "breakpad" and o.keys["breakpad"][0].split("/")[0] == "crash.pdb"
)


def tool(relative: str) -> str:
    path = TOOLS / relative
    assert path.exists(), f"{path} is missing; run scripts/setup --test"
    return str(path)


def symsrv_client() -> str:
    return tool("rust-clients/bin/symsrv-fetch")


def breakpad_client() -> str:
    return tool("rust-clients/bin/breakpad-fetch")


def key_of(obj: FixtureObject) -> str:
    return (obj.keys.get("symsrv") or obj.keys["breakpad"])[0]


def native_store(root: Path, *objects: FixtureObject) -> list[dict[str, object]]:
    """A store laid out by the objects' SymSrv keys (what the ``native`` layout reads)."""
    for obj in objects:
        path = root / key_of(obj)
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(obj.data)
    return [{"id": "store", "type": "filesystem", "path": str(root), "layout": {"type": "native"}}]


async def test_pdbparse_symchk_gets_a_cab_and_unpacks_it(tmp_path: Path, start_proxy: StartProxy) -> None:
    require("cabextract")
    proxy = await start_proxy(native_store(tmp_path / "store", PDB))
    name, ident, _ = PDB.keys["symsrv"][0].split("/")
    work = tmp_path / "work"
    work.mkdir()
    code, out = await run(
        tool("pdbparse-1.5/bin/symchk.py"),
        "-g",
        ident,
        "-s",
        name,
        "-u",
        str(proxy.make_url("/symbols")),
        cwd=work,
        env={"PATH": f"{Path(require('cabextract')).parent}:{os.environ['PATH']}"},
    )
    assert code == 0, out
    assert f"Saved symbols to {name[:-1]}_" in out, out  # it took the CAB, the first name it asks for
    assert (work / name).read_bytes() == PDB.data, out


async def test_samply_symsrv_crate_fetches_a_pdb(tmp_path: Path, start_proxy: StartProxy) -> None:
    proxy = await start_proxy(native_store(tmp_path / "store", PDB))
    name, ident, _ = PDB.keys["symsrv"][0].split("/")
    symbol_path = f"srv*{tmp_path / 'downstream'}*{proxy.make_url('/symbols')}"
    code, out = await run(symsrv_client(), symbol_path, name, ident, env={"HOME": str(tmp_path)})
    assert code == 0, out
    assert Path(out.strip().splitlines()[-1]).read_bytes() == PDB.data
    # The crate asks for crash.pdb and crash.pd_ at once and drops the loser: only the plain file
    # may end up cached (issue 7, item 11).
    state = app_of(proxy)[STATE]
    for _ in range(1200):
        if state.downloads.in_flight == 0:
            break
        await asyncio.sleep(0.05)
    assert state.cache.count == 1


async def test_rust_minidump_breakpad_supplier_fetches_a_sym_file(
    tmp_path: Path, start_proxy: StartProxy
) -> None:
    proxy = await start_proxy(native_store(tmp_path / "store", BREAKPAD))
    debug_file, debug_id, _ = key_of(BREAKPAD).split("/")
    (tmp_path / "tmp").mkdir()
    code, out = await run(
        breakpad_client(),
        str(proxy.make_url("/symbols/")),
        str(tmp_path / "cache"),
        str(tmp_path / "tmp"),
        debug_file,
        debug_id,
    )
    assert code == 0, out
    fetched = Path(out.strip().splitlines()[-1]).read_bytes()
    # The supplier appends an `INFO URL <where it came from>` line to the files it caches.
    assert fetched.startswith(BREAKPAD.data), out
    assert all(line.startswith(b"INFO URL ") for line in fetched[len(BREAKPAD.data) :].splitlines()), fetched[
        -200:
    ]
