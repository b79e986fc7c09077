"""Candidate paths per layout, checked against Symbolicator's own expectations.

``layout_vectors.json`` holds upstream expectations at several levels (raw layout function, full
pipeline, integration snapshots with and without a SymStore index); ``layout_vectors_derived.json``
holds the exact ordered output of the pipeline for every layout, casing and file type. How each level
is compared is the shared README's rule, implemented in ``expected_and_actual``.
"""

from __future__ import annotations

import dataclasses
from typing import Any

import pytest

from symbol_proxy import layouts
from symbol_proxy.config import Casing, Layout, LayoutType
from symbol_proxy.objects import FileType, ObjectQuery, ObjectType
from tests.sidecar.vectors import load, query, short

UPSTREAM: list[dict[str, Any]] = load("layout_vectors.json")
DERIVED: dict[str, Any] = load("layout_vectors_derived.json")


def _filetypes(entry: dict[str, Any]) -> list[FileType]:
    value = entry["filetype"]
    return [FileType(value)] if isinstance(value, str) else [FileType(v) for v in value]


def _upstream_id(entry: dict[str, Any]) -> str:
    obj = entry["object"]
    name = short(obj.get("debug_file") or obj.get("code_file") or obj.get("code_id"))
    filetype = entry["filetype"] if isinstance(entry["filetype"], str) else "+".join(entry["filetype"])
    level = entry["level"].split(" ")[0].split("(")[0]
    return f"{entry['layout']}-{entry['casing']}-{filetype}-{obj['object_type']}-{name}-{level}"


def expected_and_actual(entry: dict[str, Any]) -> tuple[object, object]:
    """The vector's expectation and our output, in the shape its ``level`` says to compare."""
    layout = Layout(type=LayoutType(entry["layout"]), casing=Casing(entry["casing"]))
    obj = query(entry["object"])
    filetypes = _filetypes(entry)
    level: str = entry["level"]
    if level.startswith("layout_function"):
        function = layouts.LAYOUT_FUNCTIONS[layout.type]
        return set(entry["paths"]), {path for ft in filetypes for path in function(ft, obj)}
    if level.startswith("get_directory_paths (full"):
        (filetype,) = filetypes
        return entry["paths"], layouts.get_directory_paths(layout, filetype, obj)
    if level.startswith(("integration snapshot", "SourceLocationIter")):
        union = {path for ft in filetypes for path in layouts.get_directory_paths(layout, ft, obj)}
        if entry.get("has_index"):
            union &= set(entry["index_entries"])
        return sorted(entry["paths"]), sorted(union)
    if level.startswith(("HTTP requests actually received", "candidate URIs", "proxy request")):
        (filetype,) = filetypes
        return set(entry["paths"]), set(layouts.get_directory_paths(layout, filetype, obj))
    raise AssertionError(f"unknown vector level {level!r}")


@pytest.mark.parametrize("entry", UPSTREAM, ids=[_upstream_id(e) for e in UPSTREAM])
def test_every_upstream_layout_vector_is_reproduced(entry: dict[str, Any]) -> None:
    expected, actual = expected_and_actual(entry)
    assert actual == expected


SNAPSHOTS_WITH_BREAKDOWN = [e for e in UPSTREAM if "derived_per_filetype" in e]


@pytest.mark.parametrize(
    "entry", SNAPSHOTS_WITH_BREAKDOWN, ids=[_upstream_id(e) for e in SNAPSHOTS_WITH_BREAKDOWN]
)
def test_each_snapshot_file_type_yields_its_derived_share_of_the_union(entry: dict[str, Any]) -> None:
    layout = Layout(type=LayoutType(entry["layout"]), casing=Casing(entry["casing"]))
    obj = query(entry["object"])
    index = set(entry["index_entries"]) if entry.get("has_index") else None
    for filetype in _filetypes(entry):
        paths = layouts.get_directory_paths(layout, filetype, obj)
        if index is not None:
            paths = [path for path in paths if path in index]
        assert paths == entry["derived_per_filetype"].get(filetype.value, []), filetype


def test_vector_objects_normalise_their_raw_code_ids_as_the_vectors_say() -> None:
    raw = [e["object"] for e in UPSTREAM if "code_id_raw" in e["object"]]
    assert raw
    for obj in raw:
        assert query(obj).code_id == obj["code_id"]


NATIVE_SNAPSHOTS = [
    e for e in UPSTREAM if e["level"].startswith("integration snapshot") and isinstance(e["filetype"], list)
]


