"""The publish CLI's pure key computation (``symbol_publish.identities``), object by object.

The CLI tests (``test_scanning.py``, ``test_store.py``) check the keys of every fixture against the
manifest; these check the rules behind them on each real fixture object (scanned in process) and
on the cases the fixtures do not hold:

- the file types an object serves as (an unstripped ELF is code *and* debug file);
- why an object cannot be published under a symbol-server key, in the words the CLI prints;
- client keys are distinct case-insensitively, SymSrv's spelling first;
- store paths: never a compressed ``_`` twin, no path twice, the lowercase spelling of a name beside
  its own only in the case-folded layouts (SymSrv, SSQP, index2), WebAssembly only in ``unified``,
  nothing for an object without an identifier.
"""

from __future__ import annotations

import dataclasses
import functools

import pytest

from symbol_proxy.config import Layout, LayoutType
from symbol_proxy.objects import DebugId, FileType
from symbol_publish import identities, scanning
from symbol_publish.identities import Format, Identity
from symbol_publish.plans import Scanned
from tests.support import shared

F = FileType
FOLDED = {LayoutType.SYMSTORE, LayoutType.SSQP, LayoutType.SYMSTORE_INDEX2}
"""Layouts whose clients may ask in either spelling of a name (SymSrv as built, SSQP lowercased)."""
A_DEBUG_ID = DebugId.parse("99891b3e-d7ae-4c3b-abff-8a2b4a9b0c43-1")
NIL_DEBUG_ID = DebugId.parse("00000000-0000-0000-0000-000000000000")


def ident(fmt: Format, kind: str = "exe", *, debug: bool = False, **fields: object) -> Identity:
    values: dict[str, object] = {
        "name": "Crash.bin",
        "format": fmt,
        "kind": kind,
        "arch": "x86_64",
        "debug_id": A_DEBUG_ID,
        "code_id": "a1b2c3d4e5f60718293a4b5c6d7e8f9012345678",
        "features": frozenset({"debug"} if debug else set()),
        **fields,
    }
    return Identity(**values)  # type: ignore[arg-type]


@functools.cache
def fixture_objects() -> list[tuple[str, Identity]]:
    """Every object of every fixture file, as the CLI scans it."""
    return [
        (found.relative, identity)
        for found in scanning.scan(shared.FIXTURES)
        if isinstance(found, Scanned)
        for identity in found.identities
    ]


@pytest.mark.parametrize(
    ("identity", "roles"),
    [
        (ident(Format.ELF, "exe", debug=True), [F.ELF_CODE, F.ELF_DEBUG]),  # not stripped
        (ident(Format.ELF, "lib", debug=True), [F.ELF_CODE, F.ELF_DEBUG]),
        (ident(Format.ELF, "exe"), [F.ELF_CODE]),  # stripped
        (ident(Format.ELF, "dbg", debug=True), [F.ELF_DEBUG]),  # a split debug file
        (ident(Format.ELF, "other"), [F.ELF_CODE]),  # neither code nor debug info: kept as code
        (ident(Format.MACHO, "dbg", debug=True), [F.MACH_DEBUG]),  # a dSYM's DWARF file
        (ident(Format.MACHO, "exe", debug=True), [F.MACH_CODE]),
        (ident(Format.WASM, "exe", debug=True), [F.WASM_DEBUG]),
        (ident(Format.WASM, "exe"), [F.WASM_CODE]),
        (ident(Format.PE), [F.PE]),
        (ident(Format.PDB, "dbg", debug=True), [F.PDB]),
        (ident(Format.PORTABLEPDB, "dbg", debug=True), [F.PORTABLEPDB]),
        (ident(Format.BREAKPAD, "dbg", module_name="crash.pdb"), [F.BREAKPAD]),
    ],
    ids=lambda value: "-".join(value) if isinstance(value, list) else None,
)
def test_the_file_types_an_object_serves_as(identity: Identity, roles: list[FileType]) -> None:
    assert identity.roles() == roles


