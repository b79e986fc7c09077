"""The garbage collector's last window: an *old, unreferenced* blob named again by a new debug entry
while a collection runs (``symbol_service.collecting``: tombstones, a second reading of the
references, and the service's ``blobs.NAMING_LIMIT``).

The interleavings are made deterministic by the store the collection and the service share (a
filesystem store whose writes can run a step first or wait at a gate), and by the collection's
``settle`` (the wait between condemning blobs and reading the references again), which the tests
replace by what happens meanwhile. Nothing depends on timing.
"""

from __future__ import annotations

import asyncio
import contextlib
import datetime
import os
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path
from typing import Any

import pytest

from symbol_proxy.backends.filesystem import FilesystemBackend
from symbol_proxy.config import FilesystemSource
from symbol_service import blobs, collecting, vsohash
from symbol_service.blobs import BlobStore
from symbol_service.requeststore import MemoryRequestStore
from tests.service.conftest import Service, running_service
from tests.service.test_api import create_request, entry
from tests.service.test_collecting import at_once

GRACE = datetime.timedelta(hours=24)
KEY = "again.pdb/0123456789ABCDEF0123456789ABCDEF1/again.pdb"


class SharedStore(FilesystemBackend):
    """The filesystem store of the collection and the service, with two ways to interleave them:
    ``before_condemning`` runs once, right before the first tombstone is written (the collection
    has read the references); while ``segments`` is set, a manifest segment's write waits for it
    (after telling ``segment_waiting``)."""

    def __init__(self, root: Path) -> None:
        super().__init__(
            FilesystemSource.model_validate({"id": "publish", "type": "filesystem", "path": str(root)})
        )
        self.root = root
        self.before_condemning: Callable[[], Awaitable[None]] | None = None
        self.segments: asyncio.Event | None = None
        self.segment_waiting = asyncio.Event()

    async def put(self, location: str, chunks: AsyncIterator[bytes], *, size: int | None = None) -> None:
        if location.startswith(collecting.CONDEMNED) and self.before_condemning is not None:
            step, self.before_condemning = self.before_condemning, None
            await step()
        await super().put(location, chunks, size=size)

    async def create(self, location: str, chunks: AsyncIterator[bytes], *, size: int | None = None) -> None:
        if self.segments is not None and "/entries/" in location:
            self.segment_waiting.set()
            await self.segments.wait()
        await super().create(location, chunks, size=size)

    def tombstones(self) -> list[Path]:
        return sorted((self.root / collecting.CONDEMNED).glob("*"))


@pytest.fixture
def store(tmp_path: Path) -> SharedStore:
    root = tmp_path / "store"
    root.mkdir()
    return SharedStore(root)


async def old_blob(store: SharedStore, data: bytes) -> vsohash.BlobId:
    """Store ``data`` as a blob no entry names, as a request that expired long ago left it (written
    straight into the store, so the service has no memory of storing it)."""

    async def body() -> AsyncIterator[bytes]:
        yield data

    blob_id = vsohash.vso_hash(data)
    await store.create(BlobStore.blob_location(blob_id), body(), size=len(data))
    return blob_id


@contextlib.asynccontextmanager
async def scene(
    store: SharedStore,
) -> AsyncIterator[tuple[Service, MemoryRequestStore, dict[str, Any], bytes, vsohash.BlobId]]:
    """The service over ``store``, an open request, and an old blob nobody names (its data, id)."""
    requests = MemoryRequestStore()
    data = b"published again " + uuid.uuid4().bytes
    blob_id = await old_blob(store, data)
    async with running_service(store, requests, store=store.root) as service:
        yield service, requests, await create_request(service, "again"), data, blob_id


def later() -> datetime.datetime:
    """A collection's "now" at which everything stored so far is past the grace period."""
    return datetime.datetime.now(datetime.UTC) + GRACE + datetime.timedelta(minutes=1)


async def post(service: Service, request: dict[str, Any], data: bytes) -> str:
    _, answer, _ = await service.call(
        "POST",
        f"/_apis/symbol/requests/{request['id']}/debugentries",
        json={"debugEntries": [entry(KEY, data)]},
        expect=200,
    )
    return str(answer["value"][0]["status"])


async def contents(service: Service, request: dict[str, Any]) -> tuple[int, Any]:
    status, body, _ = await service.call(
        "GET", f"/_apis/symbol/requests/{request['id']}/contents/{KEY}/00000001"
    )
    return status, body


async def test_a_blob_named_after_the_references_were_read_is_kept(store: SharedStore) -> None:
    """The entry is written between the collection's reading and its tombstone: the second reading
    sees it, and the blob stays."""
    async with scene(store) as (service, requests, request, data, blob_id):
        answers: list[str] = []

        async def name_it() -> None:
            answers.append(await post(service, request, data))

        store.before_condemning = name_it
        collected = await collecting.collect(store, requests, grace=GRACE, now=later(), settle=at_once)
        assert answers == ["created"]  # the blob had no tombstone yet
        assert collected.blobs == 0
        assert (store.root / BlobStore.blob_location(blob_id)).is_file()
        assert await contents(service, request) == (200, data)
    assert store.tombstones() == []


