"""Edges of glob classes, pattern lists and index lines that the upstream vectors do not reach (found
by mutation testing, see ``docs/testing.md``). Expected answers follow the Rust ``glob`` crate as
Symbolicator configures it (case-insensitive): ``[x-y]`` is a range only with a character on both
sides of the ``-``; a range whose ends are both ASCII letters also matches the other case; any other
range compares code points only."""

from __future__ import annotations

import pytest

from symbol_proxy import filters
from symbol_proxy.config import SourceFilters
from symbol_proxy.objects import FileType, ObjectQuery


@pytest.mark.parametrize(
    ("pattern", "path", "matches"),
    [
        ("[a-]", "-", True),  # a trailing `-` is a character, not an open range
        ("[a-]", "a", True),
        ("[0-0]", "0", True),  # a one-character range
        ("[_-z]", "`", True),  # not both letters: code points only...
        ("[_-z]", "B", False),  # ...so no case folding
        ("[z-z]", "Z", True),  # both letters: the other case too, up to the last letter
        ("[a-a]", "A", True),
        ("[x-z]", "Z", True),
        ("[a-c]", "_", False),  # the folded range is A-C, not A-c
        ("[a-c]", "Z", False),
        ("[xya-c]", "-", False),  # a range after two characters consumes its three
        ("[xya-c]", "B", True),
        ("[a-cx]", "x", True),  # the character after a range is not skipped
        ("[a-cx]", "X", True),
        ("[abc]", "X", False),  # nothing but the listed characters
        ("[a-cq]", "X", False),
    ],
)
def test_glob_classes_follow_the_rust_glob_crate(pattern: str, path: str, matches: bool) -> None:
    assert (filters.compile_glob(pattern).fullmatch(path) is not None) is matches


def test_an_empty_pattern_list_matches_any_object() -> None:
    assert filters.matches_path_patterns((), "crash.exe", None)
    assert filters.matches_path_patterns([], None, "crash.pdb")


def test_a_pattern_may_match_the_debug_file_alone() -> None:
    query = ObjectQuery.create(code_file="C:\\build\\crash.exe", debug_file="C:\\build\\crash.pdb")
    assert filters.is_allowed(SourceFilters(path_patterns=("*.pdb",)), query, FileType.PDB)
    assert filters.is_allowed(SourceFilters(path_patterns=("*.exe",)), query, FileType.PDB)
    assert not filters.is_allowed(SourceFilters(path_patterns=("*.dll",)), query, FileType.PDB)


def test_an_index_line_with_an_empty_quoted_entry_names_no_file() -> None:
    # Only the text between the first two quotes counts, and here it is empty.
    assert filters.parse_index_line('""a\\b"') is None
