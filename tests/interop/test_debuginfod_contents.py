"""debuginfod ``section`` and ``source`` requests through the proxy, with real clients.

A small C program is compiled with an absolute source path, split into a stripped executable and a
debug file, and its source is deleted from disk. The stores behind the proxy hold the debug file,
the executable and a Symbolicator source bundle; the clients (elfutils' ``debuginfod-find``, gdb)
must get byte-identical sections and sources through the proxy alone.
"""

from __future__ import annotations

from pathlib import Path

import aiohttp
import pytest

from tests.conftest import StartProxy
from tests.interop.programs import Program, client_env, dump_section, unified_source, unified_store
from tests.interop.test_debuginfod_clients import require, run

pytestmark = pytest.mark.interop


async def test_debuginfod_find_section_from_debug_file_and_executable(
    tmp_path: Path, start_proxy: StartProxy, program: Program, http: aiohttp.ClientSession
) -> None:
    store = unified_store(tmp_path / "store", program, bundle=False)
    proxy = await start_proxy(unified_source(store))
    env = client_env(str(proxy.make_url("/")), tmp_path)
    find = require("debuginfod-find")

    # .debug_info has content only in the debug file; .text only in the executable (the debug file
    # keeps a NOBITS placeholder for it).
    for name, origin in ((".debug_info", program.debug), (".text", program.binary)):
        code, out = await run(find, "-v", "section", program.build_id, name, env=env)
        assert code == 0, out
        fetched = Path(out.strip().splitlines()[-1]).read_bytes()
        assert fetched == await dump_section(origin, name, tmp_path / f"expected{name}")
        assert f"/buildid/{program.build_id}/section/{name}" in out, out  # asked the proxy for it

    code, out = await run(find, "section", program.build_id, ".no_such_section", env=env)
    assert code != 0, out
    for path in (f"/buildid/{program.build_id}/section/.nope", f"/buildid/{'ab' * 20}/section/.text"):
        async with http.get(proxy.make_url(path)) as response:
            assert response.status == 404, path


async def test_debuginfod_find_source_from_a_source_bundle(
    tmp_path: Path, start_proxy: StartProxy, program: Program
) -> None:
    store = unified_store(tmp_path / "store", program)
    proxy = await start_proxy(unified_source(store))
    env = client_env(str(proxy.make_url("/")), tmp_path)
    find = require("debuginfod-find")
    code, out = await run(find, "source", program.build_id, program.source_path, env=env)
    assert code == 0, out
    assert Path(out.strip().splitlines()[-1]).read_bytes() == program.source

    code, out = await run(find, "source", program.build_id, "/nowhere/else.c", env=env)
    assert code != 0, out


async def test_gdb_lists_main_of_a_stripped_binary_with_sources_from_a_bundle(
    tmp_path: Path, start_proxy: StartProxy, program: Program
) -> None:
    store = unified_store(tmp_path / "store", program)
    proxy = await start_proxy(unified_source(store))
    gdb = require("gdb")
    argv = (
        gdb,
        "-q",
        "-nx",
        "-batch",
        "-iex",
        "set debuginfod enabled on",
        "-ex",
        "list main",
        str(program.binary),
    )
    code, out = await run(*argv, env=client_env(str(proxy.make_url("/")), tmp_path))
    assert code == 0, out
    assert 'printf("%d\\n", square(7));' in out, out

    # The same without the bundle: gdb has the line table but no source to list.
    bare = unified_store(tmp_path / "bare", program, bundle=False)
    proxy = await start_proxy(unified_source(bare))
    code, out = await run(*argv, env=client_env(str(proxy.make_url("/")), tmp_path / "second"))
    assert "square(7)" not in out, out
