"""``symbol_service.publication``: a sealed request's files copied to where sidecars look, and taken
away again, over the service's real filesystem store (the operator's side of it, with the real API
server, is ``tests/operator_tests/k8s/test_request_lifecycle.py``).

Covered: each fixture file published under its client key is served by a real proxy for every key
the manifest gives it (SymSrv, SSQP, debuginfod), through a store read as ``symstore`` and as
``unified``; only ``created`` entries are published; publishing again writes the same paths;
withdrawing deletes the request's paths except those another live request provides, twice is no
error, and a request whose seal never finished has nothing to withdraw; forgetting removes the
manifest.
"""

from __future__ import annotations

from pathlib import Path

import aiohttp
import pytest

from symbol_proxy import layouts
from symbol_proxy.backends import base
from symbol_proxy.backends.filesystem import FilesystemBackend
from symbol_proxy.config import FilesystemSource
from symbol_service import vsohash
from symbol_service.blobs import BlobStore
from symbol_service.manifests import ManifestStore
from symbol_service.publication import Publisher, entry_paths
from tests.conftest import StartProxy
from tests.service.conftest import Service
from tests.support.shared import FixtureObject, keyed_objects

PUBLISHED = ("pe/HelloWorld.exe", "pdb/crash.pdb", "portablepdb/portable.pdb", "elf/crash.debug")
"""A PE with a mixed-case name, a PDB, a portable PDB and an ELF debug file."""


def fixtures() -> list[FixtureObject]:
    found = {o.entry["path"]: o for o in keyed_objects()}
    return [found[path] for path in PUBLISHED]


def client_key(fixture: FixtureObject) -> str:
    """The key a build pipeline posts for the file: SymSrv's, or SSQP's where SymSrv has none."""
    return (fixture.keys.get("symsrv") or fixture.keys["ssqp"])[0]


def store_files(store: Path) -> dict[str, bytes]:
    return {p.relative_to(store).as_posix(): p.read_bytes() for p in store.rglob("*") if p.is_file()}


def published_files(store: Path) -> dict[str, bytes]:
    """The store without the service's own objects (blobs, manifests)."""
    return {path: data for path, data in store_files(store).items() if not path.startswith("_publish/")}


async def sealed_request(
    service: Service, name: str, files: list[tuple[str, bytes | None]]
) -> tuple[str, int]:
    """Create, fill and seal a request as a client does (``None``: an entry whose blob is never
    uploaded); its id and sealed segments."""
    _, created, _ = await service.call("POST", "/_apis/symbol/requests", json={"name": name}, expect=201)
    entries = []
    for key, data in files:
        if data is None:
            blob = {"identifierValue": vsohash.vso_hash(b"never uploaded").base64}
        else:
            _, blob, _ = await service.call("PUT", "/_apis/blob/blobs", data=data)
        entries.append({"clientKey": key, "blobIdentifier": {"identifierValue": blob["identifierValue"]}})
    if entries:  # a batch must have entries; a request may have none
        path = f"/_apis/symbol/requests/{created['id']}/debugentries"
        await service.call("POST", path, json={"debugEntries": entries}, expect=200)
    await service.call(
        "PATCH", f"/_apis/symbol/requests/{created['id']}", json={"status": "sealed"}, expect=200
    )
    assert service.store is not None
    segments = await ManifestStore(publisher(service).backend).segment_count(created["id"])
    return str(created["id"]), segments


def publisher(service: Service) -> Publisher:
    assert service.store is not None
    source = FilesystemSource.model_validate(
        {"id": "publish", "type": "filesystem", "path": str(service.store)}
    )
    return Publisher(FilesystemBackend(source))


