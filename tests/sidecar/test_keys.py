"""Request paths → lookups, for SymSrv/SSQP keys, unified paths and debuginfod requests.

Data: Symbolicator's parser cases (``symbolicator_misc_vectors.json``), the SSQP key conventions
(``ssqp_vectors.json``) and the keys of every real fixture file (``fixtures/MANIFEST.json``).
"""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from typing import Any

import pytest

from symbol_proxy import keys, layouts
from symbol_proxy.config import Casing, Layout, LayoutType
from symbol_proxy.objects import FileType, ObjectQuery, ObjectType
from tests.sidecar.vectors import load, manifest

MISC: dict[str, Any] = load("symbolicator_misc_vectors.json")
SSQP: list[dict[str, Any]] = load("ssqp_vectors.json")


def candidates(layout: Layout, lookup: keys.Lookup) -> list[str]:
    """Every path a source with ``layout`` is probed at for ``lookup``, in probe order."""
    result: list[str] = []
    for alternative in lookup.alternatives:
        for filetype in alternative.filetypes:
            for path in reversed(layouts.get_directory_paths(layout, filetype, alternative.query)):
                if path not in result:
                    result.append(path)
    return result


def debuginfod(key: str) -> keys.Lookup:
    """Parse a manifest debuginfod key ``buildid/<id>/<kind>``."""
    prefix, build_id, kind = key.split("/")
    assert prefix == "buildid"
    return keys.parse_debuginfod_request(build_id, kind)


# --------------------------------------------------------------------------------------------------
# Symbolicator's parser, exactly

PROXY_PATHS = MISC["proxy_path_parse"]


@pytest.mark.parametrize("entry", PROXY_PATHS, ids=[e["request_path"] for e in PROXY_PATHS])
def test_the_upstream_parser_reads_every_proxy_path_as_symbolicator_does(entry: dict[str, Any]) -> None:
    parsed = keys.parse_symstore_path(entry["request_path"])
    if "result" in entry:
        assert parsed is None
        return
    assert parsed is not None
    filetypes, query = parsed
    assert filetypes == [FileType(f) for f in entry["filetypes"]]
    if "code_id" in entry:
        assert query.code_id == entry["code_id"]
    if "debug_id" in entry:
        assert str(query.debug_id) == entry["debug_id"]


POSITIVE_PROXY_PATHS = [e for e in PROXY_PATHS if "result" not in e]


@pytest.mark.parametrize("entry", POSITIVE_PROXY_PATHS, ids=[e["request_path"] for e in POSITIVE_PROXY_PATHS])
def test_our_symsrv_parser_reads_what_upstream_accepts_the_same_way(entry: dict[str, Any]) -> None:
    parsed = keys.parse_symstore_path(entry["request_path"])
    assert parsed is not None
    filetypes, upstream = parsed
    first = keys.parse_symsrv_request(entry["request_path"]).alternatives[0]
    assert first.filetypes[: len(filetypes)] == tuple(filetypes)
    assert first.query.code_id == upstream.code_id
    if upstream.object_type is ObjectType.MACHO:  # our extension: the UUID is the debug id too
        assert upstream.debug_id is None and first.query.debug_id is not None
        assert first.query.debug_id.uuid_hex == upstream.code_id
    else:
        assert first.query.debug_id == upstream.debug_id
    assert first.query.object_type == upstream.object_type
    assert (first.query.code_file, first.query.debug_file) == (upstream.code_file, upstream.debug_file)


def test_upstream_rejects_compressed_names_which_we_serve_as_the_compressed_variant() -> None:
    (path,) = [e["request_path"] for e in PROXY_PATHS if e["request_path"].endswith("_")]
    assert keys.parse_symstore_path(path) is None
    lookup = keys.parse_symsrv_request(path)
    assert lookup.variant is keys.Variant.COMPRESSED
    plain = path[: path.rindex("/") + 1] + path.split("/")[0]
    assert lookup.cache_key == keys.parse_symsrv_request(plain).cache_key


@pytest.mark.parametrize(
    "path",
    [e["request_path"] for e in PROXY_PATHS if "result" in e and not e["request_path"].endswith("_")],
)
def test_what_upstream_rejects_otherwise_is_not_a_lookup_for_us_either(path: str) -> None:
    with pytest.raises(keys.NotALookup):
        keys.parse_symsrv_request(path)


