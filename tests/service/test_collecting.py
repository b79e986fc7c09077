"""Garbage collection of the publish store (``symbol_service.collecting``), against the stores the
product writes to: a filesystem directory, MinIO (a real S3 API with multipart uploads) and
fake-gcs-server (GCS's JSON API; its unfinished resumable uploads cannot be listed, they expire).

The store is filled through the running service as clients do (requests, entries, single and
block uploads), plus what crashes leave (a staging object, a manifest whose request is gone, an
unfinished write: a multipart upload in S3, a temporary file on disk). Then a pause marks the
grace period's edge, and a second round of young objects follows. One collection with its cutoff at
that edge must remove exactly the old unreferenced objects and keep: blobs named by any entry of a
request that exists (open, sealed), and every young object. ``--dry-run`` removes nothing.
"""

from __future__ import annotations

import asyncio
import datetime
import json
import uuid
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from symbol_service import collecting, vsohash
from symbol_service.blobs import BlobStore
from symbol_service.manifests import ManifestStore
from symbol_service.requeststore import MemoryRequestStore
from tests.service.conftest import Service, Store
from tests.service.test_api import create_request, delete_now, entry
from tests.service.test_symsrv import publish, seal

GRACE = datetime.timedelta(hours=24)


def blob(data: bytes) -> str:
    return BlobStore.blob_location(vsohash.vso_hash(data))


async def put(store: Store, location: str, data: bytes) -> None:
    async def body() -> AsyncIterator[bytes]:
        yield data

    await store.backend.put(location, body(), size=len(data))


async def stage_block(service: Service, blob_hex: str, data: bytes) -> None:
    """Stage one block of a multi-block upload of ``blob_hex`` (never assembled here)."""
    block_hash = vsohash.block_hash(data).hex().upper()
    params = {"blockHash": block_hash}
    await service.call("POST", f"/_apis/blob/blobs/{blob_hex}", data=data, params=params, expect=201)


async def at_once() -> None:
    """The collection's wait between condemning blobs and deleting them (nothing happens meanwhile
    here; ``test_collecting_window`` is about what may)."""


