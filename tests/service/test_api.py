"""The Symbol Service API over raw HTTP, as Azure DevOps clients send it, against a filesystem store.

Covered: the publish flow of the spec (§6) with real fixture files and a multi-block blob: create
(201), duplicate name (409 ``RequestExistsException``, any case), entries ``blobMissing`` with a
``blobUri``, a single PUT and a block-by-block upload to it, the re-post with ``blobDetails`` turning
them ``created``, one stored blob however many entries name it, seal, entries after seal (403),
``contents`` byte-identical; the ``collection=debugentries``, ``/debugentries`` and by-name forms;
case-insensitive routes; a blob whose content does not hash to its id (400, nothing stored, entry
stays ``blobMissing``); auth (401 with the Basic challenge, 403 without the scope, Bearer, no token in
any answer); a stale ``storageETag`` (409); oversized bodies, blobs and batches (413); chunk dedup
refused (400); delete soft and synchronous; the locations of ``OPTIONS /_apis``; health, readiness
and metrics.
"""

from __future__ import annotations

import base64
import datetime
import random
import re
from pathlib import Path
from typing import Any

import pytest

from symbol_proxy.backends.base import UpstreamError
from symbol_service import vsohash
from symbol_service.app import API
from tests.service.conftest import Service
from tests.support import shared

MiB = 1024 * 1024


def keyed_fixture(index: int = 0) -> tuple[bytes, str]:
    """Bytes and SymSrv key of a fixture file that has one (from the manifest)."""
    keyed = [
        e
        for e in shared.manifest()["files"]
        if len(e.get("objects") or []) == 1 and (e["objects"][0].get("keys") or {}).get("symsrv")
    ]
    entry = keyed[index]
    return (shared.FIXTURES / entry["path"]).read_bytes(), entry["objects"][0]["keys"]["symsrv"][0]


def entry(key: str, data: bytes, level: str = "binary", details: bool = False) -> dict[str, Any]:
    blob_id = vsohash.vso_hash(data)
    body: dict[str, Any] = {
        "clientKey": key,
        "informationLevel": level,
        "blobIdentifier": {"identifierValue": blob_id.base64},
    }
    if details:
        hasher = vsohash.VsoHasher()
        hasher.update(data)
        hasher.finish()
        body["blobDetails"] = {
            "identifierValue": blob_id.base64,
            "blockHashes": [{"hashBytes": base64.b64encode(h).decode()} for h in hasher.block_hashes],
        }
    return body


async def create_request(service: Service, name: str = "project/def/1.0/42/guid") -> dict[str, Any]:
    _, body, _ = await service.call(
        "POST", "/_apis/symbol/requests", json={"name": name, "isChunked": False}, expect=201
    )
    return dict(body)


async def delete_now(service: Service, request: dict[str, Any]) -> None:
    """Delete the request with its manifest (``synchronous=true``)."""
    await service.call(
        "DELETE",
        f"/_apis/symbol/requests/{request['id']}",
        params={"synchronous": "true"},
        role="manager",
        expect=200,
    )


