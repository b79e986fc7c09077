"""The publish flow against a real S3 API (moto's server, IAM checks on), spread over two replicas.

Two service instances, each with its own S3 client, share one bucket prefix; they share the request
records through one in-process ``MemoryRequestStore`` (standing in for the Kubernetes API, which is
not built yet). Every step of the flow alternates between them: create on one, entries on the
other, single and multi-block uploads split over both, re-post, seal, and the file read back from
each byte-identical. Concurrent uploads of the same blob through both are stored once.
"""

from __future__ import annotations

import asyncio
import random
import uuid
from collections.abc import AsyncIterator

import aiohttp
import pytest
from aiohttp.test_utils import TestServer

from symbol_proxy.backends.s3 import S3Backend
from symbol_proxy.config import UpstreamSettings
from symbol_service import tokens, vsohash
from symbol_service.app import create_app
from symbol_service.requeststore import MemoryRequestStore
from tests.service.conftest import ORG, Service
from tests.service.test_api import entry, keyed_fixture
from tests.sidecar.backends.conftest import S3World

MiB = 1024 * 1024


@pytest.fixture
async def replicas(s3_world: S3World, settings: UpstreamSettings) -> AsyncIterator[list[Service]]:
    made = {role: tokens.new_token() for role in ("reader", "writer", "manager")}
    scopes = {"reader": "vso.symbols", "writer": "vso.symbols_write", "manager": "vso.symbols_manage"}
    records = [{"name": r, "hash": tokens.hash_token(t), "scopes": [scopes[r]]} for r, t in made.items()]
    requests = MemoryRequestStore()
    source = s3_world.source(prefix=f"publish-{uuid.uuid4().hex}")
    servers = []
    for _ in range(2):
        app = create_app(S3Backend(source, settings), requests, tokens.TokenTable(records))
        server = TestServer(app, host="127.0.0.1")
        await server.start_server()
        servers.append(server)
    async with aiohttp.ClientSession() as session:
        yield [Service(f"http://127.0.0.1:{s.port}/{ORG}", None, session, made) for s in servers]
    for server in servers:
        await server.close()


async def test_the_flow_over_two_replicas_on_s3(replicas: list[Service]) -> None:
    a, b = replicas
    small, small_key = keyed_fixture(0)
    big = random.Random(3).randbytes(4 * MiB + 5)
    big_key = "big.dbg/00112233445566778899AABBCCDDEEFF1/big.dbg"
    _, request, _ = await a.call("POST", "/_apis/symbol/requests", json={"name": "s3/flow"}, expect=201)
    status, error, _ = await b.call("POST", "/_apis/symbol/requests", json={"name": "S3/FLOW"})
    assert (status, error["typeKey"]) == (409, "RequestExistsException")
    path = f"/_apis/symbol/requests/{request['id']}/debugentries"
    batch = {"debugEntries": [entry(small_key, small), entry(big_key, big, level="private")]}
    _, first, _ = await b.call("POST", path, json=batch, expect=200)
    assert [e["status"] for e in first["value"]] == ["blobMissing", "blobMissing"]
    small_uri = first["value"][0]["blobUri"].replace(b.url, a.url)
    codes = await asyncio.gather(
        *(s.call("PUT", small_uri.replace(a.url, s.url), data=small, absolute=True) for s in (a, b, a, b))
    )
    assert sorted(code for code, _, _ in codes) == [200, 200, 200, 201]
    hasher = vsohash.VsoHasher()
    hasher.update(big)
    hasher.finish()
    for number, block in enumerate(hasher.block_hashes):
        replica = (a, b)[number % 2]
        await replica.call(
            "POST",
            f"/_apis/blob/blobs/{vsohash.vso_hash(big).hex}",
            data=big[number * vsohash.BLOCK_SIZE : (number + 1) * vsohash.BLOCK_SIZE],
            params={"blockHash": block.hex().upper()},
            expect=201,
        )
    batch["debugEntries"][1] = entry(big_key, big, level="private", details=True)
    _, second, _ = await a.call("POST", path, json=batch, expect=200)
    assert [e["status"] for e in second["value"]] == ["created", "created"]
    _, sealed, _ = await b.call(
        "PATCH", f"/_apis/symbol/requests/{request['id']}", json={"status": "sealed"}, expect=200
    )
    assert sealed["size"] == len(small) + len(big)
    for replica in (a, b):
        for key, data, level in ((small_key, small, "00000001"), (big_key, big, "00000154")):
            _, content, _ = await replica.call(
                "GET",
                f"/_apis/symbol/requests/{request['id']}/contents/{key}/{level}",
                role="reader",
                expect=200,
            )
            assert content == data
    _, listed, _ = await a.call("GET", path, role="reader", expect=200)
    assert listed["count"] == 2


async def test_an_empty_file_can_be_published_and_read_back_on_s3(replicas: list[Service]) -> None:
    a, b = replicas
    _, request, _ = await a.call("POST", "/_apis/symbol/requests", json={"name": "empty"}, expect=201)
    path = f"/_apis/symbol/requests/{request['id']}/debugentries"
    _, first, _ = await a.call(
        "POST", path, json={"debugEntries": [entry("empty.dll/0/empty.dll", b"")]}, expect=200
    )
    await b.call(
        "PUT", first["value"][0]["blobUri"].replace(a.url, b.url), data=b"", absolute=True, expect=201
    )
    _, second, _ = await b.call(
        "POST", path, json={"debugEntries": [entry("empty.dll/0/empty.dll", b"")]}, expect=200
    )
    assert (second["value"][0]["status"], second["value"][0]["size"]) == ("created", 0)
    status, content, _ = await a.call(
        "GET",
        f"/_apis/symbol/requests/{request['id']}/contents/empty.dll/0/empty.dll/00000001",
        role="reader",
    )
    assert (status, content) == (200, b"")


async def test_an_upload_without_an_id_on_s3(replicas: list[Service]) -> None:
    a, b = replicas
    data = random.Random(8).randbytes(9 * MiB)  # a multipart staging upload, then a server-side copy
    _, stored, _ = await a.call("PUT", "/_apis/blob/blobs", data=data, expect=201)
    assert stored["id"] == vsohash.vso_hash(data).hex
    _, again, _ = await b.call("PUT", "/_apis/blob/blobs", data=data, expect=200)
    assert again["id"] == stored["id"]
    _, content, _ = await b.call("GET", f"/_apis/blob/blobs/{stored['id']}", role="reader", expect=200)
    assert content == data
