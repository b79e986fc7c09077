"""Real debuginfod clients against the proxy: gdb and elfutils' debuginfod-find.

A small C program is compiled in the test with a GNU build id; its debug information is split off
with objcopy and the binary stripped. The debug file is put only into a store behind the proxy, so
gdb can resolve ``info line main`` only if it fetched the debug file through the proxy.
"""

from __future__ import annotations

import asyncio
import os
import shutil
from pathlib import Path

import pytest

from tests.conftest import StartProxy

pytestmark = pytest.mark.interop

PROGRAM = r"""
#include <stdio.h>

static int square(int x) {
    return x * x;
}

int main(void) {
    printf("%d\n", square(7));
    return 0;
}
"""


def require(tool: str) -> str:
    path = shutil.which(tool)
    assert path, f"{tool} is not installed; run scripts/setup --test"
    return path


async def run(*argv: str, env: dict[str, str] | None = None, cwd: Path | None = None) -> tuple[int, str]:
    process = await asyncio.create_subprocess_exec(
        *argv,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.STDOUT,
        env={**os.environ, **(env or {})},
        cwd=cwd,
    )
    out, _ = await asyncio.wait_for(process.communicate(), timeout=120)
    assert process.returncode is not None
    return process.returncode, out.decode(errors="replace")


async def build_id_of(path: Path) -> str:
    code, out = await run(require("readelf"), "-n", str(path))
    assert code == 0, out
    for line in out.splitlines():
        if "Build ID:" in line:
            return line.split("Build ID:")[1].strip()
    raise AssertionError(f"no build id in {path}: {out}")


@pytest.fixture
async def stripped_program(tmp_path: Path) -> tuple[Path, Path, str]:
    """(stripped binary, its separate debug file, build id)."""
    source = tmp_path / "square.c"
    binary, debug = await compile_and_split(source, tmp_path)
    source.unlink()  # gdb must not find anything next to the binary
    return binary, debug, await build_id_of(binary)


async def compile_and_split(source: Path, out_dir: Path) -> tuple[Path, Path]:
    """Compile ``PROGRAM`` from ``source`` (its absolute path goes into the debug information), then
    split it: (stripped binary, separate debug file)."""
    source.write_text(PROGRAM)
    binary = out_dir / "square"
    code, out = await run(
        require("gcc"), "-g", "-O0", "-Wl,--build-id", "-o", str(binary), str(source), cwd=source.parent
    )
    assert code == 0, out
    debug = out_dir / "square.debug"
    code, out = await run(require("objcopy"), "--only-keep-debug", str(binary), str(debug))
    assert code == 0, out
    code, out = await run(require("strip"), "--strip-debug", "--strip-unneeded", str(binary))
    assert code == 0, out
    return binary, debug


async def test_gdb_resolves_a_line_of_a_stripped_binary_through_the_proxy(
    tmp_path: Path, start_proxy: StartProxy, stripped_program: tuple[Path, Path, str]
) -> None:
    binary, debug, build_id = stripped_program
    store = tmp_path / "store"
    (store / build_id).mkdir(parents=True)
    (store / build_id / "debuginfo").write_bytes(debug.read_bytes())
    debug.unlink()
    proxy = await start_proxy(
        [{"id": "store", "type": "filesystem", "path": str(store), "layout": {"type": "debuginfod"}}]
    )
    env = {
        "DEBUGINFOD_URLS": str(proxy.make_url("")).rstrip("/"),
        "DEBUGINFOD_CACHE_PATH": str(tmp_path / "client-cache"),
        "HOME": str(tmp_path),
    }
    # Without the proxy, gdb finds no line information.
    code, out = await run(
        require("gdb"),
        "-q",
        "-nx",
        "-batch",
        "-ex",
        "info line main",
        str(binary),
        env={"DEBUGINFOD_URLS": "", "HOME": str(tmp_path)},
    )
    assert "square.c" not in out, out
    code, out = await run(
        require("gdb"),
        "-q",
        "-nx",
        "-batch",
        "-iex",
        "set debuginfod enabled on",
        "-ex",
        "info line main",
        str(binary),
        env=env,
    )
    assert code == 0, out
    assert "square.c" in out and "Line" in out, out


async def test_debuginfod_find_fetches_debuginfo_and_reports_a_miss(
    tmp_path: Path, start_proxy: StartProxy, stripped_program: tuple[Path, Path, str]
) -> None:
    binary, debug, build_id = stripped_program
    store = tmp_path / "store"
    (store / build_id).mkdir(parents=True)
    (store / build_id / "debuginfo").write_bytes(debug.read_bytes())
    (store / build_id / "executable").write_bytes(binary.read_bytes())
    proxy = await start_proxy(
        [{"id": "store", "type": "filesystem", "path": str(store), "layout": {"type": "debuginfod"}}]
    )
    env = {
        "DEBUGINFOD_URLS": str(proxy.make_url("")).rstrip("/"),
        "DEBUGINFOD_CACHE_PATH": str(tmp_path / "client-cache"),
    }
    find = require("debuginfod-find")
    code, out = await run(find, "-v", "debuginfo", build_id, env=env)
    assert code == 0, out
    fetched = Path(out.strip().splitlines()[-1])
    assert fetched.read_bytes() == debug.read_bytes()
    assert "x-debuginfod-size" in out.lower(), out

    code, out = await run(find, "executable", build_id, env=env)
    assert code == 0, out
    assert Path(out.strip().splitlines()[-1]).read_bytes() == binary.read_bytes()

    missing = "ab" * 20
    code, out = await run(find, "debuginfo", missing, env=env)
    assert code != 0
    assert "No such file" in out or "not found" in out.lower(), out
