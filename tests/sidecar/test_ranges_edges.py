"""Edges of conditional and range decisions that the table in ``test_ranges.py`` does not reach
(found by mutation testing, see ``docs/testing.md``): HEAD requests, one-second boundaries of the
date conditions, sub-second modification times, strong comparison for If-Match, ETag lists without
spaces, dates without a zone, and one-byte ranges."""

from __future__ import annotations

import time

import pytest

from symbol_proxy.server import ranges

SIZE = 1000
MTIME_NS = 1_700_000_000 * 1_000_000_000
ETAG = '"abc-3e8"'
SECOND = 1_000_000_000
DATE = ranges.http_date(MTIME_NS)
A_SECOND_EARLIER = ranges.http_date(MTIME_NS - SECOND)


def decide(headers: dict[str, str], method: str = "GET", mtime_ns: int = MTIME_NS) -> ranges.Plan:
    return ranges.plan(method, headers, size=SIZE, mtime_ns=mtime_ns, etag=ETAG)


def test_head_requests_get_the_same_conditional_and_range_answers_as_get() -> None:
    assert decide({"If-Modified-Since": DATE}, "HEAD").status == 304
    head = decide({"Range": "bytes=10-19"}, "HEAD")
    assert (head.status, head.start, head.end) == (206, 10, 20)


def test_other_methods_ignore_if_modified_since_and_range() -> None:
    assert decide({"If-Modified-Since": DATE}, "POST").status == 200
    assert decide({"Range": "bytes=10-19"}, "POST").status == 200


def test_date_conditions_compare_whole_seconds() -> None:
    assert decide({"If-Unmodified-Since": DATE}).status == 200  # not modified since then
    assert decide({"If-Unmodified-Since": A_SECOND_EARLIER}).status == 412
    assert decide({"If-Modified-Since": A_SECOND_EARLIER}).status == 200
    # An HTTP date has no fraction: a file written at .5 s is not newer than its own date.
    half = MTIME_NS + SECOND // 2
    assert decide({"If-Modified-Since": ranges.http_date(half)}, mtime_ns=half).status == 304
    assert decide({"If-Unmodified-Since": ranges.http_date(half)}, mtime_ns=half).status == 200


def test_an_unreadable_date_is_ignored() -> None:
    assert decide({"If-Unmodified-Since": "yesterday"}).status == 200
    assert decide({"If-Modified-Since": "yesterday"}).status == 200


def test_a_date_without_a_zone_is_read_as_utc_whatever_the_local_zone(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("TZ", "JST-9")
    time.tzset()
    try:
        zoneless = DATE.replace("GMT", "-0000")  # RFC 5322: "-0000" is UTC with no zone known
        assert decide({"If-Modified-Since": zoneless}).status == 304
        assert decide({"If-Unmodified-Since": zoneless}).status == 200
    finally:
        monkeypatch.undo()
        time.tzset()


def test_if_match_compares_strongly() -> None:
    assert decide({"If-Match": f"W/{ETAG}"}).status == 412
    assert decide({"If-Match": ETAG}).status == 200


def test_etag_lists_need_no_space_after_the_comma() -> None:
    assert decide({"If-None-Match": f'"other",{ETAG}'}).status == 304
    assert decide({"If-Match": f'"other",{ETAG}'}).status == 200


def test_one_byte_ranges() -> None:
    last = decide({"Range": "bytes=-1"})
    assert (last.status, last.start, last.end, last.content_range) == (206, 999, 1000, "bytes 999-999/1000")
    first = decide({"Range": "bytes=0-0"})
    assert (first.status, first.start, first.end) == (206, 0, 1)


def test_a_range_that_ends_before_it_starts_is_ignored() -> None:
    backwards = decide({"Range": "bytes=10-9"})
    assert (backwards.status, backwards.start, backwards.end) == (200, 0, SIZE)
