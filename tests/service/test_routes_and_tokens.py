"""Routes (spec §3, §4, §7) and tokens (§2), without a server.

Covered: every operation under ``/{org}/_apis`` and ``/_apis``, in any case; the by-id and by-name
forms; ``collection=debugentries`` and the ``/debugentries`` path form as one operation; catch-all
client keys and entry ids with ``/``; 404 for unknown paths, 405 for known paths with a wrong method,
400 for a bad ``collection`` or a missing ``requestName``; the scope of each operation; token
hashing, Basic (any user, empty user) and Bearer credentials, nested scopes.
"""

from __future__ import annotations

import base64

import pytest

from symbol_service import errors, routes, tokens
from symbol_service.routes import Op

ID = "9dc380b5c295" + "0" * 52
KEY = "Symbol.pdb/3A56B500936248E6AE6577FBF609DC662/Symbol.pdb"

CASES = [
    ("OPTIONS", "/org/_apis", {}, routes.Operation(Op.LOCATIONS, "org")),
    ("GET", "/org/_apis/ResourceAreas", {}, routes.Operation(Op.RESOURCE_AREAS, "org")),
    (
        "GET",
        "/_apis/resourceareas/AF607F94-69BA-4821-8159-F04E37B66350",
        {},
        routes.Operation(Op.RESOURCE_AREAS, client_key="AF607F94-69BA-4821-8159-F04E37B66350"),
    ),
    ("GET", "/org/_apis/symbol/availability", {}, routes.Operation(Op.AVAILABILITY, "org")),
    ("HEAD", "/_apis/symbol/client", {}, routes.Operation(Op.CLIENT_VERSION)),
    (
        "GET",
        "/org/_apis/Symbol/Client/EXE",
        {},
        routes.Operation(Op.CLIENT_DOWNLOAD, "org", client_type="EXE"),
    ),
    ("POST", "/org/_apis/symbol/requests", {}, routes.Operation(Op.CREATE_REQUEST, "org")),
    ("GET", "/org/_apis/symbol/requests", {}, routes.Operation(Op.LIST_REQUESTS, "org")),
    (
        "GET",
        "/org/_apis/symbol/requests",
        {"requestName": "p/d/1"},
        routes.Operation(Op.GET_REQUEST, "org", request_name="p/d/1"),
    ),
    (
        "PATCH",
        "/org/_apis/symbol/requests",
        {"RequestName": "n"},
        routes.Operation(Op.UPDATE_REQUEST, "org", request_name="n"),
    ),
    (
        "DELETE",
        "/org/_apis/symbol/requests",
        {"requestName": "n", "synchronous": "true"},
        routes.Operation(Op.DELETE_REQUEST, "org", request_name="n"),
    ),
    (
        "POST",
        "/org/_apis/symbol/requests",
        {"requestName": "n", "collection": "debugentries"},
        routes.Operation(Op.CREATE_ENTRIES, "org", request_name="n"),
    ),
    ("GET", f"/org/_apis/symbol/requests/{ID}", {}, routes.Operation(Op.GET_REQUEST, "org", request_id=ID)),
    (
        "PATCH",
        f"/org/_APIS/SYMBOL/REQUESTS/{ID}",
        {},
        routes.Operation(Op.UPDATE_REQUEST, "org", request_id=ID),
    ),
    ("DELETE", f"/_apis/symbol/requests/{ID}", {}, routes.Operation(Op.DELETE_REQUEST, request_id=ID)),
    (
        "POST",
        f"/org/_apis/symbol/requests/{ID}",
        {"collection": "DebugEntries"},
        routes.Operation(Op.CREATE_ENTRIES, "org", request_id=ID),
    ),
    (
        "POST",
        f"/org/_apis/symbol/requests/{ID}/debugentries",
        {},
        routes.Operation(Op.CREATE_ENTRIES, "org", request_id=ID),
    ),
    (
        "GET",
        f"/org/_apis/symbol/requests/{ID}/DebugEntries",
        {},
        routes.Operation(Op.LIST_ENTRIES, "org", request_id=ID),
    ),
    (
        "GET",
        f"/org/_apis/symbol/requests/{ID}/debugentries/{KEY}/00000154",
        {},
        routes.Operation(Op.GET_ENTRY, "org", request_id=ID, entry_id=f"{KEY}/00000154"),
    ),
    (
        "DELETE",
        f"/org/_apis/symbol/requests/{ID}/debugentries/{KEY}/00000154",
        {},
        routes.Operation(Op.DELETE_ENTRY, "org", request_id=ID, entry_id=f"{KEY}/00000154"),
    ),
    (
        "GET",
        f"/org/_apis/symbol/requests/{ID}/contents/{KEY}/00000154",
        {},
        routes.Operation(Op.CONTENTS, "org", request_id=ID, entry_id=f"{KEY}/00000154"),
    ),
    ("GET", "/org/_apis/symbol/debugentries", {}, routes.Operation(Op.QUERY_ENTRIES, "org")),
    (
        "GET",
        f"/org/_apis/symbol/debugentries/{KEY}",
        {},
        routes.Operation(Op.QUERY_ENTRIES, "org", client_key=KEY),
    ),
    ("GET", f"/org/_apis/symbol/symsrv/{KEY}", {}, routes.Operation(Op.SYMSRV, "org", client_key=KEY)),
    ("PUT", "/org/_apis/blob/blobs/ABC00", {}, routes.Operation(Op.PUT_BLOB, "org", blob_id="ABC00")),
    (
        "POST",
        "/org/_apis/blob/blobs/ABC00",
        {"blockHash": "DD"},
        routes.Operation(Op.PUT_BLOCK, "org", blob_id="ABC00", block_hash="DD"),
    ),
    ("GET", "/_apis/blob/blobs/ABC00", {}, routes.Operation(Op.GET_BLOB, blob_id="ABC00")),
    ("PUT", "/org/_apis/blob/blobs", {}, routes.Operation(Op.UPLOAD_BLOB, "org")),
    ("GET", "/_apis/blob/blobs/ABC00/url", {}, routes.Operation(Op.BLOB_URL, blob_id="ABC00")),
    ("POST", "/org/_apis/blob/referencesbatch", {}, routes.Operation(Op.REFERENCES_ADD, "org")),
]