async def test_the_publish_flow_as_a_client_drives_it(service: Service) -> None:
    small, small_key = keyed_fixture(0)
    other, other_key = keyed_fixture(1)
    big = random.Random(7).randbytes(5 * MiB + 123)  # three distinct blocks
    big_key = "big.pdb/0123456789ABCDEF0123456789ABCDEF1/big.pdb"

    request = await create_request(service)
    assert re.fullmatch(r"[0-9a-f]{64}", request["id"])
    assert request["status"] == "created" and request["storageETag"]
    expires = datetime.datetime.fromisoformat(request["expirationDate"])
    assert (
        datetime.timedelta(days=29)
        < expires - datetime.datetime.now(datetime.UTC)
        <= datetime.timedelta(days=30)
    )
    status, error, _ = await service.call(
        "POST", "/_apis/symbol/requests", json={"name": "PROJECT/def/1.0/42/GUID"}
    )
    assert (status, error["typeKey"]) == (409, "RequestExistsException")

    batch = {
        "createBehavior": "throwIfExists",
        "debugEntries": [
            entry(small_key, small),
            entry(small_key.lower(), small, level="publics"),  # a second key for the same file: one upload
            entry(big_key, big, level="private"),
            entry(other_key, other),
        ],
    }
    path = f"/_apis/symbol/requests/{request['id']}/debugentries"
    _, first, _ = await service.call("POST", path, json=batch, expect=200)
    assert first["count"] == 4
    assert {e["status"] for e in first["value"]} == {"blobMissing"}
    assert first["value"][1]["id"] == small_key.lower() + "/00000004"
    uris = {e["clientKey"]: e["blobUri"] for e in first["value"]}

    # Single PUT uploads; the second file's blob is uploaded twice (a retry): stored once.
    await service.call("PUT", uris[small_key], data=small, absolute=True, expect=201)
    await service.call("PUT", uris[other_key], data=other, absolute=True, expect=201)
    await service.call("PUT", uris[other_key], data=other, absolute=True, expect=200)
    # The big blob block by block, as BlobStore clients send it.
    hasher = vsohash.VsoHasher()
    hasher.update(big)
    hasher.finish()
    for number, block in enumerate(hasher.block_hashes):
        data = big[number * vsohash.BLOCK_SIZE : (number + 1) * vsohash.BLOCK_SIZE]
        await service.call(
            "POST",
            uris[big_key],
            data=data,
            params={"blockHash": block.hex().upper()},
            absolute=True,
            expect=201,
        )

    batch["debugEntries"][2] = entry(big_key, big, level="private", details=True)
    _, second, _ = await service.call(
        "POST",
        f"/_apis/symbol/requests/{request['id']}",
        json=batch,
        params={"collection": "debugentries"},
        expect=200,
    )
    assert [e["status"] for e in second["value"]] == ["created"] * 4
    assert [e["size"] for e in second["value"]] == [len(small), len(small), len(big), len(other)]
    blobs = sorted(p.name for p in (service.store / "_publish" / "blobs").iterdir())
    assert blobs == sorted(f"{vsohash.vso_hash(d).hex}.blob" for d in (small, big, other))
    assert not list((service.store / "_publish" / "blocks").rglob("*.block"))  # assembled, then removed

    _, sealed, _ = await service.call(
        "PATCH", f"/_apis/symbol/requests/{request['id']}", json={"status": 3}, expect=200
    )
    assert sealed["status"] == "sealed" and sealed["size"] == 2 * len(small) + len(big) + len(other)
    status, error, _ = await service.call("POST", path, json=batch)
    assert (status, error["typeKey"]) == (403, "RequestSealedException")
    async with service.session.get(f"{service.url.rsplit('/', 1)[0]}/metrics") as response:
        text = await response.text()
    assert (
        "symservice_requests_sealed_total 1.0" in text
        and "symservice_seal_duration_seconds_count 1.0" in text
    )

    for key, data, level in ((small_key, small, "00000001"), (big_key, big, "00000154")):
        status, content, _ = await service.call(
            "GET", f"/_apis/symbol/requests/{request['id']}/contents/{key}/{level}", role="reader"
        )
        assert (status, content) == (200, data)
    _, listed, _ = await service.call("GET", path, role="reader", expect=200)
    assert listed["count"] == 4
    _, one, _ = await service.call("GET", f"{path}/{big_key.upper()}/00000154", role="reader", expect=200)
    assert one["value"][0]["clientKey"] == big_key


async def test_by_name_routes_and_any_case(service: Service) -> None:
    data, key = keyed_fixture(2)
    request = await create_request(service, "by/name")
    _, found, _ = await service.call(
        "GET", "/_apis/symbol/requests", params={"requestName": "BY/NAME"}, role="reader", expect=200
    )
    assert found["id"] == request["id"]
    _, created, _ = await service.call(
        "POST",
        "/_APIS/Symbol/Requests",
        params={"requestName": "by/name", "collection": "DebugEntries"},
        json={"debugEntries": [entry(key, data)]},
        expect=200,
    )
    assert created["value"][0]["status"] == "blobMissing"
    _, got, _ = await service.call(
        "GET", f"/_apis/SYMBOL/requests/{request['id'].upper()}", role="reader", expect=200
    )
    assert got["name"] == "by/name"
    _, listed, _ = await service.call("GET", "/_apis/symbol/requests", role="reader", expect=200)
    assert [r["id"] for r in listed["value"]] == [request["id"]]