def test_upstream_compares_names_with_unicode_lead_and_ascii_folded_trail() -> None:
    assert keys.parse_symstore_path("\u00c9.exe/542D574Ec2000/\u00e9.exe") is not None
    assert keys.parse_symstore_path("\u00e9.exe/542D574Ec2000/\u00c9.exe") is None


# --------------------------------------------------------------------------------------------------
# SSQP key conventions

SUPPORTED_KINDS = {
    "pe",
    "pdb",
    "portable-pdb",
    "elf-buildid",
    "elf-buildid-sym",
    "mach-uuid",
    "mach-uuid-sym",
    "pe-coreclr-dac-sos",
    "azure-clientkey-pe",
    "azure-clientkey-pdb",
    "dbg-classic",
    "compressed-variant",
    "breakpad-derived",
}
# Runtime-keyed, hash-keyed and non-SSQP keys, and store-internal paths (pointers, two tiers).
UNSUPPORTED_KINDS = {
    "sha1",
    "perfmap-r2rmap-v1",
    "elf-buildid-coreclr",
    "mach-uuid-coreclr",
    "sourcemap",
    "file-ptr-variant",
    "index2-two-tier-layout",
}


def _ssqp_id(entry: dict[str, Any]) -> str:
    return f"{entry['kind']}-{entry['key']}"


def _spellings(entry: dict[str, Any]) -> list[str]:
    """Every way a client may ask for the entry's object: the key forms and their case variants."""
    forms = [entry[name] for name in ("key", "implementation_key", "canonical_ssqp") if name in entry]
    return sorted({variant for form in forms for variant in (form, form.lower(), form.upper())})


def test_every_ssqp_vector_kind_is_classified_as_supported_or_not() -> None:
    assert {e["kind"] for e in SSQP} == SUPPORTED_KINDS | UNSUPPORTED_KINDS


SUPPORTED = [e for e in SSQP if e["kind"] in SUPPORTED_KINDS]
UNSUPPORTED = [e for e in SSQP if e["kind"] in UNSUPPORTED_KINDS]


@pytest.mark.parametrize("entry", SUPPORTED, ids=[_ssqp_id(e) for e in SUPPORTED])
def test_every_spelling_of_a_supported_ssqp_key_has_one_cache_key(entry: dict[str, Any]) -> None:
    spellings = _spellings(entry)
    if "key" in entry["inputs"]:  # a variant of another key: the plain key is the same file
        spellings.append(entry["inputs"]["key"])
    cache_keys = {keys.parse_symsrv_request(spelling).cache_key for spelling in spellings}
    assert len(cache_keys) == 1
    assert cache_keys.pop().islower()


@pytest.mark.parametrize("entry", UNSUPPORTED, ids=[_ssqp_id(e) for e in UNSUPPORTED])
def test_an_unsupported_ssqp_key_is_not_a_lookup(entry: dict[str, Any]) -> None:
    for spelling in _spellings(entry):
        with pytest.raises(keys.NotALookup):
            keys.parse_symsrv_request(spelling)
    if "key" in entry["inputs"]:  # the pointer or storage path of a key that is itself fine
        keys.parse_symsrv_request(entry["inputs"]["key"])


def _pe_code_id(inputs: dict[str, Any]) -> str:
    stamp = inputs.get("timestamp") or inputs["coreclr_timestamp"]
    size = inputs.get("size_of_image") or inputs["coreclr_size_of_image"]
    return f"{int(stamp, 16):08x}{int(size, 16):x}"