@pytest.mark.parametrize("entry", NATIVE_SNAPSHOTS, ids=[_upstream_id(e) for e in NATIVE_SNAPSHOTS])
def test_a_lookup_requests_the_file_types_of_its_object_type_first(entry: dict[str, Any]) -> None:
    # Snapshot lookups ask for the object type's file types (§2, minus those the source's filters
    # exclude), then the extras of the source-file lookups.
    requested = _filetypes(entry)
    object_type = ObjectType(entry["object"]["object_type"])
    wanted = [ft for ft in layouts.filetypes_for(object_type) if ft in requested]
    assert wanted
    assert requested[: len(wanted)] == wanted


DERIVED_OBJECTS = {name: query(obj) for name, obj in DERIVED["objects"].items()}


@pytest.mark.parametrize(
    "row", DERIVED["rows"], ids=[f"{r[0]}-{r[1]}-{r[2]}-{r[3]}" for r in DERIVED["rows"]]
)
def test_every_derived_row_matches_the_full_pipeline_exactly(row: list[Any]) -> None:
    layout_type, casing, filetype, object_name, paths = row
    layout = Layout(type=LayoutType(layout_type), casing=Casing(casing))
    assert layouts.get_directory_paths(layout, FileType(filetype), DERIVED_OBJECTS[object_name]) == paths


def test_the_derived_matrix_covers_every_layout_casing_and_file_type() -> None:
    seen = {(r[0], r[1], r[2]) for r in DERIVED["rows"]}
    assert seen == {(lt.value, c.value, ft.value) for lt in LayoutType for c in Casing for ft in FileType}


# --------------------------------------------------------------------------------------------------
# Rules the vectors do not reach (our own cases, derived from layouts.md).

PE = DERIVED_OBJECTS["PE"]
PE_DEBUG_ID = PE.debug_id


def _ascii_upper(text: str) -> str:
    return "".join(c.upper() if c.isascii() else c for c in text)


def _ascii_lower(text: str) -> str:
    return "".join(c.lower() if c.isascii() else c for c in text)


@pytest.mark.parametrize("layout_type", list(LayoutType))
@pytest.mark.parametrize("filetype", [FileType.PE, FileType.PDB])
def test_pe_and_pdb_paths_come_in_compressed_then_plain_pairs(
    layout_type: LayoutType, filetype: FileType
) -> None:
    raw = layouts.LAYOUT_FUNCTIONS[layout_type](filetype, PE)
    paths = layouts.get_directory_paths(Layout(type=layout_type), filetype, PE)
    assert paths == [p for path in raw for p in (path[:-1] + "_", path)]


@pytest.mark.parametrize("filetype", [ft for ft in FileType if ft not in (FileType.PE, FileType.PDB)])
def test_other_file_types_get_no_compressed_variant(filetype: FileType) -> None:
    for layout_type in LayoutType:
        assert layouts.get_directory_paths(Layout(type=layout_type), filetype, PE) == (
            layouts.LAYOUT_FUNCTIONS[layout_type](filetype, PE)
        )


@pytest.mark.parametrize(
    ("debug_file", "stem"),
    [
        ("crash.pdb", "crash"),
        ("foo.exe", "foo.exe"),
        ("foo.dll", "foo.dll"),
        ("libm.so", "libm.so"),
        ("CRASH.PDB", "CRASH.PDB"),
        ("foo.pdb.dll", "foo"),
        ("foo.dll.exe", "foo.dll.exe"),
    ],
)
def test_the_breakpad_stem_strips_only_pdb_as_upstream_does(debug_file: str, stem: str) -> None:
    assert layouts.breakpad_stem(debug_file) == stem


@pytest.mark.parametrize(
    ("debug_file", "prefix"),
    [("\u00e9.pdb", "\u00e9/"), ("a\u00e9.pdb", ""), ("\u20acx.pdb", ""), ("_.pdb", "_/"), ("ab.pdb", "ab/")],
    ids=["two-byte-first-char", "split-second-char", "three-byte-first-char", "dot-second-char", "ascii"],
)
def test_the_index2_prefix_is_the_first_two_bytes_when_they_are_whole_characters(
    debug_file: str, prefix: str
) -> None:
    obj = ObjectQuery(debug_id=PE_DEBUG_ID, debug_file=debug_file, object_type=ObjectType.PE)
    (plain,) = layouts.symstore_paths(FileType.PDB, obj)
    assert layouts.symstore_index2_paths(FileType.PDB, obj) == [prefix + plain]


