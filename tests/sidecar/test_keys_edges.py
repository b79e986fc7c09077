"""Edges of key parsing that the manifest and vector cases do not reach (found by mutation testing,
see ``docs/testing.md``): id length boundaries, the SSQP-padded twins of ELF build ids, names that
decide between the PDB and the PE reading, and the reason each refused key gives. A refused key is a
404 whose body carries that reason, so the reasons are checked by their key phrase."""

from __future__ import annotations

from collections.abc import Callable

import pytest

from symbol_proxy import keys
from symbol_proxy.objects import FileType, ObjectType

GUID_AGE = "3249D99D0C4049318610F4E4FB0B69361"  # any GUID + age; the shape is what matters here
BUILD_ID = "f1c3bcc0279865fe3058404b2831d9e64135386c"
UUID = "67e9247c814e392ba027dbde6748fcbf"


def code_ids(lookup: keys.Lookup) -> list[tuple[str | None, ObjectType]]:
    return [(a.query.code_id, a.query.object_type) for a in lookup.alternatives]


# --------------------------------------------------------------------------------------------------
# Ids


def _elf_ids(lookup: keys.Lookup) -> list[str]:
    """The ELF readings of a unified id, in probing order (even-length ids are also read as wasm
    code ids, which ``test_keys`` covers)."""
    return [code_id or "" for code_id, object_type in code_ids(lookup) if object_type is ObjectType.ELF]


@pytest.mark.parametrize("length", [8, 128])
def test_build_ids_of_8_and_128_digits_are_the_bounds(length: int) -> None:
    build_id = "1" * length
    assert keys.parse_debuginfod_request(build_id, "debuginfo").cache_key == f"buildid/{build_id}/debuginfo"
    path = f"{build_id[:2]}/{build_id[2:]}/executable"
    assert _elf_ids(keys.parse_unified_request(path)) == [build_id]
    for wrong in ("1" * 6, "1" * 130):
        with pytest.raises(keys.NotALookup):
            keys.parse_debuginfod_request(wrong, "debuginfo")


def test_a_16_digit_build_id_is_also_looked_up_zero_padded_to_40() -> None:
    short = BUILD_ID[:16]
    lookup = keys.parse_unified_request(f"{short[:2]}/{short[2:]}/debuginfo")
    assert _elf_ids(lookup) == [short, short.ljust(40, "0")]


def test_a_32_digit_build_id_is_also_looked_up_zero_padded_to_40() -> None:
    short = BUILD_ID[:32]
    lookup = keys.parse_unified_request(f"{short[:2]}/{short[2:]}/debuginfo")
    assert _elf_ids(lookup) == [short, short.ljust(40, "0")]


def test_a_40_digit_build_id_ending_in_24_zeros_is_also_looked_up_unpadded() -> None:
    padded = BUILD_ID[:16] + "0" * 24
    lookup = keys.parse_unified_request(f"{padded[:2]}/{padded[2:]}/debuginfo")
    assert _elf_ids(lookup) == [padded, padded[:32], padded[:16]]


def test_pe_ids_have_9_to_16_digits() -> None:
    nine = keys.parse_symsrv_request("a.exe/5AB38077A/a.exe")
    assert [a.filetypes for a in nine.alternatives] == [(FileType.PE,)]
    with pytest.raises(keys.NotALookup, match="malformed PE id"):
        keys.parse_symsrv_request("a.exe/5AB380779000ABCDE/a.exe")  # 17 digits
    with pytest.raises(keys.NotALookup, match="malformed PE id"):
        keys.parse_symsrv_request(f"x.dll/{'1' * 41}/x.dll")  # longer than any GUID + age


def test_a_guid_and_age_under_any_name_is_a_pdb_only_portable_when_the_age_says_so() -> None:
    # 33 digits (GUID + a one-digit age) under a name without .pdb is still a PDB reading.
    lookup = keys.parse_symsrv_request(f"foo.pdbx/{GUID_AGE}/foo.pdbx")
    assert [a.filetypes for a in lookup.alternatives] == [(FileType.PDB,)]
    portable = keys.parse_symsrv_request(f"foo.pdb/{GUID_AGE[:32]}FFFFFFFF/foo.pdb")
    assert [a.filetypes for a in portable.alternatives] == [(FileType.PDB, FileType.PORTABLEPDB)]


def test_a_pdb_name_never_takes_a_pe_id() -> None:
    with pytest.raises(keys.NotALookup, match="malformed PDB signature"):
        keys.parse_symsrv_request("a.pdb/5AB380779000/a.pdb")


# --------------------------------------------------------------------------------------------------
# What the lookup says about itself


def test_lookups_name_their_protocol_and_the_requested_file() -> None:
    breakpad = keys.parse_symsrv_request(f"Crash.pdb/{GUID_AGE}/Crash.sym")
    assert (breakpad.protocol, breakpad.file_name) == (keys.Protocol.SYMSRV, "Crash.sym")
    pdb = keys.parse_symsrv_request(f"Crash.pdb/{GUID_AGE}/Crash.pdb")
    assert (pdb.protocol, pdb.file_name) == (keys.Protocol.SYMSRV, "Crash.pdb")
    unified = keys.parse_unified_request(f"{BUILD_ID[:2]}/{BUILD_ID[2:]}/DebugInfo")
    assert (unified.protocol, unified.file_name) == (keys.Protocol.UNIFIED, "debuginfo")