async def test_content_that_does_not_hash_to_its_blob_id_is_refused_and_not_stored(service: Service) -> None:
    data, key = keyed_fixture(0)
    request = await create_request(service)
    path = f"/_apis/symbol/requests/{request['id']}/debugentries"
    _, first, _ = await service.call("POST", path, json={"debugEntries": [entry(key, data)]}, expect=200)
    tampered = data[:-1] + bytes([data[-1] ^ 1])
    status, error, _ = await service.call("PUT", first["value"][0]["blobUri"], data=tampered, absolute=True)
    assert (status, error["typeKey"]) == (400, "BlobHashMismatchException")
    assert not list(service.store.rglob("*.blob")) and not list(service.store.rglob(".*tmp*"))
    _, again, _ = await service.call(
        "POST", path, json={"debugEntries": [entry(key, data, details=True)]}, expect=200
    )
    assert again["value"][0]["status"] == "blobMissing"
    block = vsohash.block_hash(data[: vsohash.BLOCK_SIZE])
    status, error, _ = await service.call(
        "POST", first["value"][0]["blobUri"], data=tampered, params={"blockHash": block.hex()}, absolute=True
    )
    assert (status, error["typeKey"]) == (400, "BlobHashMismatchException")


async def test_anonymous_calls_are_challenged_and_scopes_are_enforced(service: Service) -> None:
    status, error, headers = await service.call("GET", "/_apis/symbol/requests", role=None)
    assert (status, error["typeKey"]) == (401, "NotAuthorizedException")
    assert headers["WWW-Authenticate"].startswith('Basic realm="')
    status, error, _ = await service.call("POST", "/_apis/symbol/requests", role=None, json={"name": "x"})
    assert status == 401
    status, error, _ = await service.call("POST", "/_apis/symbol/requests", role="reader", json={"name": "x"})
    assert (status, error["typeKey"]) == (403, "AccessDeniedException")
    request = await create_request(service, "scoped")
    status, _, _ = await service.call("DELETE", f"/_apis/symbol/requests/{request['id']}", role="writer")
    assert status == 403
    async with service.session.get(
        f"{service.url}/_apis/symbol/requests/{request['id']}",
        headers={"Authorization": f"Bearer {service.tokens['reader']}"},
    ) as response:
        assert response.status == 200
    wrong = service.headers(None, Authorization="Basic " + base64.b64encode(b":not-a-token").decode())
    async with service.session.get(f"{service.url}/_apis/symbol/requests", headers=wrong) as response:
        assert response.status == 401
        assert b"not-a-token" not in await response.read()
    async with service.session.get(f"{service.url.rsplit('/', 1)[0]}/metrics") as response:
        text = await response.text()
    assert 'symservice_requests_total{operation="list_requests",status="401"}' in text
    assert not any(token in text for token in service.tokens.values())


async def test_a_stale_storage_etag_is_a_conflict(service: Service) -> None:
    request = await create_request(service)
    later = (datetime.datetime.now(datetime.UTC) + datetime.timedelta(days=3)).isoformat()
    path = f"/_apis/symbol/requests/{request['id']}"
    _, updated, _ = await service.call(
        "PATCH",
        path,
        json={"status": "none", "expirationDate": later, "storageETag": request["storageETag"]},
        expect=200,
    )
    assert updated["storageETag"] != request["storageETag"] and updated["status"] == "created"
    status, error, _ = await service.call(
        "PATCH", path, json={"status": "sealed", "storageETag": request["storageETag"]}
    )
    assert (status, error["typeKey"]) == (409, "RequestUpdateConflictException")
    status, error, _ = await service.call("PATCH", path, json={"status": "created"})
    assert status == 200  # unchanged status is no change
    status, error, _ = await service.call("PATCH", path, json={"status": "unavailable"})
    assert (status, error["typeKey"]) == (400, "RequestUpdateInvalidException")