def _expected_reading(entry: dict[str, Any]) -> tuple[FileType, dict[str, Any]] | None:
    """What the entry's inputs say the key names: a file type and query fields to find."""
    inputs, kind = entry["inputs"], entry["kind"]
    if kind in ("pe", "azure-clientkey-pe", "dbg-classic", "pe-coreclr-dac-sos"):
        return FileType.PE, {"code_id": _pe_code_id(inputs)}
    if kind in ("pdb", "azure-clientkey-pdb"):
        return FileType.PDB, {"uuid": uuid.UUID(inputs["signature_guid"]), "appendix": inputs["age"]}
    if kind == "portable-pdb":
        return FileType.PORTABLEPDB, {"uuid": uuid.UUID(inputs["pdb_id_guid"])}
    if kind in ("elf-buildid", "elf-buildid-sym"):
        filetype = FileType.ELF_DEBUG if kind == "elf-buildid-sym" else FileType.ELF_CODE
        return filetype, {"code_id": inputs["build_id_hex"]}  # the real id, even when the key pads it
    if kind in ("mach-uuid", "mach-uuid-sym"):
        filetype = FileType.MACH_DEBUG if kind == "mach-uuid-sym" else FileType.MACH_CODE
        return filetype, {"code_id": inputs["uuid_hex"], "uuid": uuid.UUID(inputs["uuid_hex"])}
    if kind == "breakpad-derived":  # ELF: the first 16 build-id bytes as a little-endian GUID, age 0
        guid = uuid.UUID(bytes_le=bytes.fromhex(inputs["build_id_hex"])[:16])
        return FileType.BREAKPAD, {"uuid": guid, "appendix": 0}
    return None


def _matches(query: ObjectQuery, fields: dict[str, Any]) -> bool:
    debug_id = query.debug_id
    return (
        ("code_id" not in fields or query.code_id == fields["code_id"])
        and ("uuid" not in fields or (debug_id is not None and debug_id.uuid == fields["uuid"]))
        and ("appendix" not in fields or (debug_id is not None and debug_id.appendix == fields["appendix"]))
    )


READABLE = [e for e in SUPPORTED if _expected_reading(e) is not None]


@pytest.mark.parametrize("entry", READABLE, ids=[_ssqp_id(e) for e in READABLE])
def test_a_supported_ssqp_key_is_read_as_the_object_its_inputs_describe(entry: dict[str, Any]) -> None:
    reading = _expected_reading(entry)
    assert reading is not None
    filetype, fields = reading
    lookup = keys.parse_symsrv_request(entry["key"])
    assert any(filetype in a.filetypes and _matches(a.query, fields) for a in lookup.alternatives), lookup


def test_a_padded_elf_build_id_is_probed_padded_first_and_then_as_the_real_id() -> None:
    padded = [
        e
        for e in SSQP
        if e["kind"] in ("elf-buildid", "elf-buildid-sym") and len(e["inputs"]["build_id_hex"]) < 40
    ]
    assert padded
    for entry in padded:
        lookup = keys.parse_symsrv_request(entry["key"])
        code_ids = [a.query.code_id for a in lookup.alternatives]
        assert code_ids[0] == entry["key"].split("/")[1].rsplit("-", 1)[1]
        assert code_ids[1] == entry["inputs"]["build_id_hex"]


def test_dac_and_sos_keys_probe_both_the_padded_and_the_canonical_pe_id() -> None:
    dac = [e for e in SSQP if e["kind"] == "pe-coreclr-dac-sos" and "implementation_key" in e]
    assert dac
    for entry in dac:
        for spelling in (entry["key"], entry["implementation_key"]):
            code_ids = {a.query.code_id for a in keys.parse_symsrv_request(spelling).alternatives}
            assert code_ids == {entry[name].split("/")[1].lower() for name in ("key", "implementation_key")}


def test_a_portable_pdb_key_asks_for_both_pdb_kinds() -> None:
    for entry in (e for e in SSQP if e["kind"] == "portable-pdb"):
        (alternative,) = keys.parse_symsrv_request(entry["key"]).alternatives
        assert alternative.filetypes == (FileType.PDB, FileType.PORTABLEPDB)


def test_a_mach_key_carries_the_uuid_as_code_id_and_debug_id() -> None:
    for entry in (e for e in SSQP if e["kind"].startswith("mach-uuid") and "uuid_hex" in e["inputs"]):
        (alternative,) = keys.parse_symsrv_request(entry["key"]).alternatives
        assert alternative.query.code_id == entry["inputs"]["uuid_hex"]
        assert alternative.query.debug_id is not None
        assert alternative.query.debug_id.uuid_hex == entry["inputs"]["uuid_hex"]


def test_a_compressed_key_is_the_compressed_variant_of_the_plain_file() -> None:
    for entry in (e for e in SSQP if e["kind"] == "compressed-variant"):
        compressed = keys.parse_symsrv_request(entry["key"])
        plain = keys.parse_symsrv_request(entry["inputs"]["key"])
        assert (compressed.variant, plain.variant) == (keys.Variant.COMPRESSED, keys.Variant.PLAIN)
        assert compressed.alternatives == plain.alternatives
        assert compressed.file_name == plain.file_name == entry["inputs"]["key"].rsplit("/", 1)[1]