@pytest.mark.parametrize(("method", "path", "query", "expected"), CASES, ids=lambda c: str(c)[:40])
def test_routes_resolve(method: str, path: str, query: dict[str, str], expected: routes.Operation) -> None:
    assert routes.resolve(method, path, query) == expected


@pytest.mark.parametrize(
    ("method", "path", "query", "status"),
    [
        ("GET", "/org/symbol/requests", {}, 404),
        ("GET", "/org/_apis/nothing", {}, 404),
        ("GET", "/org/_apis/symbol/nothing", {}, 404),
        ("GET", f"/org/_apis/symbol/requests/{ID}/other", {}, 404),
        ("GET", "/org/_apis/symbol/symsrv/../../etc/passwd", {}, 404),
        ("PUT", "/org/_apis/symbol/requests", {}, 405),
        ("DELETE", "/org/_apis/symbol/symsrv/a/b/c", {}, 405),
        ("POST", f"/org/_apis/symbol/requests/{ID}", {"collection": "blobs"}, 400),
        ("PATCH", "/org/_apis/symbol/requests", {}, 400),
        ("POST", "/org/_apis/symbol/requests", {"collection": "debugentries"}, 400),
    ],
)
def test_bad_routes_fail_with_their_status(
    method: str, path: str, query: dict[str, str], status: int
) -> None:
    with pytest.raises(errors.ServiceError) as caught:
        routes.resolve(method, path, query)
    assert caught.value.status == status


@pytest.mark.parametrize(
    ("method", "path", "scope"),
    [
        ("GET", "/o/_apis/symbol/requests", tokens.Scope.READ),
        ("POST", "/o/_apis/symbol/requests", tokens.Scope.WRITE),
        ("PATCH", f"/o/_apis/symbol/requests/{ID}", tokens.Scope.WRITE),
        ("DELETE", f"/o/_apis/symbol/requests/{ID}", tokens.Scope.MANAGE),
        ("PUT", "/o/_apis/blob/blobs/AA00", tokens.Scope.WRITE),
        ("GET", f"/o/_apis/symbol/symsrv/{KEY}", tokens.Scope.READ),
        ("OPTIONS", "/o/_apis", None),
    ],
)
def test_each_operation_names_its_scope(method: str, path: str, scope: tokens.Scope | None) -> None:
    assert routes.resolve(method, path, {}).scope == scope