def test_the_lookup_paths_of_a_client_key_start_with_the_key_and_hold_its_ssqp_spelling() -> None:
    for fixture in fixtures():
        key = client_key(fixture)
        paths = entry_paths(key)
        assert paths[0] == key and len(set(paths)) == len(paths)
        name, ident, file = key.split("/")
        assert f"{name.lower()}/{ident}/{file.lower()}" in paths
        # The file's name only as built or lower-cased (the spellings clients ask with).
        named = [p.split("/") for p in paths if p.split("/")[0].lower() == name.lower()]
        assert {parts[-1] for parts in named} <= {file, file.lower()}, paths
        if len(ident) == 40:  # a PDB's signature: the symstore layout writes its age in lowercase
            assert f"{name}/{ident[:32]}{ident[32:].lower()}/{file}" in paths
    assert entry_paths("not-a-key") == ["not-a-key"]


async def test_published_files_are_served_for_every_manifest_key(
    service: Service, start_proxy: StartProxy, http: aiohttp.ClientSession
) -> None:
    assert service.store is not None
    request_id, segments = await sealed_request(
        service, "build", [(client_key(f), f.data) for f in fixtures()]
    )
    written = await publisher(service).publish(request_id, segments)
    assert written == sum(len(entry_paths(client_key(f))) for f in fixtures())
    assert len(published_files(service.store)) == written

    # Each layout alone serves every key: a sidecar may read the store either way. (Not a PE in
    # ``unified``: that layout keys a PE by its debug id, which a SymSrv key for a PE does not carry.)
    served = 0
    for layout in ("symstore", "unified"):
        server = await start_proxy(
            [{"id": layout, "type": "filesystem", "path": str(service.store), "layout": {"type": layout}}]
        )
        for fixture in fixtures():
            if layout == "unified" and fixture.format == "pe":
                continue
            for kind in ("symsrv", "ssqp", "debuginfod"):
                for key in fixture.keys.get(kind, []):
                    url = f"/{key}" if kind == "debuginfod" else f"/symbols/{key}"
                    async with http.get(server.make_url(url)) as response:
                        assert response.status == 200, (layout, fixture.name, kind, key)
                        assert await response.read() == fixture.data, (layout, fixture.name, kind, key)
                    served += 1
            if layout != "unified" or fixture.format in ("pe", "portablepdb"):
                continue
            # Symbolicator's unified paths (``/unified/…``; they carry no file name, so only a
            # unified source can answer them for a PDB). Not for a portable PDB: its SymSrv key
            # puts FFFFFFFF where its debug id has an age, so the key does not give its unified path.
            for path in layouts.unified_paths(fixture.filetype, fixture.query):
                async with http.get(server.make_url(f"/unified/{path}")) as response:
                    assert response.status == 200, (layout, fixture.name, "unified", path)
                    assert await response.read() == fixture.data
                served += 1
    assert served >= 12

    before = store_files(service.store)
    assert await publisher(service).publish(request_id, segments) == written  # again: the same paths
    assert store_files(service.store) == before


async def test_only_created_entries_are_published(service: Service) -> None:
    assert service.store is not None
    pe, pdb = fixtures()[:2]
    request_id, segments = await sealed_request(
        service, "partial", [(client_key(pdb), None), (client_key(pe), pe.data)]
    )
    written = await publisher(service).publish(request_id, segments)
    assert set(published_files(service.store)) == set(entry_paths(client_key(pe)))
    assert written == len(entry_paths(client_key(pe)))


async def test_withdrawing_keeps_what_another_request_provides(service: Service) -> None:
    assert service.store is not None
    pe, pdb, portable, elf = fixtures()
    shared, own, theirs = (client_key(pe), pe.data), (client_key(pdb), pdb.data), (client_key(elf), elf.data)
    leaving = await sealed_request(service, "leaving", [shared, own])
    staying = await sealed_request(service, "staying", [shared, theirs])
    unrelated = await sealed_request(service, "unrelated", [(client_key(portable), portable.data)])
    for request_id, segments in (leaving, staying, unrelated):
        await publisher(service).publish(request_id, segments)
    before = published_files(service.store)

    removed = await publisher(service).withdraw(*leaving, [staying, unrelated])
    after = published_files(service.store)
    assert set(before) - set(after) == set(entry_paths(own[0]))
    assert removed == len(entry_paths(own[0]))
    assert all(after[path] == pe.data for path in entry_paths(shared[0]))  # still the shared file's
    # Again (a finalizer repeated after a crash): nothing left to delete, no error.
    assert await publisher(service).withdraw(*leaving, [staying, unrelated]) == len(entry_paths(own[0]))
    assert published_files(service.store) == after
    # Without the other request, the shared paths go too.
    await publisher(service).withdraw(*staying, [unrelated])
    assert set(published_files(service.store)) == set(entry_paths(client_key(portable)))


