"""The route table: which operation an HTTP request asks for, decided without a web framework.

Routes are matched case-insensitively (Azure answers ``/_apis/Symbol/…`` for ``/_apis/symbol/…``),
under ``/{organization}/_apis/…`` and ``/_apis/…``. Client keys and debug entry ids contain ``/``,
so they are catch-all tails. The older forms real clients still call are served beside the current
ones: ``POST requests/{id}?collection=debugentries`` and ``POST requests/{id}/debugentries`` are the
same operation, and so are the by-name forms with ``requestName``. Every operation names the token
scope it needs (spec §2): reads ``vso.symbols``, creates and updates ``vso.symbols_write``, deletes
``vso.symbols_manage``; route discovery needs none.
"""

from __future__ import annotations

import dataclasses
import enum
from collections.abc import Mapping

from symbol_service import errors
from symbol_service.tokens import Scope

__all__ = ["Op", "Operation", "resolve"]


class Op(enum.StrEnum):
    LOCATIONS = "locations"
    RESOURCE_AREAS = "resource_areas"
    AVAILABILITY = "availability"
    CLIENT_VERSION = "client_version"
    CLIENT_DOWNLOAD = "client_download"
    CREATE_REQUEST = "create_request"
    LIST_REQUESTS = "list_requests"
    GET_REQUEST = "get_request"
    UPDATE_REQUEST = "update_request"
    DELETE_REQUEST = "delete_request"
    CREATE_ENTRIES = "create_entries"
    LIST_ENTRIES = "list_entries"
    GET_ENTRY = "get_entry"
    DELETE_ENTRY = "delete_entry"
    CONTENTS = "contents"
    QUERY_ENTRIES = "query_entries"
    SYMSRV = "symsrv"
    PUT_BLOB = "put_blob"
    UPLOAD_BLOB = "upload_blob"
    PUT_BLOCK = "put_block"
    GET_BLOB = "get_blob"
    BLOB_URL = "blob_url"
    REFERENCES_ADD = "references_add"


SCOPES: dict[Op, Scope | None] = {
    Op.LOCATIONS: None,
    Op.RESOURCE_AREAS: None,
    Op.AVAILABILITY: Scope.READ,
    Op.CLIENT_VERSION: Scope.READ,
    Op.CLIENT_DOWNLOAD: Scope.READ,
    Op.CREATE_REQUEST: Scope.WRITE,
    Op.LIST_REQUESTS: Scope.READ,
    Op.GET_REQUEST: Scope.READ,
    Op.UPDATE_REQUEST: Scope.WRITE,
    Op.DELETE_REQUEST: Scope.MANAGE,
    Op.CREATE_ENTRIES: Scope.WRITE,
    Op.LIST_ENTRIES: Scope.READ,
    Op.GET_ENTRY: Scope.READ,
    Op.DELETE_ENTRY: Scope.MANAGE,
    Op.CONTENTS: Scope.READ,
    Op.QUERY_ENTRIES: Scope.READ,
    Op.SYMSRV: Scope.READ,
    Op.PUT_BLOB: Scope.WRITE,
    Op.UPLOAD_BLOB: Scope.WRITE,
    Op.PUT_BLOCK: Scope.WRITE,
    Op.GET_BLOB: Scope.READ,
    Op.BLOB_URL: Scope.READ,
    Op.REFERENCES_ADD: Scope.WRITE,
}


@dataclasses.dataclass(frozen=True, slots=True)
class Operation:
    """One resolved API call; fields that the route does not carry are ``None``."""

    op: Op
    organization: str | None = None
    request_id: str | None = None
    request_name: str | None = None
    entry_id: str | None = None
    client_key: str | None = None
    """The client key (symsrv, debugentries), or the area id of ``RESOURCE_AREAS``."""
    client_type: str | None = None
    blob_id: str | None = None
    block_hash: str | None = None

    @property
    def scope(self) -> Scope | None:
        return SCOPES[self.op]


def _not_found(path: str) -> errors.ServiceError:
    return errors.ServiceError("ResourceNotFoundException", f"No API resource is served at {path!r}.")


def _not_allowed(method: str) -> errors.ServiceError:
    return errors.ServiceError("MethodNotAllowedException", f"The method {method} is not allowed here.")


def _tail(parts: list[str]) -> str | None:
    joined = "/".join(parts)
    return joined or None


def _entries_collection(query: Mapping[str, str]) -> bool:
    """Whether ``collection`` asks for debug entries; any other value is a clear 400."""
    collection = query.get("collection")
    if collection is None:
        return False
    if collection.lower() != "debugentries":
        raise errors.ServiceError(
            "InvalidEndpointParameterException",
            f"The collection {collection!r} is not known; only 'debugentries' is.",
        )
    return True


