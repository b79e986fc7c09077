"""The one small interface every backend implements, and the one error vocabulary they share.

A backend knows how to reach *locations* (relative paths produced by a layout) in one configured
source. It translates its library's errors into the classes below, inside its own module, so
everything around it (retries, the failure breaker, metrics, caching) is written once.

Reads are all the proxy needs. Publishing (the Symbol Service API, ``symbol_service``) writes through
``WritableBackend``: ``put`` (replace), ``create`` (only if absent, ``AlreadyExists`` otherwise),
``copy``, ``delete`` and ``head``; its garbage collector (``symbol-service gc``) also lists what is
stored and removes the leftovers of writes that never completed (``ListableBackend``). Every write
is all-or-nothing: a reader sees the old object or the whole new one, never a part (the filesystem
writes a temporary file and renames it; S3 publishes an object when its PUT or multipart upload
completes).
"""

from __future__ import annotations

import dataclasses
import datetime
from collections.abc import AsyncIterator
from typing import TYPE_CHECKING, Protocol, runtime_checkable

if TYPE_CHECKING:
    from symbol_proxy.objects import FileType, ObjectQuery

__all__ = [
    "AlreadyExists",
    "Backend",
    "BackendError",
    "DeferrableMd5",
    "ListableBackend",
    "Listed",
    "Malformed",
    "NotFound",
    "ObjectInfo",
    "ObjectStream",
    "PermissionDenied",
    "SearchableBackend",
    "UpstreamError",
    "UpstreamTimeout",
    "WritableBackend",
]


class BackendError(Exception):
    """Base of everything a backend raises for an upstream problem."""

    #: Whether trying the same request again may succeed (connect errors, 5xx, timeouts).
    retryable: bool = False


class NotFound(BackendError):
    """The source does not have the object. Cached as a miss; never an error to the client."""


class PermissionDenied(BackendError):
    """The source refused us (401/403, bad credentials). Treated as a miss for the client, counted
    separately, and reported once per source so an operator notices wrong credentials."""


class UpstreamTimeout(BackendError):
    """No answer, or no progress, within the configured time."""

    retryable = True


class UpstreamError(BackendError):
    """Any other failure: transport errors, 5xx, protocol violations."""

    def __init__(self, message: str, *, status: int | None = None, retryable: bool = True) -> None:
        super().__init__(message)
        self.status = status
        self.retryable = retryable


class AlreadyExists(BackendError):
    """A conditional create found the location taken; the object there was left alone."""


class Malformed(BackendError):
    """The source answered with something that is not the object (wrong magic, bad archive)."""


@dataclasses.dataclass(frozen=True, slots=True)
class ObjectInfo:
    """What is known about an object before its body is read."""

    size: int | None = None
    """Length of the body as it will be streamed, when the upstream says."""
    etag: str | None = None
    """The upstream's entity tag, verbatim, when it has one (S3 uses MD5 for simple uploads)."""


class ObjectStream(Protocol):
    """An open object whose body can be read once, chunk by chunk."""

    @property
    def info(self) -> ObjectInfo: ...

    def chunks(self) -> AsyncIterator[bytes]:
        """The body; raises ``UpstreamError``/``UpstreamTimeout`` if it breaks off."""
        ...

    async def aclose(self) -> None:
        """Release the connection; safe to call twice."""
        ...


@runtime_checkable
class DeferrableMd5(Protocol):
    """A stream that checks its body against an MD5 the store promised, and can hand that over."""

    def defer_md5(self) -> str | None:
        """Stop checking (call it before the body ends) and return the MD5 (hex), or ``None`` when
        there is none to check. The caller then owns the check: it must hash every byte itself."""
        ...


@runtime_checkable
class Backend(Protocol):
    """Read access to one configured source."""

    #: Source type for metric labels ("http", "filesystem", "s3", ...): bounded, never the user's id.
    kind: str

    async def open(self, location: str, *, checksum: str | None = None) -> ObjectStream:
        """Open ``location`` for reading, or raise ``NotFound`` / another ``BackendError``.

        ``checksum`` is the object's ``SymbolChecksum`` (``SHA256:<hex>``) when the lookup knows one.
        """
        ...

    async def aclose(self) -> None:
        """Close connection pools; called when a configuration is replaced or the proxy stops."""
        ...


@runtime_checkable
class WritableBackend(Backend, Protocol):
    """Write access, for publishing (SymbolRequest uploads)."""

    async def put(self, location: str, chunks: AsyncIterator[bytes], *, size: int | None = None) -> None:
        """Store the bytes of ``chunks`` at ``location``, replacing what was there, all or nothing.

        With ``size``, a body of another length is refused (``Malformed``) and nothing is stored.
        """
        ...

    async def create(self, location: str, chunks: AsyncIterator[bytes], *, size: int | None = None) -> None:
        """Like ``put``, but only if nothing is at ``location``; else ``AlreadyExists``. Two writers
        racing for one location: exactly one succeeds."""
        ...

    async def head(self, location: str) -> ObjectInfo:
        """What is stored at ``location`` (its size), or ``NotFound``; reads no body."""
        ...

    async def copy(self, source: str, destination: str) -> None:
        """Copy ``source`` to ``destination`` inside the store (replacing it), all or nothing."""
        ...

    async def delete(self, location: str) -> None:
        """Remove ``location``; deleting something absent is not an error."""
        ...


@dataclasses.dataclass(frozen=True, slots=True)
class Listed:
    """One stored object, as a listing reports it."""

    location: str
    size: int
    modified: datetime.datetime
    """When the object was last written (timezone-aware)."""


@runtime_checkable
class ListableBackend(WritableBackend, Protocol):
    """A writable store that can also say what it holds, for garbage collection."""

    def list(self, prefix: str) -> AsyncIterator[Listed]:
        """Every complete object whose location starts with ``prefix`` (a folder ends in ``/``), in
        no particular order; objects still being written are not listed."""
        ...

    async def remove_incomplete(self, before: datetime.datetime) -> int:
        """Remove what writes started before ``before`` and never completed left behind (the
        filesystem's temporary files, S3's unfinished multipart uploads); how many were removed."""
        ...


@runtime_checkable
class SearchableBackend(Backend, Protocol):
    """A source that is searched by identifiers instead of probed at layout paths (Sentry).

    ``search`` returns the locations to ``open``, best first, each with the file type it holds.
    """

    async def search(
        self, query: ObjectQuery, filetypes: tuple[FileType, ...]
    ) -> list[tuple[str, FileType]]: ...
