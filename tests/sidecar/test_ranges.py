"""Conditional and range decisions on cached files (RFC 9110 order), as pure functions."""

from __future__ import annotations

import pytest

from symbol_proxy.server import ranges

SIZE = 1000
MTIME_NS = 1_700_000_000 * 1_000_000_000
ETAG = '"abc-3e8"'
DATE = ranges.http_date(MTIME_NS)
EARLIER = ranges.http_date(MTIME_NS - 3600 * 1_000_000_000)


def decide(headers: dict[str, str], method: str = "GET") -> ranges.Plan:
    return ranges.plan(method, headers, size=SIZE, mtime_ns=MTIME_NS, etag=ETAG)


@pytest.mark.parametrize(
    ("headers", "status", "start", "end"),
    [
        ({}, 200, 0, SIZE),
        ({"Range": "bytes=0-99"}, 206, 0, 100),
        ({"Range": "bytes=900-"}, 206, 900, SIZE),
        ({"Range": "bytes=-10"}, 206, 990, SIZE),
        ({"Range": "bytes=-5000"}, 206, 0, SIZE),
        ({"Range": "bytes=990-2000"}, 206, 990, SIZE),
        ({"Range": "bytes=1000-"}, 416, 0, 0),
        ({"Range": "bytes=-0"}, 416, 0, 0),
        ({"Range": "bytes=0-1,5-9"}, 200, 0, SIZE),
        ({"Range": "items=0-1"}, 200, 0, SIZE),
        ({"Range": "bytes=9-1"}, 200, 0, SIZE),
        ({"Range": "bytes=abc"}, 200, 0, SIZE),
        ({"If-None-Match": ETAG}, 304, 0, 0),
        ({"If-None-Match": f"W/{ETAG}"}, 304, 0, 0),
        ({"If-None-Match": '"other"'}, 200, 0, SIZE),
        ({"If-None-Match": "*"}, 304, 0, 0),
        ({"If-Modified-Since": DATE}, 304, 0, 0),
        ({"If-Modified-Since": EARLIER}, 200, 0, SIZE),
        ({"If-None-Match": '"other"', "If-Modified-Since": DATE}, 200, 0, SIZE),
        ({"If-Match": '"other"'}, 412, 0, 0),
        ({"If-Match": ETAG, "Range": "bytes=0-9"}, 206, 0, 10),
        ({"If-Unmodified-Since": EARLIER}, 412, 0, 0),
        ({"If-Range": ETAG, "Range": "bytes=0-9"}, 206, 0, 10),
        ({"If-Range": '"stale"', "Range": "bytes=0-9"}, 200, 0, SIZE),
        ({"If-Range": EARLIER, "Range": "bytes=0-9"}, 200, 0, SIZE),
        ({"If-Range": DATE, "Range": "bytes=0-9"}, 206, 0, 10),
    ],
)
def test_requests_are_decided_in_rfc_order(
    headers: dict[str, str], status: int, start: int, end: int
) -> None:
    decision = decide(headers)
    assert decision.status == status
    if status in (200, 206):
        assert (decision.start, decision.end) == (start, end)


def test_a_partial_answer_names_its_range_and_an_unsatisfiable_one_the_size() -> None:
    assert decide({"Range": "bytes=10-19"}).content_range == f"bytes 10-19/{SIZE}"
    assert decide({"Range": "bytes=5000-"}).content_range == f"bytes */{SIZE}"