async def test_collection_removes_old_unreferenced_objects_only(
    any_store: Store, any_service: Service, any_requests: MemoryRequestStore
) -> None:
    store, service, requests = any_store, any_service, any_requests
    sealed_data, open_data, gone_data, loose_data, orphan_data, young_data = (
        f"{what} file {uuid.uuid4()}".encode()
        for what in ("sealed", "open", "gone", "loose", "orphan", "young")
    )
    sealed = await create_request(service, "sealed")
    await publish(service, sealed, "s.pdb/AB12/s.pdb", sealed_data)
    await seal(service, sealed)
    still_open = await create_request(service, "open")
    await publish(service, still_open, "o.pdb/CD34/o.pdb", open_data)
    deleted = await create_request(service, "deleted")
    await publish(service, deleted, "g.pdb/EF56/g.pdb", gone_data)
    await delete_now(service, deleted)
    # An open request's entry that still waits for its blob names it too: uploaded, not yet re-posted.
    missing_data = b"uploaded before the re-post " + uuid.uuid4().bytes
    _, answer, _ = await service.call(
        "POST",
        f"/_apis/symbol/requests/{still_open['id']}/debugentries",
        json={"debugEntries": [entry("m.pdb/0123/m.pdb", missing_data)]},
        expect=200,
    )
    assert answer["value"][0]["status"] == "blobMissing"
    await service.call("PUT", answer["value"][0]["blobUri"], data=missing_data, absolute=True, expect=201)
    # A blob uploaded by id that no entry ever named, a staged block never assembled.
    await service.call(
        "PUT", f"/_apis/blob/blobs/{vsohash.vso_hash(loose_data).hex}", data=loose_data, expect=201
    )
    block_data = b"block " + uuid.uuid4().bytes
    block_hash = vsohash.block_hash(block_data).hex().upper()
    never_assembled = "0" * 64 + "00"
    await stage_block(service, never_assembled, block_data)
    # What crashes leave: a staging object, a manifest whose request is gone, an unfinished write.
    await put(store, "_publish/uploads/0123abcd", b"a nameless upload cut off")
    await put(store, blob(orphan_data), orphan_data)
    orphan_manifest = ManifestStore.segment_location("f" * 64, 0)
    orphan_entry = {"id": "x.pdb/1/x.pdb/00000001", "blobId": vsohash.vso_hash(orphan_data).hex, "status": 1}
    await put(store, orphan_manifest, json.dumps({"entries": [orphan_entry]}).encode())
    store.start_unfinished_write("old-part")

    await asyncio.sleep(1.5)
    edge = datetime.datetime.now(datetime.UTC)
    await asyncio.sleep(1.5)

    await service.call(
        "PUT", f"/_apis/blob/blobs/{vsohash.vso_hash(young_data).hex}", data=young_data, expect=201
    )
    store.start_unfinished_write("young-part")
    young_block = "1" * 64 + "00"
    await stage_block(service, young_block, block_data)

    dry = await collecting.collect(store.backend, requests, grace=GRACE, now=edge + GRACE, dry_run=True)
    assert (dry.blobs, dry.blocks, dry.uploads, dry.manifests, dry.incomplete) == (3, 1, 1, 1, 0)
    assert await store.exists(blob(gone_data))

    collected = await collecting.collect(
        store.backend, requests, grace=GRACE, now=edge + GRACE, settle=at_once
    )
    assert (collected.blobs, collected.blocks, collected.uploads, collected.manifests) == (3, 1, 1, 1)
    assert collected.kept_young == 2  # the young blob and block
    assert collected.incomplete == (1 if store.lists_unfinished else 0)  # GCS: sessions expire alone
    for kept in (sealed_data, open_data, missing_data, young_data):
        assert await store.exists(blob(kept)), kept
    for removed in (gone_data, loose_data, orphan_data):
        assert not await store.exists(blob(removed)), removed
    assert not await store.exists(f"_publish/blocks/{never_assembled}/{block_hash}.block")
    assert await store.exists(f"_publish/blocks/{young_block}/{block_hash}.block")
    assert not await store.exists("_publish/uploads/0123abcd")
    assert not await store.exists(orphan_manifest)
    assert await store.exists(ManifestStore.segment_location(sealed["id"], 0))
    assert store.unfinished_writes() == ({"young-part"} if store.lists_unfinished else set())
    assert [item async for item in store.backend.list(collecting.CONDEMNED)] == []  # tombstones gone

    # The requests still work: the sealed file is served, the open request can be sealed.
    status, body, _ = await service.call("GET", "/_apis/symbol/symsrv/S.PDB/ab12/s.pdb", role="reader")
    assert (status, body) == (200, sealed_data)
    _, listed, _ = await service.call(
        "GET", f"/_apis/symbol/requests/{still_open['id']}/debugentries", role="reader", expect=200
    )
    assert listed["count"] == 2

    again = await collecting.collect(store.backend, requests, grace=GRACE, now=edge + GRACE, settle=at_once)
    assert (again.blobs, again.blocks, again.uploads, again.manifests, again.incomplete) == (0, 0, 0, 0, 0)


def test_the_gc_command_refuses_a_bad_or_short_grace_period(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    from symbol_service.cli import main

    config = tmp_path / "service.yaml"
    config.write_text(
        json.dumps({"store": {"id": "p", "type": "filesystem", "path": str(tmp_path)}, "tokens_file": "t"}),
        encoding="utf-8",
    )
    assert main(["gc", "--config", str(config), "--grace", "soon"]) == 2
    assert "soon" in capsys.readouterr().err
    # Shorter than an hour: the service trusts for minutes that a blob it stored still exists.
    assert main(["gc", "--config", str(config), "--grace", "10m"]) == 2
    assert "at least" in capsys.readouterr().err