async def test_limits_answer_413(service: Service) -> None:
    request = await create_request(service)
    path = f"/_apis/symbol/requests/{request['id']}/debugentries"
    huge = {"debugEntries": [entry("a.dll/1/a.dll", b"x")], "padding": "x" * (128 * 1024)}
    status, error, _ = await service.call("POST", path, json=huge)
    assert (status, error["typeKey"]) == (413, "RequestEntityTooLargeException")
    many = {"debugEntries": [entry(f"f{n}.dll/1/f{n}.dll", b"x") for n in range(51)]}
    status, error, _ = await service.call("POST", path, json=many)
    assert status == 413
    big = b"\0" * (16 * MiB + 1)
    status, error, _ = await service.call("PUT", f"/_apis/blob/blobs/{vsohash.vso_hash(big).hex}", data=big)
    assert (status, error["typeKey"]) == (413, "RequestEntityTooLargeException")
    assert not list(service.store.rglob("*.blob")) and not list(service.store.rglob(".*tmp*"))
    status, error, _ = await service.call("POST", "/_apis/symbol/requests", json={"name": "n" * 257})
    assert status == 400


@pytest.mark.parametrize(
    ("batch", "type_key"),
    [
        ({"debugEntries": []}, "InvalidEndpointParameterException"),
        (
            {
                "debugEntries": [
                    {"clientKey": "a/b", "blobIdentifier": {"identifierValue": vsohash.vso_hash(b"").base64}}
                ]
            },
            "InvalidEndpointParameterException",
        ),
        ({"debugEntries": [{"clientKey": "a/b/c"}]}, "ContentMissingException"),
        (
            {
                "debugEntries": [
                    {
                        "clientKey": "a/b/c",
                        "blobIdentifier": {"identifierValue": base64.b64encode(b"\1" * 32 + b"\1").decode()},
                    }
                ]
            },
            "DebugEntryNotChunkedException",
        ),
        ({"createBehavior": "sometimes", "debugEntries": []}, "SerializationException"),
        ("not an object", "SerializationException"),
        (
            {
                "debugEntries": [
                    {
                        "clientKey": "a/b/c",
                        "blobDetails": {
                            "identifierValue": vsohash.vso_hash(b"").base64,
                            "blockHashes": [{"hashBytes": "!!"}],
                        },
                    }
                ]
            },
            "SerializationException",
        ),
    ],
)
async def test_bad_batches_are_clear_400s(service: Service, batch: Any, type_key: str) -> None:
    request = await create_request(service)
    status, error, _ = await service.call(
        "POST", f"/_apis/symbol/requests/{request['id']}/debugentries", json=batch
    )
    assert (status, error["typeKey"]) == (400, type_key)


async def test_chunk_dedup_and_nameless_requests_are_refused(service: Service) -> None:
    status, error, _ = await service.call(
        "POST", "/_apis/symbol/requests", json={"name": "c", "isChunked": True}
    )
    assert (status, error["typeKey"]) == (400, "DebugEntryNotChunkedException")
    status, error, _ = await service.call("POST", "/_apis/symbol/requests", json={"description": "no name"})
    assert (status, error["typeKey"]) == (400, "RequestNameRequiredException")


