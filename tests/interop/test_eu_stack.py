"""elfutils' ``eu-stack`` symbolises a core file of a stripped binary with debug info from the proxy.

The core is written by gdb's ``gcore`` while the program stops in ``square`` (gdb finds the debug
file locally for that, in a ``.build-id`` tree that is removed afterwards). Without the proxy,
``eu-stack`` sees no names for the program's frames; with it, ``square`` and ``main`` and their lines.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.conftest import StartProxy
from tests.interop.programs import Program, client_env, unified_source, unified_store
from tests.interop.test_debuginfod_clients import require, run

pytestmark = pytest.mark.interop


async def write_core(program: Program, tmp_path: Path) -> Path:
    debug_dir = tmp_path / "local-debug"
    by_id = debug_dir / ".build-id" / program.build_id[:2] / f"{program.build_id[2:]}.debug"
    by_id.parent.mkdir(parents=True)
    by_id.write_bytes(program.debug.read_bytes())
    core = tmp_path / "square.core"
    _, out = await run(
        require("gdb"),
        "-q",
        "-nx",
        "-batch",
        "-iex",
        "set debuginfod enabled off",
        "-iex",
        f"set debug-file-directory {debug_dir}",
        "-ex",
        "break square",
        "-ex",
        "run",
        "-ex",
        f"gcore {core}",
        "-ex",
        "kill",
        str(program.binary),
        env={"HOME": str(tmp_path), "DEBUGINFOD_URLS": ""},
    )
    assert core.exists(), out
    by_id.unlink()
    return core


async def test_eu_stack_names_the_frames_of_a_core_through_the_proxy(
    tmp_path: Path, start_proxy: StartProxy, program: Program
) -> None:
    core = await write_core(program, tmp_path)
    alone = tmp_path / "alone" / program.binary.name  # elfutils would find square.debug beside it
    alone.parent.mkdir()
    alone.write_bytes(program.binary.read_bytes())
    argv = (require("eu-stack"), "--core", str(core), "--executable", str(alone), "-s")
    _, out = await run(*argv, env={"DEBUGINFOD_URLS": "", "HOME": str(tmp_path)})
    assert " square" not in out, out
    proxy = await start_proxy(unified_source(unified_store(tmp_path / "store", program)))
    _, out = await run(*argv, env=client_env(str(proxy.make_url("/")), tmp_path))
    frames = [line.split()[-1] for line in out.splitlines() if line.startswith("#")]
    assert frames[:2] == ["square", "main"], out
    assert f"{program.source_path}:" in out, out
