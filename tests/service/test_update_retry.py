"""An update without ``storageETag`` survives a write that slips in between its read and its write
(in Kubernetes: the operator adding its finalizer, or its conditions, to the SymbolRequest): the
service reads again and retries, so the seal succeeds. With a ``storageETag`` it stays a 409."""

from __future__ import annotations

import dataclasses
from collections.abc import AsyncIterator

import aiohttp
import pytest
from aiohttp.test_utils import TestServer

from symbol_proxy.backends.filesystem import FilesystemBackend
from symbol_proxy.config import FilesystemSource
from symbol_service import tokens
from symbol_service.app import create_app
from symbol_service.requeststore import MemoryRequestStore, RequestRecord
from tests.service.conftest import ORG, Service


class OtherWriter(MemoryRequestStore):
    """Before each of the next ``slips`` replaces, someone else stores the record (a new etag)."""

    def __init__(self) -> None:
        super().__init__()
        self.slips = 0

    async def replace(self, record: RequestRecord) -> RequestRecord:
        if self.slips:
            self.slips -= 1
            current = await self.get(record.id)
            assert current is not None
            await super().replace(dataclasses.replace(current))
        return await super().replace(record)


@pytest.fixture
async def served(tmp_path: pytest.TempPathFactory) -> AsyncIterator[tuple[Service, OtherWriter]]:
    token, manager = tokens.new_token(), tokens.new_token()
    table = tokens.TokenTable(
        [
            {"name": "w", "hash": tokens.hash_token(token), "scopes": ["vso.symbols_write"]},
            {"name": "m", "hash": tokens.hash_token(manager), "scopes": ["vso.symbols_manage"]},
        ]
    )
    store = OtherWriter()
    backend = FilesystemBackend(
        FilesystemSource.model_validate({"id": "publish", "type": "filesystem", "path": str(tmp_path)})
    )
    server = TestServer(create_app(backend, store, table), host="127.0.0.1")
    await server.start_server()
    async with aiohttp.ClientSession() as session:
        roles = {"writer": token, "manager": manager}
        yield Service(f"http://127.0.0.1:{server.port}/{ORG}", None, session, roles), store
    await server.close()


async def test_a_seal_without_etag_retries_after_another_write(served: tuple[Service, OtherWriter]) -> None:
    service, store = served
    _, created, _ = await service.call("POST", "/_apis/symbol/requests", json={"name": "r"}, expect=201)
    store.slips = 2
    _, sealed, _ = await service.call(
        "PATCH", f"/_apis/symbol/requests/{created['id']}", json={"status": "sealed"}, expect=200
    )
    assert sealed["status"] == "sealed"
    record = await store.get(created["id"])
    assert record is not None and record.sealed_segments == 0


async def test_a_seal_with_etag_is_a_conflict_after_another_write(
    served: tuple[Service, OtherWriter],
) -> None:
    service, store = served
    _, created, _ = await service.call("POST", "/_apis/symbol/requests", json={"name": "r"}, expect=201)
    store.slips = 1
    status, error, _ = await service.call(
        "PATCH",
        f"/_apis/symbol/requests/{created['id']}",
        json={"status": "sealed", "storageETag": created["storageETag"]},
    )
    assert (status, error["typeKey"]) == (409, "RequestUpdateConflictException")


async def test_a_delete_retries_after_another_write(served: tuple[Service, OtherWriter]) -> None:
    # Found on a loaded CI machine: the operator wrote the request's conditions between the
    # service's read and its write, and a DELETE (which names no version) answered 409.
    service, store = served
    _, created, _ = await service.call("POST", "/_apis/symbol/requests", json={"name": "r"}, expect=201)
    store.slips = 2
    await service.call("DELETE", f"/_apis/symbol/requests/{created['id']}", role="manager", expect=200)
    record = await store.get(created["id"])
    assert record is not None and record.status.name == "UNAVAILABLE"