async def test_existing_entries_follow_the_create_behavior(service: Service) -> None:
    one, other = b"first content", b"second content"
    request = await create_request(service)
    path = f"/_apis/symbol/requests/{request['id']}/debugentries"
    for data in (one, other):
        await service.call("PUT", f"/_apis/blob/blobs/{vsohash.vso_hash(data).hex}", data=data, expect=201)
    await service.call("POST", path, json={"debugEntries": [entry("a.dll/1/a.dll", one)]}, expect=200)
    await service.call(
        "POST", path, json={"debugEntries": [entry("A.DLL/1/a.dll", one)]}, expect=200
    )  # same: fine
    status, error, _ = await service.call(
        "POST", path, json={"debugEntries": [entry("a.dll/1/a.dll", other)]}
    )
    assert (status, error["typeKey"]) == (409, "DebugEntryExistsException")
    _, skipped, _ = await service.call(
        "POST", path, json={"createBehavior": 1, "debugEntries": [entry("a.dll/1/a.dll", other)]}, expect=200
    )
    assert skipped["count"] == 0
    _, replaced, _ = await service.call(
        "POST",
        path,
        json={"createBehavior": "overwriteIfExists", "debugEntries": [entry("a.dll/1/a.dll", other)]},
        expect=200,
    )
    assert replaced["value"][0]["size"] == len(other)
    status, content, _ = await service.call(
        "GET", f"/_apis/symbol/requests/{request['id']}/contents/a.dll/1/a.dll/00000001"
    )
    assert content == other
    await service.call("DELETE", f"{path}/a.dll/1/a.dll/00000001", role="manager", expect=200)
    status, error, _ = await service.call("GET", f"{path}/a.dll/1/a.dll/00000001")
    assert (status, error["typeKey"]) == (404, "DebugEntryNotFoundException")


async def test_delete_soft_and_synchronous(service: Service) -> None:
    soft = await create_request(service, "soft")
    hard = await create_request(service, "hard")
    await service.call(
        "DELETE", "/_apis/symbol/requests", params={"requestName": "soft"}, role="manager", expect=200
    )
    _, got, _ = await service.call("GET", f"/_apis/symbol/requests/{soft['id']}", expect=200)
    assert got["status"] == "unavailable"
    await delete_now(service, hard)
    status, error, _ = await service.call("GET", f"/_apis/symbol/requests/{hard['id']}")
    assert (status, error["typeKey"]) == (404, "RequestNotFoundException")
    _, listed, _ = await service.call("GET", "/_apis/symbol/requests", expect=200)
    assert listed["count"] == 0


async def test_discovery_health_and_unknown_routes(service: Service) -> None:
    status, locations, _ = await service.call("OPTIONS", "/_apis", role=None)
    assert status == 200 and locations["count"] == len(locations["value"])
    assert "9648e256-c9f9-4f16-8a27-630b06396942" in {loc["id"] for loc in locations["value"]}
    _, area, _ = await service.call(
        "GET", "/_apis/ResourceAreas/5294EF93-12A1-4D13-8671-9D9D014072C8", role=None
    )
    assert (area["name"], area["locationUrl"]) == ("blob", service.url + "/")
    _, areas, _ = await service.call("GET", "/_apis/resourceareas", role=None)
    assert {a["name"] for a in areas["value"]} == {"Symbol", "blob"}
    root = service.url.rsplit("/", 1)[0]
    for probe in ("/healthz", "/readyz"):
        async with service.session.get(root + probe) as response:
            assert response.status == 200
    status, error, _ = await service.call("GET", "/_apis/symbol/nowhere")
    assert (status, error["typeKey"]) == (404, "ResourceNotFoundException")
    status, error, _ = await service.call("GET", "/_apis/symbol/requests/" + "0" * 64)
    assert (status, error["typeKey"]) == (404, "RequestNotFoundException")
    status, _, headers = await service.call("HEAD", "/_apis/symbol/client")
    assert status == 200 and headers["symbol-client-version"]  # the CLI it hands out: tests/publish


async def test_readyz_fails_when_the_store_is_gone(service: Service, tmp_path: Path) -> None:
    service.store.rename(tmp_path / "elsewhere")
    (tmp_path / "store").write_text("not a directory")
    async with service.session.get(service.url.rsplit("/", 1)[0] + "/readyz") as response:
        assert response.status == 503


async def test_update_and_delete_by_name(service: Service) -> None:
    await create_request(service, "Team/Build/7")
    _, sealed, _ = await service.call(
        "PATCH",
        "/_apis/symbol/requests",
        params={"requestName": "team/build/7"},
        json={"status": "Sealed"},
        expect=200,
    )
    assert sealed["status"] == "sealed"
    status, error, _ = await service.call(
        "POST",
        "/_apis/symbol/requests",
        params={"requestName": "team/build/7", "collection": "debugentries"},
        json={"debugEntries": [entry("a.dll/1/a.dll", b"a")]},
    )
    assert (status, error["typeKey"]) == (403, "RequestSealedException")
    await service.call(
        "DELETE",
        "/_apis/symbol/requests",
        params={"requestName": "TEAM/BUILD/7", "synchronous": "true"},
        role="manager",
        expect=200,
    )
    status, _, _ = await service.call("GET", "/_apis/symbol/requests", params={"requestName": "team/build/7"})
    assert status == 404