def _symbol(method: str, parts: list[str], query: Mapping[str, str], org: str | None, path: str) -> Operation:
    head = parts[0].lower() if parts else ""
    rest = parts[1:]
    if head == "availability" and not rest:
        if method == "GET":
            return Operation(Op.AVAILABILITY, org)
    elif head == "client":
        if not rest and method in ("HEAD", "GET"):
            return Operation(Op.CLIENT_VERSION, org)
        if len(rest) == 1 and method in ("HEAD", "GET"):
            return Operation(Op.CLIENT_DOWNLOAD, org, client_type=rest[0])
    elif head == "requests" and not rest:
        name = query.get("requestname")
        if method == "POST" and _entries_collection(query):
            if not name:
                raise errors.ServiceError(
                    "RequestNameRequiredException", "requestName is required with collection=debugentries."
                )
            return Operation(Op.CREATE_ENTRIES, org, request_name=name)
        if method == "POST":
            return Operation(Op.CREATE_REQUEST, org)
        if method == "GET":
            return Operation(Op.GET_REQUEST if name else Op.LIST_REQUESTS, org, request_name=name)
        if method in ("PATCH", "DELETE"):
            if not name:
                raise errors.ServiceError("RequestNameRequiredException", "requestName is required here.")
            op = Op.UPDATE_REQUEST if method == "PATCH" else Op.DELETE_REQUEST
            return Operation(op, org, request_name=name)
    elif head == "requests":
        request_id, sub = rest[0], rest[1:]
        kind = sub[0].lower() if sub else ""
        if not sub:
            if method == "POST" and _entries_collection(query):
                return Operation(Op.CREATE_ENTRIES, org, request_id=request_id)
            ops = {"GET": Op.GET_REQUEST, "PATCH": Op.UPDATE_REQUEST, "DELETE": Op.DELETE_REQUEST}
            if method in ops:
                return Operation(ops[method], org, request_id=request_id)
        elif kind == "debugentries" and len(sub) == 1:
            if method in ("POST", "GET"):
                op = Op.CREATE_ENTRIES if method == "POST" else Op.LIST_ENTRIES
                return Operation(op, org, request_id=request_id)
        elif kind == "debugentries":
            ops = {"GET": Op.GET_ENTRY, "DELETE": Op.DELETE_ENTRY}
            if method in ops:
                return Operation(ops[method], org, request_id=request_id, entry_id=_tail(sub[1:]))
        elif kind == "contents" and len(sub) > 1:
            if method == "GET":
                return Operation(Op.CONTENTS, org, request_id=request_id, entry_id=_tail(sub[1:]))
        else:
            raise _not_found(path)
    elif head == "debugentries":
        if method == "GET":
            return Operation(Op.QUERY_ENTRIES, org, client_key=_tail(rest))
    elif head == "symsrv" and rest:
        if method in ("GET", "HEAD"):
            return Operation(Op.SYMSRV, org, client_key=_tail(rest))
    else:
        raise _not_found(path)
    raise _not_allowed(method)


def _blob(method: str, parts: list[str], query: Mapping[str, str], org: str | None, path: str) -> Operation:
    head = parts[0].lower() if parts else ""
    rest = parts[1:]
    if head == "blobs" and not rest:
        if method == "PUT":
            return Operation(Op.UPLOAD_BLOB, org)
    elif head == "blobs" and len(rest) == 1:
        if method == "PUT":
            return Operation(Op.PUT_BLOB, org, blob_id=rest[0])
        if method == "POST" and query.get("blockhash"):
            return Operation(Op.PUT_BLOCK, org, blob_id=rest[0], block_hash=query["blockhash"])
        if method in ("GET", "HEAD"):
            return Operation(Op.GET_BLOB, org, blob_id=rest[0])
    elif head == "blobs" and len(rest) == 2 and rest[1].lower() == "url":
        if method == "GET":
            return Operation(Op.BLOB_URL, org, blob_id=rest[0])
    elif head == "referencesbatch" and not rest:
        if method == "POST":
            return Operation(Op.REFERENCES_ADD, org)
    else:
        raise _not_found(path)
    raise _not_allowed(method)


def resolve(method: str, path: str, query: Mapping[str, str]) -> Operation:
    """The operation for ``method`` on ``path`` (already percent-decoded) with ``query``.

    Raises ``ServiceError``: ``ResourceNotFoundException`` (404) for paths we do not serve,
    ``MethodNotAllowedException`` (405), and the 400s of bad route parameters.
    """
    method = method.upper()
    query = {name.lower(): value for name, value in query.items()}
    parts = [part for part in path.split("/") if part]
    lowered = [part.lower() for part in parts]
    if "_apis" not in lowered[:2]:
        raise _not_found(path)
    index = lowered.index("_apis")
    org = parts[0] if index == 1 else None
    parts = parts[index + 1 :]
    if any(part in (".", "..") for part in parts):
        raise _not_found(path)
    if method == "OPTIONS" and len(parts) <= 1:
        return Operation(Op.LOCATIONS, org)
    area = parts[0].lower() if parts else ""
    if area == "resourceareas" and len(parts) <= 2:
        if method != "GET":
            raise _not_allowed(method)
        return Operation(Op.RESOURCE_AREAS, org, client_key=parts[1] if len(parts) == 2 else None)
    if area == "symbol":
        return _symbol(method, parts[1:], query, org, path)
    if area == "blob":
        return _blob(method, parts[1:], query, org, path)
    raise _not_found(path)