@pytest.mark.parametrize(
    ("identity", "reason"),
    [
        (ident(Format.ELF, code_id=None), "no code identifier (ELF without a GNU build id"),
        (
            ident(Format.MACHO, code_id=None),
            "no code identifier (ELF without a GNU build id, or a Mach-O without LC_UUID)",
        ),
        (ident(Format.PE, code_id=""), "no code identifier"),
        (ident(Format.PDB, debug_id=None), "no debug identifier"),
        (ident(Format.PORTABLEPDB, debug_id=NIL_DEBUG_ID), "no debug identifier"),
        (ident(Format.SOURCEBUNDLE, debug_id=NIL_DEBUG_ID, module_name="crash.pdb"), "no debug identifier"),
        (ident(Format.BREAKPAD, module_name=None), "no MODULE line"),
        (ident(Format.BREAKPAD, debug_id=None, module_name="crash.pdb"), "no MODULE line"),
        (
            ident(Format.SOURCEBUNDLE, module_name="libcrash.so"),
            "only source bundles of PDBs have a SymSrv key",
        ),
        (ident(Format.SOURCEBUNDLE, module_name=None), "only source bundles of PDBs"),
        (ident(Format.WASM), "no symbol-server key convention covers WebAssembly (use --layout unified)"),
        (ident(Format.ELF), None),
        (ident(Format.PDB, code_id=None), None),  # a PDB needs no code id
        (ident(Format.BREAKPAD, code_id=None, module_name="crash.pdb"), None),
        (ident(Format.SOURCEBUNDLE, module_name="Crash.PDB"), None),
    ],
)
def test_why_an_object_has_no_symbol_server_key(identity: Identity, reason: str | None) -> None:
    found = identity.keyable()
    if reason is None:
        assert found is None
        assert identities.keys(identity), "a keyable object has keys"
    else:
        assert found is not None and found.startswith(reason)  # what the CLI prints after "skipped <file>: "
        assert identities.keys(identity) == {}


def test_client_keys_are_distinct_case_insensitively_in_symsrv_spelling_first() -> None:
    mixed = 0
    for relative, identity in fixture_objects():
        found = identities.keys(identity)
        posted = identities.client_keys(identity)
        assert len({key.lower() for key in posted}) == len(posted), relative
        symsrv = found.get("symsrv", [])
        assert posted[: len(symsrv)] == symsrv, relative
        every = [key for kind in identities.CLIENT_KEY_KINDS for key in found.get(kind, [])]
        assert {key.lower() for key in posted} == {key.lower() for key in every}, relative
        mixed += any(key != key.lower() for key in symsrv) and bool(found.get("ssqp"))
    assert mixed >= 3  # enough objects whose SymSrv and SSQP keys differ only in case


def _spellings(identity: Identity) -> list[Identity]:
    """The object under its own name and under an all-uppercase one (as Windows builds name files)."""
    upper = identity.name.upper()
    return [identity] if upper == identity.name else [identity, dataclasses.replace(identity, name=upper)]


@pytest.mark.parametrize("layout_type", list(LayoutType))
def test_store_paths_hold_no_compressed_twin_and_both_spellings_only_where_clients_fold_case(
    layout_type: LayoutType,
) -> None:
    layout = Layout(type=layout_type)
    checked = 0
    for relative, scanned in fixture_objects():
        for identity in _spellings(scanned):
            paths = identities.store_paths(identity, layout)
            if identity.keyable() is not None and identity.format != Format.WASM:
                assert paths == [], relative
                continue
            assert len(set(paths)) == len(paths), (relative, paths)
            assert not [p for p in paths if p.endswith("_")], (relative, paths)
            if not paths:
                continue
            checked += 1
            segments = {segment for path in paths for segment in path.split("/")}
            lower = identity.name.lower()
            if identity.name in segments and lower != identity.name:
                assert (lower in segments) == (layout_type in FOLDED), (relative, identity.name, paths)
    assert checked >= 10


@pytest.mark.parametrize("layout_type", list(LayoutType))
def test_webassembly_goes_only_into_the_unified_layout_and_keyless_objects_nowhere(
    layout_type: LayoutType,
) -> None:
    layout = Layout(type=layout_type)
    wasm = [identity for _, identity in fixture_objects() if identity.format == Format.WASM]
    assert wasm
    for identity in wasm:
        assert bool(identities.store_paths(identity, layout)) == (layout_type == LayoutType.UNIFIED)
    # An ELF without a build id has no key in any layout, unified included.
    assert identities.store_paths(ident(Format.ELF, debug=True, code_id=None), layout) == []
