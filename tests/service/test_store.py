"""Blobs and manifests in the store, with several writers at once (as several replicas would be).

Covered: publishers uploading the same blob at once (one object, the others deduplicated, the
content right, no temporary file); an upload whose content does not hash to its id stores nothing;
assembling a blob from staged blocks in order, and refusing a missing block or a wrong order
without storing anything; two manifest stores (two replicas) appending batches to one request at
once, then a third reading it back: no entry lost, later records win, deletions apply.
"""

from __future__ import annotations

import asyncio
import random
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest

from symbol_proxy.backends.filesystem import FilesystemBackend
from symbol_proxy.config import FilesystemSource
from symbol_service import blobs, errors, manifests, vsohash


@pytest.fixture
def backend(tmp_path: Path) -> FilesystemBackend:
    return FilesystemBackend(
        FilesystemSource.model_validate({"id": "p", "type": "filesystem", "path": str(tmp_path)})
    )


async def pieces(data: bytes, size: int = 100_000) -> AsyncIterator[bytes]:
    for start in range(0, len(data), size):
        await asyncio.sleep(0)
        yield data[start : start + size]


async def test_racing_uploads_of_one_blob_store_it_once(backend: FilesystemBackend, tmp_path: Path) -> None:
    data = random.Random(1).randbytes(3 * 1024 * 1024)
    blob_id = vsohash.vso_hash(data)
    stores = [blobs.BlobStore(backend) for _ in range(5)]
    uploads = await asyncio.gather(
        *(s.put(blob_id, pieces(data), size=len(data), limit=1 << 30) for s in stores)
    )
    assert sorted(u.deduplicated for u in uploads) == [False, True, True, True, True]
    stream = await stores[0].open(blob_id)
    assert b"".join([c async for c in stream.chunks()]) == data
    assert [p.name for p in tmp_path.rglob("*") if p.is_file()] == [f"{blob_id.hex}.blob"]


async def test_content_of_another_hash_is_not_stored(backend: FilesystemBackend, tmp_path: Path) -> None:
    store = blobs.BlobStore(backend)
    claimed = vsohash.vso_hash(b"what the client said")
    with pytest.raises(errors.ServiceError) as caught:
        await store.put(claimed, pieces(b"what the client sent"), size=None, limit=1 << 20)
    assert caught.value.type_key == "BlobHashMismatchException"
    assert await store.size(claimed) is None
    assert not [p for p in tmp_path.rglob("*") if p.is_file()]


async def test_blocks_assemble_in_order_only(backend: FilesystemBackend) -> None:
    store = blobs.BlobStore(backend)
    data = random.Random(2).randbytes(2 * vsohash.BLOCK_SIZE + 999)
    hasher = vsohash.VsoHasher()
    hasher.update(data)
    blob_id = hasher.finish()
    blocks = hasher.block_hashes
    for number, block in enumerate(blocks[:2]):
        assert await store.put_block(
            blob_id, block, data[number * vsohash.BLOCK_SIZE : (number + 1) * vsohash.BLOCK_SIZE]
        )
    assert not await store.assemble(blob_id, blocks, limit=1 << 30)  # the third block is missing
    await store.put_block(blob_id, blocks[2], data[2 * vsohash.BLOCK_SIZE :])
    assert not await store.put_block(blob_id, blocks[2], data[2 * vsohash.BLOCK_SIZE :])  # already staged
    assert not await store.assemble(blob_id, [blocks[1], blocks[0], blocks[2]], limit=1 << 30)
    assert await store.size(blob_id) is None
    assert await store.assemble(blob_id, blocks, limit=1 << 30)
    assert await store.size(blob_id) == len(data)
    with pytest.raises(errors.ServiceError):
        await store.put_block(blob_id, blocks[0], b"not the block")


async def test_concurrent_batches_from_two_replicas_lose_nothing(backend: FilesystemBackend) -> None:
    one, two = manifests.ManifestStore(backend), manifests.ManifestStore(backend)

    async def publish(store: manifests.ManifestStore, prefix: str) -> None:
        for batch in range(15):
            await store.append("r1", [{"id": f"{prefix}/{batch}/{n}", "v": 1} for n in range(3)])

    await asyncio.gather(publish(one, "a"), publish(two, "b"))
    await one.append("r1", [{"id": "A/0/0", "v": 2}, {"id": "b/0/1", "deleted": True}])
    reader = manifests.ManifestStore(backend)
    entries = await reader.entries("r1")
    assert len(entries) == 2 * 15 * 3 - 1
    assert entries["a/0/0"] == {"id": "A/0/0", "v": 2}
    assert "b/0/1" not in entries
    assert await two.entries("r1") == entries  # the other replica catches up on the segments it missed
    await reader.remove("r1")
    assert await manifests.ManifestStore(backend).entries("r1") == {}


async def test_an_upload_without_an_id_is_hashed_staged_and_cleaned_up(
    backend: FilesystemBackend, tmp_path: Path
) -> None:
    store = blobs.BlobStore(backend)
    data = random.Random(7).randbytes(3 * 1024 * 1024)
    upload = await store.upload(pieces(data), size=None, limit=1 << 30)
    assert (upload.blob_id, upload.size, upload.deduplicated) == (vsohash.vso_hash(data), len(data), False)
    assert (await store.upload(pieces(data), size=None, limit=1 << 30)).deduplicated
    with pytest.raises(errors.ServiceError) as caught:
        await store.upload(pieces(data + b"more"), size=None, limit=len(data))
    assert caught.value.type_key == "RequestEntityTooLargeException"
    assert [p.name for p in tmp_path.rglob("*") if p.is_file()] == [f"{upload.blob_id.hex}.blob"]


async def test_a_blob_this_process_stored_is_known_without_asking_the_store_again(
    backend: FilesystemBackend, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The debug-entry re-post after an upload costs no HEAD; another process's store still asks,
    and so does this one once the trust has run out."""
    heads: list[str] = []
    real_head = backend.head

    async def counted(location: str) -> Any:
        heads.append(location)
        return await real_head(location)

    monkeypatch.setattr(backend, "head", counted)
    data = b"stored here" * 1000
    blob_id = vsohash.vso_hash(data)
    mine, other = blobs.BlobStore(backend), blobs.BlobStore(backend)
    assert await mine.size(blob_id) is None and len(heads) == 1  # unknown: asked
    await mine.put(blob_id, pieces(data), size=len(data), limit=len(data))
    assert await mine.size(blob_id) == len(data) and len(heads) == 1  # stored here: not asked
    assert await other.size(blob_id) == len(data) and len(heads) == 2  # another replica asks
    monkeypatch.setattr(blobs, "STORED_TRUST", 0.0)
    assert await mine.size(blob_id) == len(data) and len(heads) == 3
