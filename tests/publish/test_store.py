"""``--store``: the fixtures written into a local store, then served by the real proxy.

Covered, per layout (symstore, native, debuginfod, slashsymbols): every manifest key of the kinds
that layout serves is fetched through the proxy byte-identical to the file that owns it (the first
in path order when two files claim it); a second run writes nothing and reports everything as
already there; a path taken by other bytes is a reported conflict and keeps its bytes; no temporary
file is left in the store.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import aiohttp
import pytest

from symbol_publish.cli import ExitCode
from tests.conftest import StartProxy
from tests.publish.conftest import KEYLESS_OK, manifest_keys, run_process
from tests.support import shared

EXCLUDES = [arg for pattern in KEYLESS_OK for arg in ("--exclude", pattern)]


def _url(kind: str, key: str) -> str:
    return f"/{key}" if kind == "debuginfod" else f"/symbols/{key}"


@pytest.mark.parametrize(
    ("layout", "kinds"),
    [
        ("symstore", ("symsrv", "ssqp")),
        ("native", ("symsrv", "breakpad", "debuginfod")),
        ("debuginfod", ("debuginfod",)),
        ("slashsymbols", ("symsrv", "ssqp")),
    ],
)
async def test_every_manifest_key_is_served_from_the_published_store(
    tmp_path: Path, start_proxy: StartProxy, http: aiohttp.ClientSession, layout: str, kinds: tuple[str, ...]
) -> None:
    store = tmp_path / "store"
    first = run_process(shared.FIXTURES, "--store", store, "--layout", layout, *EXCLUDES)
    assert first.code == ExitCode.SKIPPED, first.err  # the fixtures hold keyless and conflicting files
    assert " files written to " in first.out

    server = await start_proxy(
        [{"id": "local", "type": "filesystem", "path": str(store), "layout": {"type": layout}}]
    )
    # slashsymbols keeps a file as <code file name>/<code id>/symbols: the keys that name such a file
    # are answered (not a PDB's, which has no code id, nor an SSQP ``_.debug``/``_.dwarf`` key).
    stored_names = {p.relative_to(store).parts[0] for p in store.rglob("*") if p.is_file()}
    owners: dict[str, str] = {}
    fetched = 0
    for path in sorted(manifest_keys()):
        for keys in manifest_keys()[path]:
            for kind in kinds:
                for key in keys.get(kind, []):
                    if layout == "slashsymbols" and key.split("/")[0] not in stored_names:
                        continue
                    owner = owners.setdefault(key.lower(), path)
                    async with http.get(server.make_url(_url(kind, key))) as response:
                        body = await response.read()
                        assert response.status == 200, (layout, kind, key)
                    assert body == (shared.FIXTURES / owner).read_bytes(), (layout, kind, key, owner)
                    fetched += 1
    assert fetched >= 10, fetched
    assert not [p for p in store.rglob(".*") if ".tmp-" in p.name]

    again = run_process(shared.FIXTURES, "--store", store, "--layout", layout, *EXCLUDES)
    assert again.code == ExitCode.SKIPPED
    assert " 0 files written " in again.out and " already there" in again.out


def test_a_path_taken_by_other_bytes_is_a_conflict_and_keeps_its_bytes(run_cli: Any, tmp_path: Path) -> None:
    store = tmp_path / "store"
    key = manifest_keys()["pdb/crash.pdb"][0]["symsrv"][0]
    (store / key).parent.mkdir(parents=True)
    (store / key).write_bytes(b"someone else's file")
    result = run_cli(shared.FIXTURES / "pdb" / "crash.pdb", "--store", store)
    assert result.code == ExitCode.SKIPPED
    assert f"conflict: {key} holds other bytes" in result.err
    assert (store / key).read_bytes() == b"someone else's file"


def test_a_layout_without_a_place_for_a_format_says_so(run_cli: Any, tmp_path: Path) -> None:
    result = run_cli(shared.FIXTURES / "breakpad" / "linux", "--store", tmp_path / "store")
    assert result.code == ExitCode.NOTHING_TO_PUBLISH
    assert "the symstore layout has no place for breakpad files (try --layout native)" in result.err
    native = run_cli(
        shared.FIXTURES / "breakpad" / "linux", "--store", tmp_path / "store", "--layout", "native"
    )
    assert native.code == ExitCode.OK, native.err
