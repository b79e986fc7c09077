"""Source filters (layouts.md §6) and SymStore index lines (§7).

The upstream glob cases and index lines come from ``symbolicator_misc_vectors.json``; the cases
below them pin the Rust ``glob`` crate's semantics where Python's ``fnmatch`` would differ.
"""

from __future__ import annotations

from typing import Any

import pytest

from symbol_proxy import filters
from symbol_proxy.config import SourceFilters
from symbol_proxy.objects import FileType, ObjectQuery
from tests.sidecar.vectors import load, short

MISC: dict[str, Any] = load("symbolicator_misc_vectors.json")
LAYOUT_VECTORS: list[dict[str, Any]] = load("layout_vectors.json")


def _patterns(entry: dict[str, Any]) -> tuple[str, ...]:
    if "patterns" in entry:
        return tuple(entry["patterns"])
    return () if entry["pattern"] is None else (entry["pattern"],)


def _allowed(patterns: tuple[str, ...], code_file: str | None, debug_file: str | None) -> bool:
    query = ObjectQuery.create(code_file=code_file, debug_file=debug_file)
    return filters.is_allowed(SourceFilters(path_patterns=patterns), query, FileType.PDB)


GLOB_CASES = [e for e in MISC["glob_path_patterns"] if "matches" in e]
GLOB_SETS = [e for e in MISC["glob_path_patterns"] if "all_match" in e]


@pytest.mark.parametrize(
    "entry",
    GLOB_CASES,
    ids=[f"{'|'.join(_patterns(e)) or 'no-patterns'}-vs-{short(e['code_file'])}" for e in GLOB_CASES],
)
def test_every_upstream_glob_case_is_decided_as_symbolicator_decides_it(entry: dict[str, Any]) -> None:
    assert _allowed(_patterns(entry), entry["code_file"], entry.get("debug_file")) is entry["matches"]


@pytest.mark.parametrize("entry", GLOB_SETS, ids=[f"{len(e['all_match'])}-pairs" for e in GLOB_SETS])
def test_electrons_patterns_match_every_listed_file_pair(entry: dict[str, Any]) -> None:
    for code_file, debug_file in entry["all_match"]:
        assert _allowed(_patterns(entry), code_file, debug_file), (code_file, debug_file)


# The crate's semantics, case by case (layouts.md §6).
GLOB_SEMANTICS = [
    ("*", "", True),
    ("*", "a/b/c", True),  # `*` crosses separators
    ("a?c", "a/c", True),  # so does `?`
    ("a?c", "ac", False),
    ("*.PDB", "C:/x/Crash.pdb", True),  # ASCII case-insensitive
    ("\u00c9*", "\u00e9t\u00e9", False),  # ...but not beyond ASCII
    (".hidden", ".HIDDEN", True),  # no special leading dots
    ("**", "anything/at/all", True),
    ("**/b", "b", True),
    ("**/b", "a/b", True),
    ("**/b", "ab", False),
    ("a/**/b", "a/b", True),
    ("a/**/b", "a/x/y/b", True),
    ("a/**/b", "a/xb", False),
    ("a/**", "a/", True),
    ("a/**", "a/x/y", True),
    ("a/**", "a", False),
    ("**/", "no-slash-needed", True),  # the separator after `**` belongs to it
    ("a/**/**/b", "a/b", True),
    ("[abc]x", "Bx", True),
    ("[abc]x", "dx", False),
    ("[!abc]x", "dx", True),
    ("[!abc]x", "Ax", False),
    ("[a-c]", "B", True),  # letter ranges fold case
    ("[0-Z]", "A", True),
    ("[0-Z]", "a", False),  # a range with a non-letter end does not (unlike Python's re)
    ("[]]", "]", True),  # the first character of a class is literal
    ("[!]]", "]", False),
    ("[!]]", "x", True),
    ("[z-a]", "m", False),  # a reversed range matches nothing
    ("[!z-a]", "m", True),
    ("[&&]", "&", True),
    ("a\\b", "a\\b", True),  # no escape character: a backslash is literal
    ("(x)+", "(x)+", True),  # regex syntax is literal
    ("c:/windows/", "C:/Windows/System32", False),
]