# --------------------------------------------------------------------------------------------------
# The keys of every real fixture file

SYMSRV_KINDS = (
    "symsrv",
    "ssqp",
    "symsrv_pdb_lookup",
    "ssqp_symbol_lookup",
    "breakpad_sym_lookup",
    "breakpad",
)
FORMAT_OBJECT_TYPE = {
    "pdb": ObjectType.PE,
    "portablepdb": ObjectType.PE_DOTNET,
    "elf": ObjectType.ELF,
    "macho": ObjectType.MACHO,
    "wasm": ObjectType.WASM,
}


def manifest_objects() -> Iterator[tuple[str, dict[str, Any], dict[str, Any]]]:
    """(readable name, file entry, object) for every object of every fixture file."""
    for entry in manifest()["files"]:
        objects = entry.get("objects") or []
        for index, obj in enumerate(objects):
            name = entry["path"] + (f"[{obj.get('arch') or index}]" if len(objects) > 1 else "")
            yield name, entry, obj


MANIFEST_KEYS = [
    (f"{name}-{kind}-{key}", kind, key, obj)
    for name, _, obj in manifest_objects()
    for kind, values in (obj.get("keys") or {}).items()
    if kind in (*SYMSRV_KINDS, "debuginfod")
    for key in values
]


@pytest.mark.parametrize(
    ("kind", "key", "obj"), [m[1:] for m in MANIFEST_KEYS], ids=[m[0] for m in MANIFEST_KEYS]
)
def test_every_fixture_key_parses_into_a_lookup_probed_where_it_was_asked(
    kind: str, key: str, obj: dict[str, Any]
) -> None:
    if kind == "debuginfod":
        lookup = debuginfod(key)
        assert key.removeprefix("buildid/") in candidates(Layout(type=LayoutType.DEBUGINFOD), lookup)
        assert any(a.query.code_id == obj["code_id"] for a in lookup.alternatives)
        return
    lookup = keys.parse_symsrv_request(key)
    if kind.startswith("breakpad"):
        assert key in candidates(Layout(type=LayoutType.NATIVE), lookup)
    else:  # a SymStore or SSQP store is probed at the key itself, up to case
        layouts_asked = (Layout(type=LayoutType.SYMSTORE), Layout(type=LayoutType.SSQP))
        probed = [path for layout in layouts_asked for path in candidates(layout, lookup)]
        assert key.lower() in {path.lower() for path in probed}
    if kind in ("symsrv", "ssqp", "breakpad"):  # the file's own key names the file's own ids
        debug_uuid = uuid.UUID(obj["debug_id"][:36]) if obj.get("debug_id") else None
        assert any(
            (obj.get("code_id") and a.query.code_id == obj["code_id"])
            or (a.query.debug_id is not None and a.query.debug_id.uuid == debug_uuid)
            for a in lookup.alternatives
        )


PAIRS = [
    (f"{name}-{left}/{right}-{index}", obj["keys"][left][index], obj["keys"][right][index])
    for name, _, obj in manifest_objects()
    for left, right in (("symsrv", "ssqp"), ("symsrv_pdb_lookup", "ssqp_symbol_lookup"))
    if left in (obj.get("keys") or {}) and right in obj["keys"]
    for index in range(len(obj["keys"][left]))
]


@pytest.mark.parametrize(("symsrv", "ssqp"), [p[1:] for p in PAIRS], ids=[p[0] for p in PAIRS])
def test_the_symsrv_and_ssqp_keys_of_one_file_share_a_cache_key(symsrv: str, ssqp: str) -> None:
    assert keys.parse_symsrv_request(symsrv).cache_key == keys.parse_symsrv_request(ssqp).cache_key


def test_the_fixture_manifest_gives_enough_keys_and_pairs_to_be_meaningful() -> None:
    kinds = {m[1] for m in MANIFEST_KEYS}
    assert kinds == {*SYMSRV_KINDS, "debuginfod"}
    assert len(PAIRS) >= 10


# --------------------------------------------------------------------------------------------------
# Unified paths: a unified store is always probed at exactly the requested path