def basic(user: str, password: str) -> str:
    return "Basic " + base64.b64encode(f"{user}:{password}".encode()).decode()


@pytest.mark.parametrize(
    ("header", "token"),
    [
        (basic("", "pat"), "pat"),
        (basic("anyone", "pat:with:colons"), "pat:with:colons"),
        ("Bearer abc", "abc"),
        ("bearer  abc ", "abc"),
        (None, None),
        ("", None),
        ("Basic !!!", None),
        (basic("user", ""), None),
        ("Negotiate abc", None),
        ("Bearer", None),
    ],
)
def test_credentials_from_the_authorization_header(header: str | None, token: str | None) -> None:
    assert tokens.credential(header) == token


def test_tokens_are_stored_as_hashes_and_scopes_nest() -> None:
    reader, writer, manager = tokens.new_token(), tokens.new_token(), tokens.new_token()
    table = tokens.TokenTable(
        [
            {"name": "r", "hash": tokens.hash_token(reader), "scopes": ["vso.symbols"]},
            {"name": "w", "hash": tokens.hash_token(writer), "scopes": ["vso.symbols_write"]},
            {"name": "m", "hash": tokens.hash_token(manager), "scopes": ["vso.symbols_manage"]},
        ]
    )
    r, w, m = table.authenticate(reader), table.authenticate(writer), table.authenticate(manager)
    assert r is not None and w is not None and m is not None
    assert (r.allows(tokens.Scope.READ), r.allows(tokens.Scope.WRITE)) == (True, False)
    assert (w.allows(tokens.Scope.WRITE), w.allows(tokens.Scope.MANAGE)) == (True, False)
    assert m.allows(tokens.Scope.READ) and m.allows(tokens.Scope.WRITE) and m.allows(tokens.Scope.MANAGE)
    assert table.authenticate(reader + "x") is None
    assert table.authenticate(None) is None
    assert reader not in tokens.hash_token(reader)


@pytest.mark.parametrize(
    "record",
    [
        {"name": "", "hash": "sha256:" + "0" * 64, "scopes": ["vso.symbols"]},
        {"name": "a", "hash": "md5:abc", "scopes": ["vso.symbols"]},
        {"name": "a", "hash": "sha256:" + "0" * 64, "scopes": []},
        {"name": "a", "hash": "sha256:" + "0" * 64, "scopes": ["vso.code"]},
    ],
)
def test_bad_token_records_are_refused(record: dict[str, object]) -> None:
    with pytest.raises(ValueError):
        tokens.TokenTable([record])


# Edges of the route table: every method a read route takes, the organization on every route, and
# the paths next to real routes that must not be taken for them.

MORE_CASES = [
    ("GET", "/org/_apis/symbol/client", {}, routes.Operation(Op.CLIENT_VERSION, "org")),
    ("HEAD", "/_apis/symbol/client/exe", {}, routes.Operation(Op.CLIENT_DOWNLOAD, client_type="exe")),
    ("HEAD", f"/_apis/symbol/symsrv/{KEY}", {}, routes.Operation(Op.SYMSRV, client_key=KEY)),
    ("HEAD", "/org/_apis/blob/blobs/ABC00", {}, routes.Operation(Op.GET_BLOB, "org", blob_id="ABC00")),
    (
        "GET",
        "/org/_apis/blob/blobs/ABC00",
        {"blockHash": "DD"},
        routes.Operation(Op.GET_BLOB, "org", blob_id="ABC00"),
    ),
    ("GET", "/org/_apis/blob/blobs/ABC00/URL", {}, routes.Operation(Op.BLOB_URL, "org", blob_id="ABC00")),
    # Entry ids are a catch-all tail, checked by the handler: a one-part tail is still this route.
    (
        "GET",
        f"/org/_apis/symbol/requests/{ID}/contents/x",
        {},
        routes.Operation(Op.CONTENTS, "org", request_id=ID, entry_id="x"),
    ),
    ("OPTIONS", "/org/_apis/symbol", {}, routes.Operation(Op.LOCATIONS, "org")),
]


