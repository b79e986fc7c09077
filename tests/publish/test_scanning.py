"""Scanning and keys, table-driven from the fixtures' MANIFEST.json.

Covered: ``--dry-run --format json`` over the whole fixture folder gives, for every file of the
manifest, exactly the objects (every slice of a universal Mach-O) and keys the manifest lists; the
files with no key in the manifest are the ones reported as skipped, with the reason; two files that
claim one key are a reported conflict, not a guess; unreadable, truncated and non-debug files are
reported and skipped, and the exit code says so; nothing publishable is its own exit code.
"""

from __future__ import annotations

import io
import json
import os
import zipfile
from pathlib import Path
from typing import Any

import pytest

from symbol_publish.cli import ExitCode
from tests.publish.conftest import KEYLESS_OK, fixture_paths_by_client_key, manifest_keys
from tests.support import shared


def _exclusions() -> list[str]:
    return [arg for pattern in KEYLESS_OK for arg in ("--exclude", pattern)]


def test_dry_run_gives_the_manifest_keys_of_every_fixture(run_cli: Any) -> None:
    result = run_cli(shared.FIXTURES, "--dry-run", "--format", "json", *_exclusions())
    document = result.json()
    found = {f["path"]: [o["keys"] for o in f["objects"]] for f in document["files"]}
    expected = manifest_keys()
    readable = {path: objects for path, objects in expected.items() if objects}
    assert found == readable
    for path in readable:  # ids too, as symbolic and the manifest's other tools agree
        manifest_objects = next(f for f in shared.manifest()["files"] if f["path"] == path)["objects"]
        ours = next(f for f in document["files"] if f["path"] == path)["objects"]
        assert [(o["debug_id"], o["code_id"], o["arch"]) for o in ours] == [
            (o["debug_id"], o["code_id"], o["arch"]) for o in manifest_objects
        ]

    skipped = {s["path"]: s for s in document["skipped"]}
    keyless = {path for path, objects in expected.items() if not any(objects)}
    # The dSYM bundle's Info.plist is the bundle's metadata: not a skipped file, not published.
    assert set(skipped) - {"breakpad/mac/crash.sym", "elf/crash.debug-zstd"} == keyless - {
        "macho/crash.dSYM/Contents/Info.plist"
    }
    assert result.code == ExitCode.SKIPPED


def test_two_files_claiming_one_key_are_a_reported_conflict(run_cli: Any) -> None:
    document = run_cli(shared.FIXTURES, "--dry-run", "--format", "json", *_exclusions()).json()
    claims = fixture_paths_by_client_key()
    published = {e["key"]: e["path"] for e in document["entries"]}
    conflicts = {s["path"]: s["reason"] for s in document["skipped"] if s["category"] == "conflict"}
    shared_keys = {key: paths for key, paths in claims.items() if len(paths) > 1}
    assert shared_keys, "the fixture set has files that claim the same key"
    for key, paths in shared_keys.items():
        winner = published[key]
        assert winner == min(paths)  # the first in path order keeps the key
        for loser in paths - {winner}:
            assert key in conflicts[loser] and winner in conflicts[loser]


def test_every_client_key_is_an_entry_once(run_cli: Any) -> None:
    document = run_cli(shared.FIXTURES, "--dry-run", "--format", "json", *_exclusions()).json()
    keys = [e["key"].lower() for e in document["entries"]]
    assert len(keys) == len(set(keys))
    assert set(keys) == {key.lower() for key in fixture_paths_by_client_key()}


def test_table_output_lists_every_entry(run_cli: Any) -> None:
    result = run_cli(shared.FIXTURES / "pdb", "--dry-run")
    assert result.code == ExitCode.OK
    for path, objects in manifest_keys().items():
        if path.startswith("pdb/"):
            assert objects[0]["symsrv"][0] in result.out


def _broken_tree(root: Path) -> dict[str, str]:
    """A directory with one good file and broken ones; returns path → expected category."""
    good = shared.FIXTURES / "pdb" / "crash.pdb"
    (root / "sub").mkdir(parents=True)
    (root / "crash.pdb").write_bytes(good.read_bytes())
    (root / "truncated.exe").write_bytes((shared.FIXTURES / "pe" / "crash.exe").read_bytes()[:300])
    (root / "sub" / "truncated.so").write_bytes((shared.FIXTURES / "elf" / "crash").read_bytes()[:200])
    (root / "notes.txt").write_text("not a debug file\n")
    (root / "sub" / "empty.dll").write_bytes(b"")
    os.symlink(root / "gone.pdb", root / "dangling.pdb")
    return {
        "truncated.exe": "broken",
        "sub/truncated.so": "broken",
        "notes.txt": "not-debug",
        "sub/empty.dll": "not-debug",
        "dangling.pdb": "unreadable",
    }


