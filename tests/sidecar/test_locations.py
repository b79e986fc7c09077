"""How a relative location becomes a URL, an object key or a display URI (layouts.md §8)."""

from __future__ import annotations

from typing import Any

import pytest

from symbol_proxy import locations
from tests.sidecar.vectors import load

MISC: dict[str, Any] = load("symbolicator_misc_vectors.json")
URL_JOIN = MISC["url_join"]
KEY_PREFIX = MISC["key_prefix"]
BUCKET_URIS = [e for e in MISC["remote_uris"] if e["type"] in ("s3", "gcs") and "uri" in e]
GCS_OBJECTS = [e for e in MISC["remote_uris"] if e["type"] == "gcs" and "metadata_url" in e]


@pytest.mark.parametrize(
    "entry", URL_JOIN, ids=[f"{e['base_url']}+{e['location'] or '<empty>'}" for e in URL_JOIN]
)
def test_every_upstream_url_join_case_gives_the_same_url(entry: dict[str, Any]) -> None:
    assert locations.join_url(entry["base_url"], entry["location"]) == entry["url"]


@pytest.mark.parametrize(
    "entry", KEY_PREFIX, ids=[f"{e['prefix'] or '<empty>'}+{e['location']}" for e in KEY_PREFIX]
)
def test_every_upstream_key_prefix_case_gives_the_same_key(entry: dict[str, Any]) -> None:
    assert locations.join_key(entry["prefix"], entry["location"]) == entry["key"]


@pytest.mark.parametrize("entry", BUCKET_URIS, ids=[e["type"] for e in BUCKET_URIS])
def test_bucket_uris_are_percent_encoded_like_upstream(entry: dict[str, Any]) -> None:
    scheme = {"s3": "s3", "gcs": "gs"}[entry["type"]]
    key = locations.join_key(entry["prefix"], entry["location"])
    assert locations.remote_uri(scheme, entry["bucket"], key) == entry["uri"]


@pytest.mark.parametrize("entry", GCS_OBJECTS, ids=[e["object"] for e in GCS_OBJECTS])
def test_a_gcs_object_url_carries_the_key_as_one_encoded_segment(entry: dict[str, Any]) -> None:
    assert locations.gcs_object_url(entry["bucket"], entry["object"]) == entry["metadata_url"]


@pytest.mark.parametrize(
    ("location", "tail"),
    [
        ("a#b/c?d", "/a%23b/c%3Fd"),  # a name is never read as a fragment or a query
        ("100%/x", "/100%25/x"),  # nor as an escape
        ("a\\b", "/a%5Cb"),  # backslashes are not separators over HTTP
        ("./../x/..", "/x"),  # dot segments never climb out of the base
        ("\u00e9t\u00e9", "/%C3%A9t%C3%A9"),  # UTF-8, uppercase hex
        ('a{b}`<>"', "/a%7Bb%7D%60%3C%3E%22"),
        ("!$&'()*+,;=:@[]^|~", "/!$&'()*+,;=:@[]^|~"),
    ],
    ids=["hash-and-question", "percent", "backslash", "dot-segments", "non-ascii", "path-set", "kept-as-is"],
)
def test_location_segments_are_encoded_as_url_path_segments(location: str, tail: str) -> None:
    assert locations.join_url("https://example.org/base", location) == "https://example.org/base" + tail


def test_a_query_or_fragment_of_the_base_url_stays_at_the_end() -> None:
    assert locations.join_url("https://h/sym/?t=1#f", "a/b") == "https://h/sym/a/b?t=1#f"


def test_a_base_url_without_a_path_is_its_root() -> None:
    assert locations.join_url("https://h", "a") == locations.join_url("https://h/", "a") == "https://h/a"


def test_a_relative_base_url_is_rejected() -> None:
    with pytest.raises(ValueError, match="absolute"):
        locations.join_url("symbols/", "a")