async def test_blob_routes_references_and_dedup_metrics(service: Service) -> None:
    stored, missing = b"a stored blob", b"never uploaded"
    stored_id, missing_id = vsohash.vso_hash(stored), vsohash.vso_hash(missing)
    for expected in (201, 200):
        await service.call("PUT", f"/_apis/blob/blobs/{stored_id.hex}", data=stored, expect=expected)
    _, answer, _ = await service.call(
        "POST",
        "/_apis/blob/referencesbatch",
        json={
            "references": [
                {"id": "r1", "scope": "s", "blob": {"id": stored_id.hex}},
                {"keepUntil": "2030-01-01T00:00:00Z", "blob": {"id": missing_id.hex}},
            ]
        },
        expect=200,
    )
    assert [r["status"] for r in answer["references"]] == ["added", "missing"]
    _, content, _ = await service.call("GET", f"/_apis/blob/blobs/{stored_id.hex}", role="reader", expect=200)
    assert content == stored
    _, url, _ = await service.call("GET", f"/_apis/blob/blobs/{stored_id.hex}/url", role="reader", expect=200)
    assert url["url"].endswith(f"/_apis/blob/blobs/{stored_id.hex}")
    status, error, _ = await service.call("GET", f"/_apis/blob/blobs/{missing_id.hex}", role="reader")
    assert (status, error["typeKey"]) == (404, "BlobNotFoundException")
    status, error, _ = await service.call("PUT", "/_apis/blob/blobs/NOTHEX", data=b"x")
    assert (status, error["typeKey"]) == (400, "InvalidEndpointParameterException")
    async with service.session.get(f"{service.url.rsplit('/', 1)[0]}/metrics") as response:
        text = await response.text()
    assert 'symservice_blobs_total{result="stored"} 1.0' in text
    assert 'symservice_blobs_total{result="deduplicated"} 1.0' in text
    uploaded = re.search(r"^symservice_uploaded_bytes_total (\S+)$", text, re.MULTILINE)
    assert uploaded is not None and float(uploaded.group(1)) >= len(stored)  # a duplicate may go unread


async def test_an_expired_request_is_gone_except_for_deleting_it(service: Service) -> None:
    api = service.app[API]
    soon = datetime.datetime.now(datetime.UTC) + datetime.timedelta(hours=1)
    request = await create_request_expiring(service, "short", soon)
    kept = await create_request(service, "long")
    api.clock = lambda: soon + datetime.timedelta(seconds=1)
    path = f"/_apis/symbol/requests/{request['id']}"
    for method, suffix, body in (
        ("GET", "", None),
        ("PATCH", "", {"status": "sealed"}),
        ("POST", "/debugentries", {"debugEntries": [entry("a.dll/1/a.dll", b"a")]}),
    ):
        status, error, _ = await service.call(method, path + suffix, json=body)
        assert (status, error["typeKey"]) == (404, "RequestNotFoundException"), method
    _, listed, _ = await service.call("GET", "/_apis/symbol/requests", expect=200)
    assert [r["id"] for r in listed["value"]] == [kept["id"]]
    await service.call("DELETE", path, params={"synchronous": "true"}, role="manager", expect=200)
    status, error, _ = await service.call(
        "POST", "/_apis/symbol/requests", json={"name": "late", "expirationDate": soon.isoformat()}
    )
    assert (status, error["typeKey"]) == (400, "InvalidEndpointParameterException")


async def create_request_expiring(service: Service, name: str, when: datetime.datetime) -> dict[str, Any]:
    _, body, _ = await service.call(
        "POST", "/_apis/symbol/requests", json={"name": name, "expirationDate": when.isoformat()}, expect=201
    )
    assert datetime.datetime.fromisoformat(body["expirationDate"]) == when
    return dict(body)