@pytest.mark.parametrize(("method", "path", "query", "expected"), MORE_CASES, ids=lambda c: str(c)[:40])
def test_more_routes_resolve(
    method: str, path: str, query: dict[str, str], expected: routes.Operation
) -> None:
    assert routes.resolve(method, path, query) == expected


@pytest.mark.parametrize(
    ("method", "path", "query", "status"),
    [
        ("GET", "/org/_apis", {}, 404),
        ("GET", "/org/_apis/symbol", {}, 404),
        ("POST", "/org/_apis/blob", {}, 404),
        ("GET", "/org/deeper/_apis/symbol/availability", {}, 404),
        ("GET", "/org/_apis/resourceareas/a/b", {}, 404),
        ("GET", "/org/_apis/symbol/nothing/x", {}, 404),
        ("GET", f"/org/_apis/symbol/requests/{ID}/other/x", {}, 404),
        ("GET", f"/org/_apis/symbol/requests/{ID}/contents", {}, 404),
        ("GET", "/org/_apis/symbol/symsrv/./a/b", {}, 404),
        ("GET", "/org/_apis/blob/blobs/ABC00/other", {}, 404),
        ("POST", "/org/_apis/blob/nothing", {}, 404),
        ("GET", "/org/_apis/symbol/client/exe/extra", {}, 405),
        ("POST", "/org/_apis/symbol/client/exe", {}, 405),
        ("POST", "/org/_apis/blob/blobs/ABC00", {}, 405),
        ("OPTIONS", "/org/_apis/symbol/requests", {}, 405),
    ],
)
def test_paths_next_to_real_routes_fail_with_their_status(
    method: str, path: str, query: dict[str, str], status: int
) -> None:
    with pytest.raises(errors.ServiceError) as caught:
        routes.resolve(method, path, query)
    assert caught.value.status == status


@pytest.mark.parametrize(
    "path",
    [
        "/org/_apis",
        "/org/elsewhere",
        "/org/_apis/nothing",
        "/org/_apis/symbol/nothing",
        f"/org/_apis/symbol/requests/{ID}/other",
        "/org/_apis/symbol/symsrv/../a/b",
        "/org/_apis/blob/nothing",
    ],
)
def test_a_404_names_the_path(path: str) -> None:
    with pytest.raises(errors.ServiceError) as caught:
        routes.resolve("GET", path, {})
    assert (caught.value.type_key, caught.value.status) == ("ResourceNotFoundException", 404)
    assert repr(path) in caught.value.message


@pytest.mark.parametrize(
    ("method", "path"),
    [
        ("PUT", "/org/_apis/symbol/requests"),
        ("DELETE", "/org/_apis/blob/referencesbatch"),
        ("POST", "/org/_apis/resourceareas"),
    ],
)
def test_a_405_names_the_method(method: str, path: str) -> None:
    with pytest.raises(errors.ServiceError) as caught:
        routes.resolve(method, path, {})
    assert caught.value.type_key == "MethodNotAllowedException"
    assert f"The method {method} " in caught.value.message


def test_a_400_names_the_parameter_that_is_wrong() -> None:
    with pytest.raises(errors.ServiceError) as caught:
        routes.resolve("POST", f"/org/_apis/symbol/requests/{ID}", {"collection": "blobs"})
    assert caught.value.type_key == "InvalidEndpointParameterException"
    assert "'blobs'" in caught.value.message and "'debugentries'" in caught.value.message
    with pytest.raises(errors.ServiceError) as caught:
        routes.resolve("POST", "/org/_apis/symbol/requests", {"collection": "debugentries"})
    assert caught.value.type_key == "RequestNameRequiredException"
    assert "requestName is required with collection=debugentries" in caught.value.message
    for method in ("PATCH", "DELETE"):
        with pytest.raises(errors.ServiceError) as caught:
            routes.resolve(method, "/org/_apis/symbol/requests", {})
        assert caught.value.type_key == "RequestNameRequiredException"
        assert "requestName is required" in caught.value.message
