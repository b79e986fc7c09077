"""Client keys and debug entry ids (spec §5.3, §10).

A client key is an SSQP/SymSrv key of exactly three non-empty ``/``-separated parts, none of them
``.`` or ``..`` and none with characters that cannot be in a file name; it is matched
case-insensitively (Azure itself stores ``symbol.exe/557a1d8ee000/symbol.exe`` and
``Symbol.exe/55A4BFF410000/Symbol.exe`` side by side), so ``lookup_key`` is its lower-case form and
the original is kept for display. A debug entry id is the key and the information level as 8 hex
digits: ``symbol.exe/557a1d8ee000/symbol.exe/00000001``.
"""

from __future__ import annotations

import re

from symbol_service import errors

__all__ = ["MAX_KEY_LENGTH", "check_client_key", "entry_id", "lookup_key", "parse_entry_id"]

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