def test_unreadable_truncated_and_non_debug_files_are_reported_and_skipped(
    run_cli: Any, tmp_path: Path
) -> None:
    expected = _broken_tree(tmp_path / "build")
    result = run_cli(tmp_path / "build", "--dry-run", "--format", "json")
    assert result.code == ExitCode.SKIPPED
    document = result.json()
    assert {s["path"]: s["category"] for s in document["skipped"]} == expected
    assert [e["path"] for e in document["entries"]] == [
        "crash.pdb"
    ]  # SymSrv and SSQP keys agree but for case
    for path in expected:
        assert f"skipped {path}: " in result.err


def test_only_broken_files_is_nothing_to_publish(run_cli: Any, tmp_path: Path) -> None:
    expected = _broken_tree(tmp_path / "build")
    (tmp_path / "build" / "crash.pdb").unlink()
    store = tmp_path / "store"
    result = run_cli(tmp_path / "build", "--store", store)
    assert result.code == ExitCode.NOTHING_TO_PUBLISH
    assert "nothing to publish" in result.err
    assert not store.exists() or not any(store.rglob("*"))
    assert len(expected) == result.err.count("skipped ")


@pytest.mark.parametrize(
    ("args", "published"),
    [
        (("--include", "*.pdb"), {"pdb/crash.pdb", "pdb/basic32-min.pdb"}),
        (("--include", "pdb/*", "--exclude", "basic*"), {"pdb/crash.pdb"}),
    ],
)
def test_include_and_exclude_globs(run_cli: Any, args: tuple[str, ...], published: set[str]) -> None:
    document = run_cli(
        shared.FIXTURES,
        "--dry-run",
        "--format",
        "json",
        "--exclude",
        "HelloWorld*",
        "--exclude",
        "dump*",
        "--exclude",
        "omap*",
        "--exclude",
        "portablepdb/*",
        *args,
    ).json()
    assert {e["path"] for e in document["entries"]} == published


def _source_bundle(path: Path, debug_id: str, debug_file: str) -> None:
    """A Symbolicator source bundle: the ``SYSB`` header, version 2, then a zip with a manifest."""
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as bundle:
        manifest = {
            "files": {"files/src/main.c": {"type": "source", "path": "/src/main.c"}},
            "debug_id": debug_id,
            "debug_file": debug_file,
            "arch": "x86",
        }
        bundle.writestr("manifest.json", json.dumps(manifest))
        bundle.writestr("files/src/main.c", "int main(void) { return 0; }\n")
    path.write_bytes(b"SYSB" + (2).to_bytes(4, "little") + buffer.getvalue())


def test_a_source_bundle_is_published_beside_its_pdb(run_cli: Any, tmp_path: Path) -> None:
    pdb = next(f for f in shared.manifest()["files"] if f["path"] == "pdb/crash.pdb")
    pdb_key = pdb["objects"][0]["keys"]["symsrv"][0]
    _source_bundle(tmp_path / "crash.src.zip", pdb["debug_id"], "crash.pdb")
    _source_bundle(tmp_path / "libfoo.src.zip", pdb["debug_id"], "libfoo.so")
    document = run_cli(tmp_path, "--dry-run", "--format", "json").json()
    name, ident, _ = pdb_key.split("/")
    assert [e["key"] for e in document["entries"]] == [f"{name}/{ident}/crash.src.zip"]
    assert [(s["path"], s["category"]) for s in document["skipped"]] == [("libfoo.src.zip", "no-identifier")]


def test_the_same_file_twice_is_published_once_without_a_conflict(run_cli: Any, tmp_path: Path) -> None:
    pdb = (shared.FIXTURES / "pdb" / "crash.pdb").read_bytes()
    for folder in ("obj/Release", "bin/Release"):
        (tmp_path / folder).mkdir(parents=True)
        (tmp_path / folder / "crash.pdb").write_bytes(pdb)
    result = run_cli(tmp_path, "--dry-run", "--format", "json")
    assert result.code == ExitCode.OK, result.err
    document = result.json()
    assert [e["path"] for e in document["entries"]] == ["bin/Release/crash.pdb"]
    assert document["skipped"] == []
