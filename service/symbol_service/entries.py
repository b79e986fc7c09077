"""Client keys and debug entry ids (spec §5.3, §10).

A client key is an SSQP/SymSrv key of exactly three non-empty ``/``-separated parts, none of them
``.`` or ``..`` and none with characters that cannot be in a file name; it is matched
case-insensitively (Azure itself stores ``symbol.exe/557a1d8ee000/symbol.exe`` and
``Symbol.exe/55A4BFF410000/Symbol.exe`` side by side), so ``lookup_key`` is its lower-case form and
the original is kept for display. A debug entry id is the key and the information level as 8 hex
digits: ``symbol.exe/557a1d8ee000/symbol.exe/00000001``.
"""

from __future__ import annotations

import dataclasses
import enum
import re
from collections.abc import Mapping

from symbol_service import errors

__all__ = [
    "MAX_KEY_LENGTH",
    "MAX_QUERY_ENTRIES",
    "EntryQuery",
    "SortOrder",
    "check_client_key",
    "entry_id",
    "lookup_key",
    "parse_entry_id",
    "parse_query",
]

MAX_KEY_LENGTH = 1024
_INVALID = re.compile(r'[\x00-\x1f"<>|:*?\\]')
_LEVEL = re.compile(r"^[0-9a-fA-F]{8}$")


def check_client_key(key: str) -> str:
    """``key`` if it is a valid client key, else ``InvalidEndpointParameterException``."""
    parts = key.split("/")
    if (
        len(key) > MAX_KEY_LENGTH
        or len(parts) != 3
        or any(not part or part in (".", "..") or _INVALID.search(part) for part in parts)
    ):
        raise errors.ServiceError(
            "InvalidEndpointParameterException",
            "A clientKey is three non-empty parts separated by '/' (file/id/file), "
            "without '.', '..' or characters invalid in file names.",
        )
    return key


def lookup_key(key: str) -> str:
    return key.lower()


def entry_id(client_key: str, level: int) -> str:
    return f"{client_key}/{level:08x}"


def parse_entry_id(value: str) -> tuple[str, int]:
    """(client key, level) of a debug entry id; ``DebugEntryNotFoundException`` if it is not one."""
    key, _, level = value.rpartition("/")
    if not _LEVEL.match(level):
        raise errors.ServiceError("DebugEntryNotFoundException", "Not a debug entry id (key/8-hex-level).")
    try:
        return check_client_key(key), int(level, 16)
    except errors.ServiceError:
        raise errors.ServiceError(
            "DebugEntryNotFoundException", "Not a debug entry id (key/8-hex-level)."
        ) from None


MAX_QUERY_ENTRIES = 1000
"""Most entries one cross-request query answers (``maxEntries`` above it is a 400)."""


class SortOrder(enum.IntEnum):
    """``sortOrder`` of the cross-request query (spec §4.3), by name (any case) or number."""

    SERVER_DEFAULT = 0
    LEAST_INFORMATION_FIRST = 1
    MOST_INFORMATION_FIRST = 2


_SORT_NAMES = {"serverdefault": 0, "leastinformationfirst": 1, "mostinformationfirst": 2}


@dataclasses.dataclass(frozen=True, slots=True)
class EntryQuery:
    start: int = 0
    limit: int = MAX_QUERY_ENTRIES
    order: SortOrder = SortOrder.SERVER_DEFAULT


def _bad(message: str) -> errors.ServiceError:
    return errors.ServiceError("InvalidEndpointParameterException", message)


def parse_query(query: Mapping[str, str]) -> EntryQuery:
    """``startEntry``, ``maxEntries`` and ``sortOrder`` of ``GET debugentries[/{clientKey}]``
    (parameter names in any case); anything malformed is a 400 naming the parameter."""
    params = {name.lower(): value.strip() for name, value in query.items()}
    start, limit = 0, MAX_QUERY_ENTRIES
    if "startentry" in params:
        if not params["startentry"].isdigit():
            raise _bad("startEntry is a number of entries to skip (0 or more).")
        start = int(params["startentry"])
    if "maxentries" in params:
        value = params["maxentries"]
        if not value.isdigit() or not 1 <= int(value) <= MAX_QUERY_ENTRIES:
            raise _bad(f"maxEntries is a number from 1 to {MAX_QUERY_ENTRIES}.")
        limit = int(value)
    order = SortOrder.SERVER_DEFAULT
    if "sortorder" in params:
        value = params["sortorder"].lower()
        number = int(value) if value.isdigit() else _SORT_NAMES.get(value)
        if number not in tuple(SortOrder):
            raise _bad("sortOrder is ServerDefault, LeastInformationFirst or MostInformationFirst (0, 1, 2).")
        order = SortOrder(number)
    return EntryQuery(start, limit, order)
