"""LLVM's debuginfod clients against the proxy: ``llvm-debuginfod-find`` and ``llvm-symbolizer``.

Debian bookworm's ``llvm`` package (LLVM 14) ships both; ``llvm-debuginfod-find`` is only under
``/usr/lib/llvm-14/bin``.
"""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from tests.conftest import StartProxy
from tests.interop.programs import Program, client_env, unified_source, unified_store
from tests.interop.test_debuginfod_clients import run

pytestmark = pytest.mark.interop

LLVM_BIN = Path("/usr/lib/llvm-14/bin")


def llvm_tool(name: str) -> str:
    path = shutil.which(name) or shutil.which(name, path=str(LLVM_BIN))
    assert path, f"{name} is not installed (Debian package llvm); run scripts/setup --test"
    return path


async def test_llvm_debuginfod_find_fetches_every_kind_through_the_proxy(
    tmp_path: Path, start_proxy: StartProxy, program: Program
) -> None:
    proxy = await start_proxy(unified_source(unified_store(tmp_path / "store", program)))
    env = client_env(str(proxy.make_url("/")), tmp_path)
    find = llvm_tool("llvm-debuginfod-find")
    for flag, expected in (("--debuginfo", program.debug), ("--executable", program.binary)):
        code, out = await run(find, flag, program.build_id, env=env)
        assert code == 0, out
        assert Path(out.strip().splitlines()[-1]).read_bytes() == expected.read_bytes(), flag
    code, out = await run(find, f"--source={program.source_path}", program.build_id, env=env)
    assert code == 0, out
    assert Path(out.strip().splitlines()[-1]).read_bytes() == program.source

    code, out = await run(find, "--debuginfo", "ab" * 20, env=env)
    assert code != 0, out


async def test_llvm_symbolizer_resolves_main_of_a_stripped_binary_through_the_proxy(
    tmp_path: Path, start_proxy: StartProxy, program: Program
) -> None:
    code, out = await run("nm", str(program.debug))
    assert code == 0, out
    address = next(line.split()[0] for line in out.splitlines() if line.endswith(" main"))
    proxy = await start_proxy(unified_source(unified_store(tmp_path / "store", program)))
    symbolizer = llvm_tool("llvm-symbolizer")
    argv = (symbolizer, f"--obj={program.binary}", f"0x{address}")
    code, out = await run(*argv, env={"DEBUGINFOD_URLS": ""})
    assert "square.c" not in out, out  # nothing to go on without the proxy
    code, out = await run(*argv, env=client_env(str(proxy.make_url("/")), tmp_path))
    assert code == 0, out
    assert out.splitlines()[0] == "main", out
    assert f"{program.source_path}:" in out, out
