"""Several publishers of the same file at once, through the running service, on a filesystem store
and on MinIO.

Each publisher creates its own request and names the same multi-block file under the same key: one
uploads it whole with a single PUT, the others block by block, all at the same moment, then they
re-post and seal. Every request must end sealed with its entry ``created``; the store must hold the
blob once, no staged block, no staging object and no unfinished write; symsrv serves the file.
"""

from __future__ import annotations

import asyncio
import random
from typing import Any

from symbol_service import vsohash
from tests.service.conftest import Service, Store
from tests.service.test_api import create_request, entry
from tests.service.test_collecting import blob
from tests.service.test_symsrv import seal

MiB = 1024 * 1024


async def publish(service: Service, name: str, key: str, data: bytes, *, whole: bool) -> dict[str, Any]:
    """One publisher's whole flow; the request's entry at the end."""
    request = await create_request(service, name)
    path = f"/_apis/symbol/requests/{request['id']}/debugentries"
    _, first, _ = await service.call(
        "POST", path, json={"debugEntries": [entry(key, data, level="private")]}, expect=200
    )
    if first["value"][0]["status"] == "blobMissing":
        uri = first["value"][0]["blobUri"]
        if whole:
            status, _, _ = await service.call("PUT", uri, data=data, absolute=True)
            assert status in (200, 201)
        else:
            hasher = vsohash.VsoHasher()
            hasher.update(data)
            hasher.finish()
            for number, block in enumerate(hasher.block_hashes):
                piece = data[number * vsohash.BLOCK_SIZE : (number + 1) * vsohash.BLOCK_SIZE]
                status, _, _ = await service.call(
                    "POST", uri, data=piece, params={"blockHash": block.hex().upper()}, absolute=True
                )
                assert status in (200, 201)
    again = {"debugEntries": [entry(key, data, level="private", details=not whole)]}
    _, second, _ = await service.call("POST", path, json=again, expect=200)
    await seal(service, request)
    _, sealed, _ = await service.call("GET", f"/_apis/symbol/requests/{request['id']}", role="reader")
    assert sealed["status"] == "sealed"
    return dict(second["value"][0])


async def test_publishers_of_one_file_at_once_store_it_once(any_store: Store, any_service: Service) -> None:
    store, service = any_store, any_service
    data = random.Random(11).randbytes(4 * MiB + 999)  # three blocks
    key = "shared.pdb/0F1E2D3C4B5A69788796A5B4C3D2E1F01/shared.pdb"
    results = await asyncio.gather(
        publish(service, "whole", key, data, whole=True),
        publish(service, "blocks-1", key, data, whole=False),
        publish(service, "blocks-2", key, data, whole=False),
    )
    assert [r["status"] for r in results] == ["created"] * 3
    assert {r["size"] for r in results} == {len(data)}

    stored = sorted([item.location async for item in store.backend.list("_publish/")])
    assert [location for location in stored if "/blobs/" in location] == [blob(data)]
    assert not [location for location in stored if "/blocks/" in location or "/uploads/" in location]
    assert store.unfinished_writes() == set()
    status, body, _ = await service.call("GET", f"/_apis/symbol/symsrv/{key}", role="reader")
    assert (status, body) == (200, data)