def test_casing_is_ascii_only_and_applies_to_the_whole_path() -> None:
    obj = ObjectQuery(debug_id=PE_DEBUG_ID, debug_file="\u00c9t\u00e9.pdb", object_type=ObjectType.PE)
    (plain,) = layouts.symstore_paths(FileType.PDB, obj)
    upper_layout = Layout(type=LayoutType.SYMSTORE, casing=Casing.UPPERCASE)
    lower_layout = Layout(type=LayoutType.SYMSTORE, casing=Casing.LOWERCASE)
    upper = layouts.get_directory_paths(upper_layout, FileType.PDB, obj)
    lower = layouts.get_directory_paths(lower_layout, FileType.PDB, obj)
    assert upper[-1] == _ascii_upper(plain) != plain.upper()
    assert lower[-1] == _ascii_lower(plain) != plain.lower()


def test_the_ssqp_layout_lowercases_names_with_unicode_rules() -> None:
    obj = ObjectQuery(debug_id=PE_DEBUG_ID, debug_file="\u00c9T\u00c9.pdb", object_type=ObjectType.PE)
    (path,) = layouts.ssqp_paths(FileType.PDB, obj)
    assert path.startswith("\u00e9t\u00e9.pdb/") and path.endswith("/\u00e9t\u00e9.pdb")


@pytest.mark.parametrize(
    "name",
    [
        "cra\u0007sh.pdb",
        "x" * 252 + ".pdb",
        "cra\u0085sh.pdb",
    ],
    ids=["c0-control", "256-bytes", "c1-control"],
)
def test_a_file_name_that_is_not_a_valid_basename_yields_no_path(name: str) -> None:
    obj = ObjectQuery(debug_id=PE_DEBUG_ID, debug_file=name, object_type=ObjectType.PE)
    for layout_type in (LayoutType.NATIVE, LayoutType.SYMSTORE, LayoutType.SSQP):
        assert layouts.get_directory_paths(Layout(type=layout_type), FileType.PDB, obj) == []


def test_a_mach_code_id_that_is_not_a_uuid_means_no_mach_path_at_all() -> None:
    cid = PE.code_id
    assert cid is not None and len(cid) != 32
    obj = ObjectQuery(code_id=cid, code_file="crash", debug_id=PE_DEBUG_ID, object_type=ObjectType.MACHO)
    for filetype in (FileType.MACH_CODE, FileType.MACH_DEBUG):
        assert layouts.native_paths(filetype, obj) == []
        assert layouts.symstore_paths(filetype, obj) == []
    # ...while the unified layout uses any code id for Mach files.
    assert layouts.unified_paths(FileType.MACH_CODE, obj) == [f"{cid[:2]}/{cid[2:]}/executable"]


def test_slashsymbols_repeats_its_paths_for_every_file_type() -> None:
    expected = layouts.slashsymbols_paths(FileType.ELF_CODE, PE)
    assert len(expected) == 2
    for filetype in FileType:
        assert layouts.slashsymbols_paths(filetype, PE) == expected


def test_unknown_objects_get_no_native_source_bundle_not_even_the_breakpad_style_one() -> None:
    obj = dataclasses.replace(PE, object_type=ObjectType.UNKNOWN)
    assert layouts.native_paths(FileType.SOURCEBUNDLE, obj) == []
    assert layouts.native_paths(FileType.BREAKPAD, obj) != []


@pytest.mark.parametrize("object_type", list(ObjectType))
def test_every_object_type_requests_some_file_types_without_duplicates(object_type: ObjectType) -> None:
    filetypes = layouts.filetypes_for(object_type)
    assert filetypes
    assert len(set(filetypes)) == len(filetypes)


def test_unknown_objects_request_every_file_type_but_il2cpp() -> None:
    assert set(layouts.filetypes_for(ObjectType.UNKNOWN)) == set(FileType) - {FileType.IL2CPP}


def test_a_debug_id_without_file_names_still_yields_the_id_only_paths() -> None:
    macho = DERIVED_OBJECTS["MACHO"]
    obj = ObjectQuery(debug_id=macho.debug_id, object_type=ObjectType.MACHO)
    for filetype in (FileType.MACH_CODE, FileType.MACH_DEBUG):
        assert layouts.native_paths(filetype, obj) == layouts.native_paths(filetype, macho) != []
        assert layouts.unified_paths(filetype, obj) == layouts.unified_paths(filetype, macho) != []
    assert layouts.native_paths(FileType.BREAKPAD, obj) == []


# --------------------------------------------------------------------------------------------------
# store_paths: the spellings real stores use where Symbolicator's differ, from the SSQP key vectors.