def test_a_breakpad_name_drops_only_a_pe_like_extension() -> None:
    for lead in ("libfoo.so", "libfoo.xyz"):  # the .sym of these is <lead>.sym
        with pytest.raises(keys.NotALookup, match="a Breakpad file is"):
            keys.parse_symsrv_request(f"{lead}/{GUID_AGE}/libfoo.sym")


# --------------------------------------------------------------------------------------------------
# Symbolicator's store paths (the SymStore index)


def test_store_path_prefixes_decide_the_file_type_only_with_the_matching_name() -> None:
    elf = keys.parse_symstore_path(f"crash.debug/elf-buildid-{BUILD_ID}/crash.debug")
    assert elf is not None and elf[0] == [FileType.ELF_CODE] and elf[1].code_id == BUILD_ID
    mach = keys.parse_symstore_path(f"crash.dwarf/mach-uuid-{UUID}/crash.dwarf")
    assert mach is not None and mach[0] == [FileType.MACH_CODE] and mach[1].code_id == UUID


# --------------------------------------------------------------------------------------------------
# Reasons


def symsrv(path: str) -> Callable[[], object]:
    return lambda: keys.parse_symsrv_request(path)


def unified(path: str) -> Callable[[], object]:
    return lambda: keys.parse_unified_request(path)


REFUSALS: list[tuple[str, Callable[[], object], str]] = [
    ("store-marker", symsrv("INDEX2.TXT"), "is a store marker"),
    ("two-segments", symsrv("a.pdb/a.pdb"), "got 2 path segment"),
    ("empty-name", symsrv(f"/{GUID_AGE}/a.pdb"), "got an empty segment"),
    ("empty-id", symsrv("a.pdb//a.pdb"), "got an empty id"),
    ("dot-name", symsrv(f"./{GUID_AGE}/."), "is not a file name"),
    ("control-character", symsrv(f"a\tb.pdb/{GUID_AGE}/a\tb.pdb"), "contains a control character"),
    ("long-name", symsrv(f"{'a' * 256}/{GUID_AGE}/{'a' * 256}"), "256 bytes or longer"),
    ("pointer", symsrv(f"a.pdb/{GUID_AGE}/file.ptr"), "is a SymStore pointer file"),
    ("names-differ", symsrv(f"a.pdb/{GUID_AGE}/b.pdb"), "file names differ"),
    (
        "pdb-signature",
        symsrv("a.pdb/XYZ/a.pdb"),
        "malformed PDB signature 'XYZ': expected 32 hex digits of GUID",
    ),
    ("breakpad-id", symsrv("a.pdb/XYZ/a.sym"), "malformed Breakpad id 'XYZ'"),
    ("pe-id", symsrv("a.exe/XYZ/a.exe"), "expected an 8-digit hex timestamp and the image size"),
    (
        "coreclr",
        symsrv(f"mscordaccore.dll/elf-buildid-coreclr-{BUILD_ID}/mscordaccore.dll"),
        "runtime-keyed DAC/DBI/SOS keys",
    ),
    ("sha1", symsrv(f"a.cs/sha1-{BUILD_ID}/a.cs"), "sha1- keys"),
    ("elf-sym-name", symsrv(f"crash/elf-buildid-sym-{BUILD_ID}/crash"), "name a debug file: <name>.debug"),
    ("mach-sym-name", symsrv(f"crash/mach-uuid-sym-{UUID}/crash"), "name a dSYM file: <name>.dwarf"),
    ("mach-uuid", symsrv("crash/mach-uuid-xyz/crash"), "malformed Mach-O UUID"),
    ("unified-segments", unified("ab/cdef"), "got 2 path segment"),
    ("unified-head", unified("abc/def0/debuginfo"), "the first segment is two hex digits"),
    ("unified-hex", unified("zz/zzzzzz/debuginfo"), "expected hex digits"),
    (
        "unified-kind",
        unified("ab/cdef0123/sources"),
        "unknown unified file kind 'sources'; expected one of executable, debuginfo",
    ),
    (
        "debuginfod-kind",
        lambda: keys.parse_debuginfod_request(BUILD_ID, "source"),
        "'source' requests are not served",
    ),
    (
        "build-id",
        lambda: keys.parse_debuginfod_request("111111", "debuginfo"),
        "expected an even number (8 to 128)",
    ),
]


@pytest.mark.parametrize(("parse", "reason"), [r[1:] for r in REFUSALS], ids=[r[0] for r in REFUSALS])
def test_a_refused_key_says_why(parse: Callable[[], object], reason: str) -> None:
    with pytest.raises(keys.NotALookup) as refused:
        parse()
    assert reason in str(refused.value)