async def test_a_blob_named_while_condemned_is_never_created_without_its_bytes(store: SharedStore) -> None:
    """The entry checks the blob after its tombstone was written and writes its segment only after
    the collection read the references again and deleted the blob: the entry is ``blobMissing``
    (not ``created`` for bytes that are gone), an upload during the collection is 503, and the
    client's upload afterwards makes it ``created``."""
    async with scene(store) as (service, requests, request, data, blob_id):
        gate = asyncio.Event()
        posting: list[asyncio.Task[str]] = []
        uploads: list[int] = []

        async def meanwhile() -> None:
            status, _, _ = await service.call("PUT", f"/_apis/blob/blobs/{blob_id.hex}", data=data)
            uploads.append(status)
            store.segments = gate
            posting.append(asyncio.create_task(post(service, request, data)))
            await store.segment_waiting.wait()  # checked, and waiting to write its segment

        collected = await collecting.collect(store, requests, grace=GRACE, now=later(), settle=meanwhile)
        assert uploads == [503]
        assert collected.blobs == 1  # nothing named it when the references were read again
        assert not (store.root / BlobStore.blob_location(blob_id)).exists()
        store.segments = None
        gate.set()
        assert await posting[0] == "blobMissing"

        await service.call("PUT", f"/_apis/blob/blobs/{blob_id.hex}", data=data, expect=201)
        assert await post(service, request, data) == "created"
        assert await contents(service, request) == (200, data)
    assert store.tombstones() == []


async def test_a_blob_named_while_condemned_and_kept_can_be_named_afterwards(store: SharedStore) -> None:
    """An entry that checks the blob during the collection's wait stays ``blobMissing`` but names
    the blob, so the collection keeps it; once its tombstone is gone, the re-post is ``created``."""
    async with scene(store) as (service, requests, request, data, blob_id):
        answers: list[str] = []

        async def meanwhile() -> None:
            answers.append(await post(service, request, data))

        collected = await collecting.collect(store, requests, grace=GRACE, now=later(), settle=meanwhile)
        assert answers == ["blobMissing"] and collected.blobs == 0
        assert (store.root / BlobStore.blob_location(blob_id)).is_file()
        await service.call("PUT", f"/_apis/blob/blobs/{blob_id.hex}", data=data, expect=200)  # stored
        assert await post(service, request, data) == "created"
        assert await contents(service, request) == (200, data)


async def test_a_batch_slower_than_the_naming_limit_writes_nothing(
    store: SharedStore, monkeypatch: pytest.MonkeyPatch
) -> None:
    requests = MemoryRequestStore()
    data = b"published again " + uuid.uuid4().bytes
    await old_blob(store, data)
    async with running_service(store, requests, store=store.root) as service:
        request = await create_request(service, "slow")
        monkeypatch.setattr(blobs, "NAMING_LIMIT", -1.0)  # any batch is "too slow"
        status, error, _ = await service.call(
            "POST",
            f"/_apis/symbol/requests/{request['id']}/debugentries",
            json={"debugEntries": [entry(KEY, data)]},
        )
        assert (status, error["typeKey"]) == (503, "ServiceUnavailableException")
        assert not list(store.root.glob("_publish/requests/*/entries/*"))
        monkeypatch.undo()
        assert await post(service, request, data) == "created"


async def test_an_expired_tombstone_is_ignored_and_collected(store: SharedStore) -> None:
    """A collection that crashed leaves tombstones: the service ignores them once expired, and the
    next collection removes them."""
    requests = MemoryRequestStore()
    data = b"published again " + uuid.uuid4().bytes
    blob_id = await old_blob(store, data)
    past = datetime.datetime.now(datetime.UTC) - datetime.timedelta(minutes=1)

    async def body() -> AsyncIterator[bytes]:
        yield blobs.tombstone(past)

    tombstone = store.root / BlobStore.tombstone_location(blob_id)
    await store.put(BlobStore.tombstone_location(blob_id), body())
    async with running_service(store, requests, store=store.root) as service:
        request = await create_request(service, "after a crash")
        assert await post(service, request, data) == "created"
    hours_ago = (datetime.datetime.now(datetime.UTC) - 2 * collecting.TOMBSTONE_LIFETIME).timestamp()
    os.utime(tombstone, (hours_ago, hours_ago))
    await collecting.collect(store, requests, grace=GRACE, settle=at_once)
    assert store.tombstones() == []
    assert (store.root / BlobStore.blob_location(blob_id)).is_file()


async def test_many_blobs_are_condemned_in_rounds(
    store: SharedStore, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Each round condemns at most ``CONDEMNED_AT_ONCE`` blobs, waits and reads the references again."""
    monkeypatch.setattr(collecting, "CONDEMNED_AT_ONCE", 2)
    stored = [await old_blob(store, b"old %d " % n + uuid.uuid4().bytes) for n in range(5)]
    condemned: list[int] = []

    async def count() -> None:
        condemned.append(len(store.tombstones()))

    collected = await collecting.collect(store, MemoryRequestStore(), grace=GRACE, now=later(), settle=count)
    assert condemned == [2, 2, 1] and collected.blobs == 5
    assert not any((store.root / BlobStore.blob_location(blob_id)).exists() for blob_id in stored)
    assert store.tombstones() == []
