"""A small C program for the interop tests, and stores that hold its parts.

The program is compiled with an absolute source path, split into a stripped executable and a debug
file (``objcopy --only-keep-debug``); ``unified_store`` lays the parts out as Sentry's unified layout,
with a Symbolicator source bundle holding the source.
"""

from __future__ import annotations

import dataclasses
from pathlib import Path

from tests.interop.test_debuginfod_clients import build_id_of, compile_and_split, require, run
from tests.support.sourcebundles import write_source_bundle

__all__ = ["Program", "build_program", "client_env", "dump_section", "unified_source", "unified_store"]


@dataclasses.dataclass(frozen=True)
class Program:
    binary: Path
    debug: Path
    build_id: str
    source_path: str
    source: bytes


async def dump_section(path: Path, name: str, out: Path) -> bytes:
    """The section as binutils sees it."""
    code, text = await run(require("objcopy"), "--dump-section", f"{name}={out}", str(path), str(out) + ".o")
    assert code == 0, text
    return out.read_bytes()


def unified_store(root: Path, program: Program, *, bundle: bool = True) -> Path:
    folder = root / program.build_id[:2] / program.build_id[2:]
    folder.mkdir(parents=True)
    (folder / "debuginfo").write_bytes(program.debug.read_bytes())
    (folder / "executable").write_bytes(program.binary.read_bytes())
    if bundle:
        (folder / "sourcebundle").write_bytes(
            write_source_bundle(
                {program.source_path: program.source},
                code_id=program.build_id,
                debug_id=program.build_id[:32],
                name="square",
            )
        )
    return root


def unified_source(store: Path) -> list[dict[str, object]]:
    return [{"id": "u", "type": "filesystem", "path": str(store), "layout": {"type": "unified"}}]


def client_env(proxy_url: str, tmp_path: Path) -> dict[str, str]:
    return {
        "DEBUGINFOD_URLS": proxy_url.rstrip("/"),
        "DEBUGINFOD_CACHE_PATH": str(tmp_path / "client-cache"),
        "HOME": str(tmp_path),
    }


async def build_program(tmp_path: Path) -> Program:
    """Compile the program from ``tmp_path/build/src/square.c`` and split it."""
    src = tmp_path / "build" / "src"
    src.mkdir(parents=True)
    source = src / "square.c"
    binary, debug = await compile_and_split(source, tmp_path)
    return Program(binary, debug, await build_id_of(binary), str(source), source.read_bytes())
