"""``api-version``: from the query or from the Accept header, never rejected.

The spec requires it, real clients send ``2.0-preview`` in ``Accept: application/json;
api-version=2.0-preview``, and old tools send ``1.0``. We read it for logs and metrics and answer
every version the same way; a value that is not a version at all is ignored, not an error.
"""

from __future__ import annotations

import re

__all__ = ["api_version"]

_VERSION = re.compile(r"^\d{1,3}\.\d{1,3}(-preview(\.\d{1,3})?)?$", re.IGNORECASE)


def _from_accept(accept: str) -> str | None:
    for media_range in accept.split(","):
        for parameter in media_range.split(";")[1:]:
            name, _, value = parameter.partition("=")
            if name.strip().lower() == "api-version":
                return value.strip().strip('"')
    return None


def api_version(query_value: str | None, accept: str | None) -> str | None:
    """The requested version (query first, then Accept), or ``None`` when none is usable."""
    for candidate in (query_value, _from_accept(accept or "")):
        if candidate and _VERSION.match(candidate.strip()):
            return candidate.strip().lower()
    return None