SSQP_KEYS: list[dict[str, Any]] = load("ssqp_vectors.json")


def _pe_query(inputs: dict[str, str]) -> ObjectQuery:
    code_id = f"{int(inputs['timestamp'], 16):08x}{int(inputs['size_of_image'], 16):x}"
    return ObjectQuery.create(code_id=code_id, code_file=inputs["file_name"], object_type="pe")


PE_KEYS = [v for v in SSQP_KEYS if v["kind"] == "pe"]
PORTABLE_KEYS = [v for v in SSQP_KEYS if v["kind"] == "portable-pdb"]


@pytest.mark.parametrize("vector", PE_KEYS, ids=lambda v: v["key"])
def test_an_ssqp_store_is_also_asked_for_the_pe_key_with_its_upper_case_timestamp(
    vector: dict[str, Any],
) -> None:
    obj = _pe_query(vector["inputs"])
    layout = Layout(type=LayoutType.SSQP)
    symbolicator = layouts.get_directory_paths(layout, FileType.PE, obj)
    paths = layouts.store_paths(layout, FileType.PE, obj)
    key = vector["key"]
    assert paths == [key[:-1] + "_", key, *symbolicator]  # probed from the end: Symbolicator's first
    assert key not in symbolicator


def test_the_extra_spellings_are_only_for_default_casing_and_their_own_file_types() -> None:
    obj = _pe_query(PE_KEYS[0]["inputs"])
    for casing in (Casing.LOWERCASE, Casing.UPPERCASE):
        layout = Layout(type=LayoutType.SSQP, casing=casing)
        assert layouts.store_paths(layout, FileType.PE, obj) == layouts.get_directory_paths(
            layout, FileType.PE, obj
        )
    for layout_type in (LayoutType.SYMSTORE, LayoutType.NATIVE):
        layout = Layout(type=layout_type)
        assert layouts.store_paths(layout, FileType.PE, obj) == layouts.get_directory_paths(
            layout, FileType.PE, obj
        )


@pytest.mark.parametrize("object_type", ["pe_dotnet", "pe"])
@pytest.mark.parametrize("layout_type", [LayoutType.SYMSTORE, LayoutType.NATIVE, LayoutType.SYMSTORE_INDEX2])
@pytest.mark.parametrize("vector", PORTABLE_KEYS, ids=lambda v: v["key"])
def test_a_portable_pdb_is_also_asked_for_under_its_upper_case_ffffffff_key(
    vector: dict[str, Any], layout_type: LayoutType, object_type: str
) -> None:
    inputs = vector["inputs"]
    obj = ObjectQuery.create(
        debug_id=f"{inputs['pdb_id_guid']}-ffffffff", debug_file=inputs["file_name"], object_type=object_type
    )
    layout = Layout(type=layout_type)
    filetype = FileType.PORTABLEPDB if object_type == "pe_dotnet" else FileType.PDB
    symbolicator = layouts.get_directory_paths(layout, filetype, obj)
    paths = layouts.store_paths(layout, filetype, obj)
    assert paths[-len(symbolicator) :] == symbolicator  # probed first
    extra = paths[: -len(symbolicator)]
    assert extra and len(extra) == len(symbolicator)
    key_id = vector["key"].split("/")[1]
    for ours, theirs in zip(symbolicator, extra, strict=True):
        assert f"/{key_id.upper()}/" in theirs and theirs.lower() == ours.lower() and theirs != ours


def test_a_pdb_with_another_age_or_on_an_ssqp_store_gets_no_extra_spelling() -> None:
    inputs = PORTABLE_KEYS[0]["inputs"]
    for debug_id, layout_type in (
        (f"{inputs['pdb_id_guid']}-1", LayoutType.SYMSTORE),
        (f"{inputs['pdb_id_guid']}-ffffffff", LayoutType.SSQP),
    ):
        obj = ObjectQuery.create(debug_id=debug_id, debug_file=inputs["file_name"], object_type="pe")
        layout = Layout(type=layout_type)
        assert layouts.store_paths(layout, FileType.PDB, obj) == layouts.get_directory_paths(
            layout, FileType.PDB, obj
        )


# --------------------------------------------------------------------------------------------------
# Edges of the templates (layouts.md §1.2): the shortest ids, names without an extension, missing inputs.