UNIFIED = Layout(type=LayoutType.UNIFIED)
# For PE objects, files other than these are keyed by the PE code id in a unified store, an id
# that may not look like any object's id (an odd number of digits): see ``_names_no_object``.
PE_NATIVE_FILETYPES = {
    FileType.PE,
    FileType.PDB,
    FileType.PORTABLEPDB,
    FileType.BREAKPAD,
    FileType.SOURCEBUNDLE,
    FileType.IL2CPP,
}


def _manifest_query(entry: dict[str, Any], obj: dict[str, Any]) -> ObjectQuery | None:
    fmt = entry["format"]
    if fmt == "pe":
        object_type = ObjectType.PE_DOTNET if (obj.get("format_details") or {}).get("clr") else ObjectType.PE
    elif fmt in FORMAT_OBJECT_TYPE:
        object_type = FORMAT_OBJECT_TYPE[fmt]
    else:
        return None  # Breakpad files and plists carry no object type of their own
    return ObjectQuery.create(
        code_id=obj.get("code_id"),
        code_file=obj.get("code_file"),
        debug_id=obj.get("debug_id"),
        debug_file=obj.get("debug_file"),
        object_type=object_type,
    )


def _names_no_object(query: ObjectQuery, filetype: FileType, path: str) -> bool:
    """Whether ``path`` is one of the unified paths no client can ask for: a PE's code id (an odd
    number of digits, shorter than any GUID+age) under a file type other than the PE-native ones.
    Only ELF build ids (even lengths) and PE/PDB debug ids (33 to 40 digits) name such files."""
    head, rest, _ = path.split("/")
    length = len(head + rest)
    pe_object = query.object_type in (ObjectType.PE, ObjectType.PE_DOTNET)
    return pe_object and filetype not in PE_NATIVE_FILETYPES and length % 2 == 1 and length < 33


UNIFIED_CASES = [
    (f"{name}-{filetype.value}", query, filetype, paths[-1])
    for name, entry, obj in manifest_objects()
    if (query := _manifest_query(entry, obj)) is not None
    for filetype in FileType
    if (paths := layouts.get_directory_paths(UNIFIED, filetype, query))
]


def _is_nil(path: str) -> bool:
    """Whether ``path`` carries an id of zeros only: a fast 404 of its own (tested below)."""
    head, rest, _ = path.split("/")
    return not (head + rest).strip("0")


ROUND_TRIP_CASES = [c for c in UNIFIED_CASES if not _names_no_object(*c[1:]) and not _is_nil(c[3])]
REFUSED_CASES = [c for c in UNIFIED_CASES if _names_no_object(*c[1:]) and not _is_nil(c[3])]


@pytest.mark.parametrize(
    ("query", "filetype", "path"), [c[1:] for c in ROUND_TRIP_CASES], ids=[c[0] for c in ROUND_TRIP_CASES]
)
def test_a_unified_path_parses_back_into_a_lookup_that_probes_that_very_path(
    query: ObjectQuery, filetype: FileType, path: str
) -> None:
    lookup = keys.parse_unified_request(path)
    assert path in candidates(UNIFIED, lookup)
    upper = Layout(type=LayoutType.UNIFIED, casing=Casing.UPPERCASE)
    shouted = keys.parse_unified_request(path.upper())
    assert path.upper() in candidates(upper, shouted)
    assert shouted.cache_key == lookup.cache_key == f"unified/{path.replace('/', '', 1).lower()}"


@pytest.mark.parametrize(
    ("query", "filetype", "path"), [c[1:] for c in REFUSED_CASES], ids=[c[0] for c in REFUSED_CASES]
)
def test_a_unified_path_that_names_no_object_is_a_clear_not_a_lookup(
    query: ObjectQuery, filetype: FileType, path: str
) -> None:
    with pytest.raises(keys.NotALookup, match="no object stores"):
        keys.parse_unified_request(path)


def test_the_unified_round_trips_are_the_large_majority() -> None:
    # Both kinds exist in the manifest, and refusals stay the exception (odd PE code ids only).
    assert REFUSED_CASES and len(ROUND_TRIP_CASES) > 5 * len(REFUSED_CASES)


def test_unified_round_trips_cover_every_kind_of_object() -> None:
    assert {c[1].object_type for c in ROUND_TRIP_CASES} == set(FORMAT_OBJECT_TYPE.values()) | {ObjectType.PE}