async def test_a_whole_file_upload_without_an_id_gets_its_vso_hash(service: Service) -> None:
    assert service.store is not None
    data, key = keyed_fixture(3)
    blob_id = vsohash.vso_hash(data)
    _, stored, _ = await service.call("PUT", "/_apis/blob/blobs", data=data, expect=201)
    assert stored == {"id": blob_id.hex, "identifierValue": blob_id.base64, "size": len(data)}
    _, again, _ = await service.call("PUT", "/_apis/blob/blobs", data=data, expect=200)
    assert again["id"] == blob_id.hex
    request = await create_request(service)
    _, created, _ = await service.call(
        "POST",
        f"/_apis/symbol/requests/{request['id']}/debugentries",
        json={
            "debugEntries": [
                {"clientKey": key, "blobIdentifier": {"identifierValue": stored["identifierValue"]}}
            ]
        },
        expect=200,
    )
    assert created["value"][0]["status"] == "created"
    status, error, _ = await service.call("PUT", "/_apis/blob/blobs", data=b"\0" * (16 * MiB + 1))
    assert (status, error["typeKey"]) == (413, "RequestEntityTooLargeException")
    assert not [p for p in (service.store / "_publish").rglob("*") if p.is_file() and "uploads" in p.parts]
    assert [p.name for p in service.store.rglob("*.blob")] == [f"{blob_id.hex}.blob"]


async def test_listing_pages_and_filters(service: Service) -> None:
    made = [await create_request(service, f"page/{n}") for n in range(5)]
    await service.call(
        "PATCH", f"/_apis/symbol/requests/{made[2]['id']}", json={"status": "sealed"}, expect=200
    )
    seen: list[str] = []
    after = ""
    while True:
        _, page, _ = await service.call(
            "GET",
            "/_apis/symbol/requests",
            params={"pageSize": "2", "continueFromRequestId": after},
            expect=200,
        )
        if not page["value"]:
            break
        assert page["count"] <= 2
        seen += [r["id"] for r in page["value"]]
        after = page["value"][-1]["id"]
    assert seen == sorted(r["id"] for r in made)
    _, sealed, _ = await service.call(
        "GET", "/_apis/symbol/requests", params={"requestStatus": "Sealed"}, expect=200
    )
    assert [r["id"] for r in sealed["value"]] == [made[2]["id"]]
    for value, type_key in (
        ("abc", "QueryParameterIsNotNumericException"),
        ("-1", "QueryParameterMustNotBeNegativeException"),
        ("0", "RequestListInvalidQueryParameterValuesException"),
        ("10001", "RequestListInvalidQueryParameterValuesException"),
    ):
        status, error, _ = await service.call("GET", "/_apis/symbol/requests", params={"pageSize": value})
        assert (status, error["typeKey"]) == (400, type_key), value
    status, error, _ = await service.call("GET", "/_apis/symbol/requests", params={"requestStatus": "bogus"})
    assert (status, error["typeKey"]) == (400, "RequestListInvalidQueryParameterValuesException")


async def test_store_failures_and_bugs_are_json_errors_without_detail(
    service: Service, monkeypatch: pytest.MonkeyPatch
) -> None:
    assert service.app is not None
    blob_store = service.app[API].blob_store

    async def store_down(blob_id: vsohash.BlobId) -> int | None:
        raise UpstreamError("s3://bucket/secret-path: connection refused")

    async def bug(blob_id: vsohash.BlobId) -> int | None:
        raise RuntimeError("internal detail")

    request = await create_request(service)
    path = f"/_apis/symbol/requests/{request['id']}/debugentries"
    for fault, status, type_key in (
        (store_down, 503, "ServiceUnavailableException"),
        (bug, 500, "InternalServerErrorException"),
    ):
        monkeypatch.setattr(blob_store, "size", fault)
        got, error, _ = await service.call(
            "POST", path, json={"debugEntries": [entry("a.dll/1/a.dll", b"a")]}
        )
        assert (got, error["typeKey"]) == (status, type_key)
        assert "secret-path" not in error["message"] and "internal detail" not in error["message"]