def test_a_code_id_of_two_digits_still_fills_the_cid_templates() -> None:
    obj = ObjectQuery.create(code_id="ab", object_type="elf")
    assert layouts.native_paths(FileType.ELF_CODE, obj) == ["ab/"]  # cid[0:2]/cid[2:]
    assert layouts.unified_paths(FileType.ELF_CODE, obj) == ["ab//executable"]
    shorter = ObjectQuery.create(code_id="a", object_type="elf")
    assert (
        layouts.native_paths(FileType.ELF_CODE, shorter)
        == layouts.unified_paths(FileType.ELF_CODE, shorter)
        == []
    )


def test_a_pe_code_id_of_eight_digits_is_all_cid8() -> None:
    obj = ObjectQuery.create(code_id="5ab38077", code_file="crash.exe", object_type="pe")
    assert layouts.symstore_paths(FileType.PE, obj) == ["crash.exe/5AB38077/crash.exe"]
    seven = ObjectQuery.create(code_id="5ab3807", code_file="crash.exe", object_type="pe")
    assert layouts.symstore_paths(FileType.PE, seven) == []


def test_the_breakpad_stem_chain_strips_exe_dll_and_pdb_together_as_upstream_does() -> None:
    assert layouts.breakpad_stem("foo.pdb.dll.exe") == "foo"
    assert layouts.breakpad_stem("foo.pdb.exe") == "foo.pdb.exe"


def test_a_source_bundle_beside_a_pdb_named_without_an_extension_keeps_the_whole_name() -> None:
    obj = ObjectQuery(debug_id=PE_DEBUG_ID, debug_file="crash", object_type=ObjectType.PE)
    (pdb,) = layouts.native_paths(FileType.PDB, obj)
    assert layouts.native_paths(FileType.SOURCEBUNDLE, obj) == [pdb + ".src.zip"]
    assert layouts.symstore_paths(FileType.SOURCEBUNDLE, obj) == [pdb + ".src.zip"]


def test_templates_whose_inputs_are_missing_yield_no_path() -> None:
    no_debug_file = ObjectQuery(debug_id=PE_DEBUG_ID, object_type=ObjectType.PE)
    assert layouts.native_paths(FileType.SOURCEBUNDLE, no_debug_file) == []
    assert layouts.symstore_paths(FileType.SOURCEBUNDLE, no_debug_file) == []
    no_ids = ObjectQuery(code_file="crash", debug_file="crash.pdb", object_type=ObjectType.PE)
    for filetype in (FileType.PE, FileType.PDB, FileType.MACH_CODE, FileType.MACH_DEBUG):
        assert layouts.unified_paths(filetype, no_ids) == []


def test_the_index2_prefix_of_a_one_character_name_is_that_character() -> None:
    obj = ObjectQuery(debug_id=PE_DEBUG_ID, debug_file="a", object_type=ObjectType.PE)
    (plain,) = layouts.symstore_paths(FileType.PDB, obj)
    assert layouts.symstore_index2_paths(FileType.PDB, obj) == ["a/" + plain]


def test_a_portable_pdb_of_a_dotnet_object_gets_the_ffffffff_key_whatever_its_age() -> None:
    inputs = PORTABLE_KEYS[0]["inputs"]
    obj = ObjectQuery.create(
        debug_id=f"{inputs['pdb_id_guid']}-1", debug_file=inputs["file_name"], object_type="pe_dotnet"
    )
    layout = Layout(type=LayoutType.SYMSTORE)
    paths = layouts.store_paths(layout, FileType.PORTABLEPDB, obj)
    key_id = PORTABLE_KEYS[0]["key"].split("/")[1].upper()
    assert [p for p in paths if f"/{key_id}/" in p] == paths[:1]


@pytest.mark.parametrize("filetype", [FileType.PE, FileType.ELF_CODE])
def test_layouts_without_a_second_spelling_keep_symbolicators_paths_for_long_code_ids(
    filetype: FileType,
) -> None:
    obj = _pe_query(PE_KEYS[0]["inputs"])
    for layout_type in (LayoutType.SLASHSYMBOLS, LayoutType.SYMSTORE, LayoutType.NATIVE):
        layout = Layout(type=layout_type)
        assert layouts.store_paths(layout, filetype, obj) == layouts.get_directory_paths(
            layout, filetype, obj
        )


def test_a_nine_digit_pe_code_id_has_its_timestamp_upper_cased_on_ssqp_stores_too() -> None:
    obj = ObjectQuery.create(code_id="5ab38077e", code_file="crash.exe", object_type="pe")
    paths = layouts.store_paths(Layout(type=LayoutType.SSQP), FileType.PE, obj)
    assert "crash.exe/5AB38077e/crash.exe" in paths