@pytest.mark.parametrize(
    ("id_length", "object_types"),
    [
        (40, [ObjectType.ELF, ObjectType.PE, ObjectType.WASM]),
        (32, [ObjectType.MACHO, ObjectType.ELF, ObjectType.WASM]),
        (33, [ObjectType.PE]),
        # A wasm code id keeps the build_id's length byte: 34 digits for a 16-byte id.
        (34, [ObjectType.PE, ObjectType.ELF, ObjectType.WASM]),
        (16, [ObjectType.ELF, ObjectType.WASM]),
    ],
)
def test_the_shape_of_a_unified_id_decides_which_objects_it_names(
    id_length: int, object_types: list[ObjectType]
) -> None:
    ident = "1" * id_length
    lookup = keys.parse_unified_request(f"{ident[:2]}/{ident[2:]}/executable")
    seen: list[ObjectType] = []
    for alternative in lookup.alternatives:
        if alternative.query.object_type not in seen:
            seen.append(alternative.query.object_type)
    assert seen == object_types


def test_a_unified_pe_reading_needs_the_canonical_age() -> None:
    # 40 digits whose age part has leading zeros would be written as a shorter id: no PE reading.
    ident = "1" * 32 + "00000001"
    lookup = keys.parse_unified_request(f"{ident[:2]}/{ident[2:]}/debuginfo")
    assert ObjectType.PE not in [a.query.object_type for a in lookup.alternatives]


# --------------------------------------------------------------------------------------------------
# debuginfod


BUILD_ID = next(
    k.split("/")[1] for _, _, obj in manifest_objects() for k in (obj.get("keys") or {}).get("debuginfod", [])
)


def test_a_debuginfod_build_id_is_case_insensitive() -> None:
    key = next(k for _, _, obj in manifest_objects() for k in (obj.get("keys") or {}).get("debuginfod", []))
    _, build_id, kind = key.split("/")
    lower = keys.parse_debuginfod_request(build_id, kind)
    upper = keys.parse_debuginfod_request(build_id.upper(), kind)
    assert lower == upper
    assert lower.cache_key == key.lower()
    assert lower.file_name == kind
    assert lower.protocol is keys.Protocol.DEBUGINFOD


@pytest.mark.parametrize(
    ("build_id", "kind"),
    [
        (BUILD_ID, "source"),
        (BUILD_ID, "section"),
        (BUILD_ID, "DEBUGINFO"),
        ("xyz0279865fe3058", "debuginfo"),
        ("f1c3bcc02", "debuginfo"),
        ("f1c3bc", "debuginfo"),
        ("ab" * 65, "executable"),
        ("", "executable"),
    ],
    ids=["source", "section", "uppercase-kind", "non-hex", "odd-length", "too-short", "too-long", "empty"],
)
def test_a_malformed_debuginfod_request_is_not_a_lookup(build_id: str, kind: str) -> None:
    with pytest.raises(keys.NotALookup):
        keys.parse_debuginfod_request(build_id, kind)


# --------------------------------------------------------------------------------------------------
# What is not a lookup

PDB_KEY = next(e["key"] for e in SSQP if e["kind"] == "pdb")
PE_KEY = next(e["key"] for e in SSQP if e["kind"] == "pe")
ELF_KEY = next(e["key"] for e in SSQP if e["kind"] == "elf-buildid")
MACH_KEY = next(e["key"] for e in SSQP if e["kind"] == "mach-uuid")
BREAKPAD_KEY = next(e["key"] for e in SSQP if e["kind"] == "breakpad-derived")


def _with(key: str, *, lead: str | None = None, sig: str | None = None, trail: str | None = None) -> str:
    """``key`` with some of its three segments replaced."""
    parts = key.split("/")
    for index, new in enumerate((lead, sig, trail)):
        if new is not None:
            parts[index] = new
    return "/".join(parts)