async def test_a_request_whose_seal_never_finished_has_nothing_to_withdraw(service: Service) -> None:
    assert service.store is not None
    pe = fixtures()[0]
    request_id, segments = await sealed_request(service, "r", [(client_key(pe), pe.data)])
    await publisher(service).publish(request_id, segments)
    before = store_files(service.store)
    assert await publisher(service).withdraw(request_id, None, []) == 0
    assert store_files(service.store) == before


async def test_forgetting_removes_the_manifest(service: Service) -> None:
    assert service.store is not None
    pe = fixtures()[0]
    request_id, segments = await sealed_request(service, "r", [(client_key(pe), pe.data)])
    assert segments >= 1
    await publisher(service).forget(request_id)
    assert await ManifestStore(publisher(service).backend).segment_count(request_id) == 0
    assert not [p for p in store_files(service.store) if request_id in p]


@pytest.mark.parametrize("count", [0, 1, 40])
async def test_every_path_of_many_entries_is_written(service: Service, count: int) -> None:
    """More entries than copies run at once (``AT_ONCE``): each one's paths, exactly once."""
    assert service.store is not None
    files = [(f"lib{i}.dll/5AB38070{i:04X}/lib{i}.dll", f"library {i}".encode()) for i in range(count)]
    request_id, segments = await sealed_request(service, f"many-{count}", files)
    written = await publisher(service).publish(request_id, segments)
    expected = {path: data for key, data in files for path in entry_paths(key)}
    assert written == len(expected) and published_files(service.store) == expected


async def test_a_segment_written_after_the_seal_is_not_the_requests(service: Service) -> None:
    """A batch that lost the race with the seal may still have written its segment (it got 403):
    only the sealed segments count, for publishing, for withdrawing, and for what others keep."""
    assert service.store is not None
    pe, pdb, portable, _ = fixtures()
    manifests = ManifestStore(publisher(service).backend)
    mine, mine_segments = await sealed_request(service, "mine", [(client_key(pe), pe.data)])
    other, other_segments = await sealed_request(service, "other", [(client_key(pdb), pdb.data)])
    donor, _ = await sealed_request(service, "donor", [(client_key(portable), portable.data)])
    # Late segments: "mine" names the donor's file, "other" names mine.
    await manifests.append(mine, list((await manifests.entries(donor)).values()))
    await manifests.append(other, list((await manifests.entries(mine, segments=mine_segments)).values()))

    await publisher(service).publish(mine, mine_segments)
    await publisher(service).publish(other, other_segments)
    assert set(published_files(service.store)) == set(entry_paths(client_key(pe))) | set(
        entry_paths(client_key(pdb))
    )
    await publisher(service).publish(donor, 1)
    before = published_files(service.store)

    # Withdrawing "mine" deletes its own paths (other's late segment does not keep them) and not the
    # donor's (its own late segment does not make them its).
    removed = await publisher(service).withdraw(mine, mine_segments, [(other, other_segments)])
    assert removed == len(entry_paths(client_key(pe)))
    assert set(before) - set(published_files(service.store)) == set(entry_paths(client_key(pe)))


async def test_a_failed_copy_stops_the_publish_with_the_stores_error(service: Service) -> None:
    assert service.store is not None
    files = [(f"lib{i}.dll/5AB38070{i:04X}/lib{i}.dll", f"library {i}".encode()) for i in range(3)]
    request_id, segments = await sealed_request(service, "broken", files)
    blob = vsohash.vso_hash(files[1][1])
    (service.store / BlobStore.blob_location(blob)).unlink()  # lost from the store
    with pytest.raises(base.NotFound):
        await publisher(service).publish(request_id, segments)
