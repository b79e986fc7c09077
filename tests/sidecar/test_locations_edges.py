"""Edges of URL and key joining that the upstream vectors do not reach (found by mutation testing,
see ``docs/testing.md``). Expected values follow the rules in ``symbol_proxy.locations``: segments
are appended the way the ``url`` crate's ``path_segments_mut().pop_if_empty().extend(…)`` does."""

from __future__ import annotations

from symbol_proxy import locations


def test_several_segments_below_the_root_of_a_host_are_separated() -> None:
    assert locations.join_url("https://h", "a/b/c") == "https://h/a/b/c"
    assert locations.join_url("https://h/", "a/b/c") == "https://h/a/b/c"


def test_an_empty_location_leaves_the_root_path_of_the_base() -> None:
    # pop_if_empty drops the empty last segment, extending by nothing adds none: "/" stays.
    assert locations.join_url("https://h/", "") == "https://h/"
    assert locations.join_url("https://h/sym/", "") == "https://h/sym"


def test_a_url_in_the_query_of_the_base_does_not_move_the_authority() -> None:
    base = "https://h/sym?next=https://other/x"
    assert locations.join_url(base, "a/b") == "https://h/sym/a/b?next=https://other/x"


def test_a_key_prefix_loses_only_slashes() -> None:
    assert locations.join_key("Xcode-symbols/", "a/b") == "Xcode-symbols/a/b"
    assert locations.join_key("/team-X", "a") == "team-X/a"


def test_a_bucket_uri_keeps_the_sub_delimiters_of_a_key() -> None:
    assert locations.remote_uri("s3", "b", "a+b/c@d:e;f=g") == "s3://b/a+b/c@d:e;f=g"
    assert locations.remote_uri("gs", "b", "100%/x y") == "gs://b/100%/x%20y"
