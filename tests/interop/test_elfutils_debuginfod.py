"""elfutils' own debuginfod server on both sides of the proxy, for every request kind.

* In front of ``debuginfod -F <dir>``: the proxy's source is ``type: http`` with
  ``layout: debuginfod``, so ``debuginfo``/``executable`` are store lookups and ``section``/``source``
  are passed through to the server that computes them.
* Behind a federating ``debuginfod`` (``DEBUGINFOD_URLS`` pointing at the proxy): elfutils' server
  asks the proxy as a client would, for files, sections and sources.

Every answer reaches ``debuginfod-find`` and is compared byte for byte with the original.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
from collections.abc import AsyncIterator, Callable
from pathlib import Path

import aiohttp
import pytest

from tests.conftest import StartProxy
from tests.interop.programs import Program, dump_section, unified_source, unified_store
from tests.interop.test_debuginfod_clients import require, run
from tests.support.net import free_port

pytestmark = pytest.mark.interop

StartDebuginfod = Callable[..., "asyncio.Future[str]"]


@pytest.fixture
async def start_debuginfod(tmp_path: Path) -> AsyncIterator[Callable[..., object]]:
    """``await start_debuginfod(*args, env=...)`` runs elfutils' server and returns its URL."""
    processes: list[asyncio.subprocess.Process] = []

    async def start(*args: str, env: dict[str, str] | None = None) -> str:
        port = free_port()
        n = len(processes)
        process = await asyncio.create_subprocess_exec(
            require("debuginfod"),
            "-p",
            str(port),
            "-d",
            str(tmp_path / f"debuginfod-{n}.sqlite"),
            *args,
            stdout=asyncio.subprocess.DEVNULL,
            stderr=open(tmp_path / f"debuginfod-{n}.log", "wb"),  # noqa: SIM115 - the process owns it
            env={**os.environ, "HOME": str(tmp_path), **(env or {})},
        )
        processes.append(process)
        url = f"http://127.0.0.1:{port}"
        async with aiohttp.ClientSession() as session:
            for _ in range(300):
                with contextlib.suppress(aiohttp.ClientError):
                    async with session.get(f"{url}/metrics") as response:
                        if response.status == 200:
                            return url
                await asyncio.sleep(0.1)
        raise AssertionError(f"debuginfod did not start: {(tmp_path / f'debuginfod-{n}.log').read_text()}")

    yield start
    for process in processes:
        with contextlib.suppress(ProcessLookupError):
            process.terminate()
        await process.wait()


async def wait_for_index(url: str, build_id: str) -> None:
    """Until ``debuginfod -F`` has scanned its directory and serves the build id."""
    async with aiohttp.ClientSession() as session:
        for _ in range(600):
            async with session.get(f"{url}/buildid/{build_id}/debuginfo") as response:
                if response.status == 200:
                    return
            await asyncio.sleep(0.1)
    raise AssertionError("debuginfod never indexed the program")


async def fetch_all(env: dict[str, str], program: Program, tmp_path: Path) -> None:
    """debuginfo, executable, source and two sections through ``DEBUGINFOD_URLS``, checked byte for byte."""
    find = require("debuginfod-find")
    expected: list[tuple[tuple[str, ...], bytes]] = [
        (("debuginfo", program.build_id), program.debug.read_bytes()),
        (("executable", program.build_id), program.binary.read_bytes()),
        (("source", program.build_id, program.source_path), program.source),
        (
            ("section", program.build_id, ".debug_info"),
            await dump_section(program.debug, ".debug_info", tmp_path / "di"),
        ),
        (
            ("section", program.build_id, ".text"),
            await dump_section(program.binary, ".text", tmp_path / "tx"),
        ),
    ]
    for argv, data in expected:
        code, out = await run(find, *argv, env=env)
        assert code == 0, (argv, out)
        assert Path(out.strip().splitlines()[-1]).read_bytes() == data, argv


async def test_the_proxy_in_front_of_elfutils_debuginfod_serves_every_request_kind(
    tmp_path: Path,
    start_proxy: StartProxy,
    start_debuginfod: Callable[..., object],
    program_with_source: Program,
) -> None:
    program = program_with_source
    files = tmp_path / "files"
    files.mkdir()
    (files / "square").write_bytes(program.binary.read_bytes())
    (files / "square.debug").write_bytes(program.debug.read_bytes())
    url = await start_debuginfod("-F", str(files))  # type: ignore[misc]
    await wait_for_index(url, program.build_id)
    proxy = await start_proxy(
        [{"id": "elfutils", "type": "http", "url": f"{url}/buildid/", "layout": {"type": "debuginfod"}}]
    )
    env = {
        "DEBUGINFOD_URLS": str(proxy.make_url("/")).rstrip("/"),
        "DEBUGINFOD_CACHE_PATH": str(tmp_path / "cc"),
    }
    await fetch_all(env, program, tmp_path)


async def test_elfutils_debuginfod_federates_through_the_proxy(
    tmp_path: Path,
    start_proxy: StartProxy,
    start_debuginfod: Callable[..., object],
    program_with_source: Program,
) -> None:
    program = program_with_source
    store = unified_store(tmp_path / "store", program)
    Path(program.source_path).unlink()  # the source bundle behind the proxy is the only copy now
    proxy = await start_proxy(unified_source(store))
    url = await start_debuginfod(  # type: ignore[misc]
        env={
            "DEBUGINFOD_URLS": str(proxy.make_url("/")).rstrip("/"),
            "DEBUGINFOD_CACHE_PATH": str(tmp_path / "federation-cache"),
        }
    )
    env = {"DEBUGINFOD_URLS": url, "DEBUGINFOD_CACHE_PATH": str(tmp_path / "cc")}
    await fetch_all(env, program, tmp_path)
