"""Conditional and range requests on a cached file, decided before a byte is read.

Pure functions over (method, request headers, size, mtime, etag), following RFC 9110's order:
If-Match, If-Unmodified-Since, If-None-Match, If-Modified-Since, then Range (honouring If-Range).
One ``bytes=`` range is served as 206; several ranges are answered with the whole file (allowed,
and no debugger asks for more than one); an unsatisfiable range is 416 with ``bytes */size``.
"""

from __future__ import annotations

import dataclasses
import email.utils
import functools
from collections.abc import Mapping
from datetime import UTC

__all__ = ["Plan", "http_date", "plan"]


@dataclasses.dataclass(frozen=True, slots=True)
class Plan:
    status: int
    """200, 206, 304, 412 or 416."""
    start: int = 0
    end: int = 0
    """Exclusive end of the bytes to send."""
    content_range: str | None = None

    @property
    def length(self) -> int:
        return self.end - self.start


@functools.lru_cache(maxsize=4096)
def http_date(mtime_ns: int) -> str:
    return email.utils.formatdate(mtime_ns / 1e9, usegmt=True)


def _parse_date(value: str) -> float | None:
    try:
        parsed = email.utils.parsedate_to_datetime(value)
    except (TypeError, ValueError, IndexError):
        return None
    if parsed.tzinfo is None:
        parsed = parsed.replace(tzinfo=UTC)
    return parsed.timestamp()


def _etag_matches(header: str, etag: str, *, weak: bool) -> bool:
    if header.strip() == "*":
        return True
    for candidate in header.split(","):
        candidate = candidate.strip()
        if weak:
            candidate = candidate.removeprefix("W/")
        if candidate == etag:
            return True
    return False


def _parse_range(value: str, size: int) -> tuple[int, int] | bool | None:
    """(start, end) for one satisfiable range, None to ignore the header, False if unsatisfiable."""
    unit, _, spec = value.partition("=")
    if unit.strip().lower() != "bytes" or "," in spec:
        return None
    first, dash, last = spec.strip().partition("-")
    if not dash:
        return None
    try:
        if not first:
            suffix = int(last)
            if suffix <= 0:
                return False
            return max(0, size - suffix), size
        start = int(first)
        end = int(last) + 1 if last else size
    except ValueError:
        return None
    if start < 0 or (last and end <= start):
        return None
    if start >= size:
        return False
    return start, min(end, size)


def plan(method: str, headers: Mapping[str, str], *, size: int, mtime_ns: int, etag: str) -> Plan:
    mtime = mtime_ns // 1_000_000_000
    if (value := headers.get("If-Match")) is not None:
        if not _etag_matches(value, etag, weak=False):
            return Plan(412)
    elif (value := headers.get("If-Unmodified-Since")) is not None:
        since = _parse_date(value)
        if since is not None and mtime > since:
            return Plan(412)
    if (value := headers.get("If-None-Match")) is not None:
        if _etag_matches(value, etag, weak=True):
            return Plan(304)
    elif (value := headers.get("If-Modified-Since")) is not None and method in ("GET", "HEAD"):
        since = _parse_date(value)
        if since is not None and mtime <= since:
            return Plan(304)
    whole = Plan(200, 0, size)
    value = headers.get("Range")
    if value is None or method not in ("GET", "HEAD"):
        return whole
    if (if_range := headers.get("If-Range")) is not None:
        if if_range.startswith(('"', 'W/"')):
            if if_range != etag:
                return whole
        else:
            date = _parse_date(if_range)
            if date is None or mtime > date:
                return whole
    parsed = _parse_range(value, size)
    if parsed is None:
        return whole
    if parsed is False:
        return Plan(416, content_range=f"bytes */{size}")
    assert isinstance(parsed, tuple)
    start, end = parsed
    return Plan(206, start, end, content_range=f"bytes {start}-{end - 1}/{size}")