@pytest.mark.parametrize(
    ("pattern", "path", "matches"), GLOB_SEMANTICS, ids=[f"{p}-vs-{s}" for p, s, _ in GLOB_SEMANTICS]
)
def test_globs_follow_the_rust_glob_crate(pattern: str, path: str, matches: bool) -> None:
    assert (filters.compile_glob(pattern).fullmatch(path) is not None) is matches


@pytest.mark.parametrize("pattern", ["a**", "**a", "a/**b", "***", "[abc", "[!", "[", "[!a"])
def test_an_invalid_glob_is_rejected(pattern: str) -> None:
    with pytest.raises(filters.InvalidGlob):
        filters.compile_glob(pattern)


def test_an_invalid_pattern_in_a_filter_never_matches_but_does_not_break_the_others() -> None:
    assert not filters.matches_path_patterns(["[abc"], "[abc", None)
    assert filters.matches_path_patterns(["[abc", "*.pdb"], None, "x.pdb")


def test_backslashes_in_file_paths_are_read_as_separators() -> None:
    assert filters.matches_path_patterns(["c:/windows/*"], "C:\\Windows\\kernel32.dll", None)


def test_an_object_without_file_names_matches_no_pattern_but_passes_an_empty_list() -> None:
    assert not _allowed(("*",), None, None)
    assert _allowed((), None, None)


def test_globs_are_compiled_once_per_pattern() -> None:
    assert filters.compile_glob("*electron*") is filters.compile_glob("*electron*")


def test_a_source_that_requires_a_checksum_is_skipped_for_objects_without_one() -> None:
    nuget = SourceFilters(filetypes=(FileType.PORTABLEPDB,), requires_checksum=True)
    without = ObjectQuery.create(debug_file="a.pdb")
    with_checksum = ObjectQuery.create(debug_file="a.pdb", debug_checksum="SHA256:00")
    assert not filters.is_allowed(nuget, without, FileType.PORTABLEPDB)
    assert filters.is_allowed(nuget, with_checksum, FileType.PORTABLEPDB)
    assert not filters.is_allowed(nuget, with_checksum, FileType.PDB)


def test_an_empty_filter_allows_every_file_type() -> None:
    query = ObjectQuery.create(code_file="x")
    assert all(filters.is_allowed(SourceFilters(), query, filetype) for filetype in FileType)


# --------------------------------------------------------------------------------------------------
# SymStore 000Admin index lines

INDEX_LINES = MISC["symstore_index_line_parse"]


@pytest.mark.parametrize("entry", INDEX_LINES, ids=[e["path"] for e in INDEX_LINES])
def test_every_upstream_index_line_parses_to_its_store_path(entry: dict[str, Any]) -> None:
    assert filters.parse_index_line(entry["line"]) == entry["path"]


def test_the_index_fixture_parses_to_exactly_the_entries_the_index_snapshots_use() -> None:
    files = MISC["symstore_index_fixture"]["files"]
    lines = [line for name, content in files.items() if name != "000Admin/lastid.txt" for line in content]
    parsed = {filters.parse_index_line(line) for line in lines}
    snapshots = [e for e in LAYOUT_VECTORS if e.get("has_index") and e["layout"] == "symstore"]
    assert snapshots
    for entry in snapshots:
        assert parsed == set(entry["index_entries"])


@pytest.mark.parametrize(
    ("line", "path"),
    [
        ("", None),
        ("no quotes at all", None),
        ('"no-backslash",x', None),
        ('"a\\b\\c",x', "a/b\\c/a"),  # split at the first backslash only
        ('"unterminated\\ID', "unterminated/ID/unterminated"),
        ('prefix "n\\I" "m\\J"', "n/I/n"),  # only the first quoted entry counts
    ],
    ids=["empty", "no-quotes", "no-backslash", "two-backslashes", "unterminated", "two-entries"],
)
def test_index_lines_are_read_as_upstream_reads_them(line: str, path: str | None) -> None:
    assert filters.parse_index_line(line) == path
