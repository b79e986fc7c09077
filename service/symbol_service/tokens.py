"""Personal access tokens: kept as hashes, each with scopes (spec §2).

A token is accepted as the password of ``Authorization: Basic`` (any user, debuggers send an empty
one) or as ``Authorization: Bearer``. Only SHA-256 hashes are stored (a Kubernetes Secret in a
deployment); tokens are random and long, so a fast hash is enough and lookups are a dict access.
Scopes nest as Azure's do: ``vso.symbols_manage`` includes write and read, ``vso.symbols_write``
includes read. Nothing here logs or formats a token.
"""

from __future__ import annotations

import base64
import binascii
import dataclasses
import enum
import hashlib
import secrets
from collections.abc import Iterable, Mapping
from typing import Any, Protocol

__all__ = ["Authenticator", "Principal", "Scope", "TokenTable", "credential", "hash_token", "new_token"]

_PREFIX = "sha256:"


class Scope(enum.StrEnum):
    READ = "vso.symbols"
    WRITE = "vso.symbols_write"
    MANAGE = "vso.symbols_manage"


_IMPLIES: dict[Scope, frozenset[Scope]] = {
    Scope.READ: frozenset({Scope.READ}),
    Scope.WRITE: frozenset({Scope.READ, Scope.WRITE}),
    Scope.MANAGE: frozenset({Scope.READ, Scope.WRITE, Scope.MANAGE}),
}


def hash_token(token: str) -> str:
    """The stored form of a token: ``sha256:<hex>``."""
    return _PREFIX + hashlib.sha256(token.encode("utf-8")).hexdigest()


def new_token() -> str:
    """A fresh random token (256 bits, URL-safe)."""
    return secrets.token_urlsafe(32)


def credential(authorization: str | None) -> str | None:
    """The token carried by an ``Authorization`` header, or ``None`` when there is none usable."""
    if not authorization:
        return None
    scheme, _, value = authorization.strip().partition(" ")
    value = value.strip()
    if scheme.lower() == "bearer":
        return value or None
    if scheme.lower() == "basic":
        try:
            decoded = base64.b64decode(value, validate=True).decode("utf-8")
        except (binascii.Error, UnicodeDecodeError, ValueError):
            return None
        _, colon, password = decoded.partition(":")
        return (password if colon else decoded) or None
    return None


@dataclasses.dataclass(frozen=True, slots=True)
class Principal:
    """Who called: the token's name (for ``createdBy`` and logs) and what it may do."""

    name: str
    scopes: frozenset[Scope]

    def allows(self, scope: Scope) -> bool:
        return scope in self.scopes


class Authenticator(Protocol):
    """Anything that knows tokens: a ``TokenTable``, or a file of them that is reloaded."""

    def authenticate(self, token: str | None) -> Principal | None: ...


class TokenTable:
    """Token hashes → principals, built from a list of ``{name, hash, scopes}`` records."""

    def __init__(self, records: Iterable[Mapping[str, Any]]) -> None:
        self._by_hash: dict[str, Principal] = {}
        for number, record in enumerate(records):
            name = str(record.get("name") or "")
            digest = str(record.get("hash") or "").lower()
            if not name or not digest.startswith(_PREFIX) or len(digest) != len(_PREFIX) + 64:
                raise ValueError(f"token record {number}: needs a name and a hash 'sha256:<64 hex>'")
            try:
                granted = [Scope(scope) for scope in record.get("scopes") or ()]
            except ValueError as exc:
                raise ValueError(f"token record {name!r}: {exc}") from None
            if not granted:
                raise ValueError(f"token record {name!r}: no scopes")
            scopes = frozenset().union(*(_IMPLIES[scope] for scope in granted))
            self._by_hash[digest] = Principal(name, scopes)

    def __len__(self) -> int:
        return len(self._by_hash)

    def authenticate(self, token: str | None) -> Principal | None:
        if not token:
            return None
        return self._by_hash.get(hash_token(token))