NOT_LOOKUPS = {
    "store marker index2.txt": "index2.txt",
    "store marker in capitals": "INDEX2.TXT",
    "store marker pingme.txt": "pingme.txt",
    "pointer file": _with(PDB_KEY, trail="file.ptr"),
    "pointer file in capitals": _with(PDB_KEY, trail="FILE.PTR"),
    "refs pointer": _with(PDB_KEY, trail="refs.ptr"),
    "two segments": PE_KEY.rsplit("/", 1)[0],
    "four segments": "fo/" + PE_KEY,
    "empty name": _with(PE_KEY, lead=""),
    "empty id": _with(PE_KEY, sig=""),
    "dot-dot names": _with(PE_KEY, lead="..", trail=".."),
    "control character": _with(PE_KEY, lead="foo\x01.exe", trail="foo\x01.exe"),
    "backslash": _with(PE_KEY, lead="a\\foo.exe", trail="a\\foo.exe"),
    "256-byte name": _with(PE_KEY, lead="x" * 256, trail="x" * 256),
    "mismatched names": _with(PE_KEY, trail="other.exe"),
    "pe id too short": _with(PE_KEY, sig=PE_KEY.split("/")[1][:8]),
    "pe id too long": _with(PE_KEY, sig=PE_KEY.split("/")[1] + "0" * 8),
    "pe id not hex": _with(PE_KEY, sig="XYZ" + PE_KEY.split("/")[1][3:]),
    "pdb id without age": _with(PDB_KEY, sig=PDB_KEY.split("/")[1][:32]),
    "pdb id with hyphens": _with(PDB_KEY, sig=str(uuid.UUID(PDB_KEY.split("/")[1][:32])) + "-1"),
    "elf id too short": _with(ELF_KEY, sig="elf-buildid-abcdef"),
    "elf id odd length": _with(ELF_KEY, sig=ELF_KEY.split("/")[1][:-1]),
    "elf sym key not named .debug": _with(ELF_KEY, sig=ELF_KEY.split("/")[1].replace("id-", "id-sym-")),
    "mach uuid too short": _with(MACH_KEY, sig=MACH_KEY.split("/")[1][:-1]),
    "mach sym key not named .dwarf": _with(MACH_KEY, sig=MACH_KEY.split("/")[1].replace("id-", "id-sym-")),
    "breakpad stem mismatch": _with(BREAKPAD_KEY, trail="other.sym"),
    "breakpad id malformed": _with(BREAKPAD_KEY, sig="XYZ"),
}


@pytest.mark.parametrize("path", list(NOT_LOOKUPS.values()), ids=list(NOT_LOOKUPS))
def test_a_malformed_or_unsupported_symsrv_path_is_not_a_lookup(path: str) -> None:
    with pytest.raises(keys.NotALookup) as caught:
        keys.parse_symsrv_request(path)
    assert str(caught.value)  # the reason is logged


UNIFIED_NOT_LOOKUPS = {
    "four segments": "32/49d99d0c4049318610f4e4fb0b69361/debuginfo/x",
    "one-digit head": "3/249d99d0c4049318610f4e4fb0b69361/debuginfo",
    "empty tail": "32//debuginfo",
    "not hex": "zz/49d99d0c4049318610f4e4fb0b69361/debuginfo",
    "unknown kind": "32/49d99d0c4049318610f4e4fb0b69361/proguard",
    "compressed kind": "32/49d99d0c4049318610f4e4fb0b69361/debuginf_",
    "uuidmap under a pe id": "32/49d99d0c4049318610f4e4fb0b69361/uuidmap",
    "odd id longer than a pe id": "32/49d99d0c4049318610f4e4fb0b6936100000000/executable",
    "id too short": "32/49d9/executable",
}


@pytest.mark.parametrize("path", list(UNIFIED_NOT_LOOKUPS.values()), ids=list(UNIFIED_NOT_LOOKUPS))
def test_a_malformed_unified_path_is_not_a_lookup(path: str) -> None:
    with pytest.raises(keys.NotALookup):
        keys.parse_unified_request(path)


def test_a_breakpad_request_may_use_the_documented_stem_too() -> None:
    sig = BREAKPAD_KEY.split("/")[1]
    documented = keys.parse_symsrv_request(f"crash.exe/{sig}/crash.sym")
    upstream = keys.parse_symsrv_request(f"crash.exe/{sig}/crash.exe.sym")
    assert documented.alternatives == upstream.alternatives
    assert documented.cache_key == upstream.cache_key
    assert documented.alternatives[0].query.object_type is ObjectType.PE
    assert keys.parse_symsrv_request(BREAKPAD_KEY).alternatives[0].query.object_type is ObjectType.UNKNOWN
