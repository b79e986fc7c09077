"""The publishing service killed (SIGKILL, a real ``symbol-service serve`` child process against the
real API server) in the middle of a seal and of uploads: what clients see afterwards, how a retry
finishes the work, and that nothing half-done is ever visible or left behind.

- **Between the seal's two steps** (``requesthandlers._apply_update`` writes ``sealed``, then
  ``_finish_seal`` fixes ``sealedSegments``). The second step counts the manifest's segments by
  reading them in order until one is missing; a named pipe (FIFO) put at the next segment's name
  makes that read block, so the process is frozen exactly between the steps (no hook in the code,
  no timing) and killed there. The request then reads as sealed (it takes no more entries) with no
  size, the operator does not publish it, and sealing again finishes the seal; then it is published.
- **In the middle of a single PUT** (half the body sent on a raw socket, the temporary file seen in
  the store) and **in the middle of a multi-block assembly** (the re-post that builds the blob from
  its staged blocks, killed while its temporary file exists): the blob is missing for every call
  (GET 404, ``referencesbatch`` missing, the entry stays ``blobMissing``), retries complete it, and
  ``symbol-service gc`` removes the temporary files, after which the store holds exactly the blobs,
  manifests and marker it should.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import signal
import subprocess
import sys
import time
import uuid
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import aiohttp
import pytest
import yaml

from symbol_service import tokens, vsohash
from symbol_service.blobs import BlobStore
from symbol_service.kuberequests import object_name
from symbol_service.manifests import ManifestStore
from tests.operator_tests.k8s.kube import Kube
from tests.operator_tests.k8s.test_request_lifecycle import (
    eventually,
    lifecycle_operator,
    publish,
    published,
    published_condition,
    withdrawn,
)
from tests.service.conftest import ORG, Service
from tests.service.test_api import entry, keyed_fixture
from tests.service.test_cli import start_service, write_config
from tests.support.net import free_port

pytestmark = [pytest.mark.k8s, pytest.mark.timeout(300)]

SCOPES = {"writer": "vso.symbols_write", "manager": "vso.symbols_manage"}


class Deployment:
    """The service's configuration in ``tmp_path`` (filesystem store, a writer's and a manager's
    token) and its child processes, each on a new port."""

    def __init__(self, tmp_path: Path, namespace: str) -> None:
        self.tmp_path = tmp_path
        self.namespace = namespace
        self.store = tmp_path / "store"
        self.store.mkdir()
        self.tokens = {role: tokens.new_token() for role in SCOPES}
        self.config = tmp_path / "service.yaml"
        self.port = 0
        self._configure()  # the operator reads the store from it before any service runs

    def _configure(self) -> None:
        self.port = free_port()
        write_config(self.tmp_path, self.port, "unused")
        (self.tmp_path / "tokens.yaml").write_text(
            yaml.safe_dump(
                [
                    {"name": role, "hash": tokens.hash_token(token), "scopes": [SCOPES[role]]}
                    for role, token in self.tokens.items()
                ]
            )
        )

    @contextlib.asynccontextmanager
    async def running(self) -> AsyncIterator[tuple[subprocess.Popen[bytes], Service]]:
        """``symbol-service serve --namespace NS``; stopped (if still running) on the way out."""
        self._configure()
        process = await asyncio.to_thread(
            start_service, self.config, self.port, options=("--namespace", self.namespace)
        )
        try:
            async with aiohttp.ClientSession() as session:
                yield (
                    process,
                    Service(f"http://127.0.0.1:{self.port}/{ORG}", self.store, session, self.tokens),
                )
        finally:
            if process.poll() is None:
                process.terminate()
                try:
                    await asyncio.to_thread(process.wait, 30)
                except subprocess.TimeoutExpired:
                    process.kill()
            await asyncio.to_thread(process.wait, 30)

    def gc(self) -> dict[str, int]:
        """``symbol-service gc`` with the shortest grace period it allows (an hour)."""
        done = subprocess.run(
            [
                sys.executable,
                "-m",
                "symbol_service.cli",
                "gc",
                "--config",
                str(self.config),
                "--namespace",
                self.namespace,
                "--grace",
                "1h",
            ],
            capture_output=True,
            timeout=120,
            check=True,
        )
        counts: dict[str, int] = json.loads(done.stdout)
        return counts


def kill(process: subprocess.Popen[bytes]) -> None:
    process.send_signal(signal.SIGKILL)
    process.wait(30)
    assert process.returncode == -signal.SIGKILL


def temporaries(store: Path) -> list[Path]:
    """The store's unfinished writes (``.<name>.tmp-<random>``)."""
    return sorted(store.rglob(".*.tmp-*"))


def age(paths: list[Path], hours: float) -> None:
    """Make ``paths`` look last written ``hours`` ago (the garbage collector's grace period has
    passed for them) without waiting for it."""
    then = time.time() - hours * 3600
    for path in paths:
        os.utime(path, (then, then))


def release(fifo: Path) -> None:
    """Remove the FIFO, first giving any reader still blocked on it (none, unless the operator
    read the request's manifest too early) an end of file."""
    try:
        os.close(os.open(fifo, os.O_WRONLY | os.O_NONBLOCK))
    except OSError:
        pass  # ENXIO: nobody is reading
    fifo.unlink()


async def test_a_service_killed_between_the_seals_two_steps(
    kube: Kube, namespace: str, tmp_path: Path
) -> None:
    deployment = Deployment(tmp_path, namespace)
    store = deployment.store
    (data, key), (control_data, control_key) = keyed_fixture(0), keyed_fixture(1)
    name = object_name("killed/seal")
    with lifecycle_operator(deployment.config, namespace):
        async with deployment.running() as (process, service):
            _, created, _ = await service.call(
                "POST", "/_apis/symbol/requests", json={"name": "killed/seal"}, expect=201
            )
            request_id = str(created["id"])
            _, blob, _ = await service.call("PUT", "/_apis/blob/blobs", data=data, expect=201)
            entries = [{"clientKey": key, "blobIdentifier": {"identifierValue": blob["identifierValue"]}}]
            _, batch, _ = await service.call(
                "POST", f"/_apis/symbol/requests/{request_id}/debugentries", json={"debugEntries": entries}
            )
            assert [e["status"] for e in batch["value"]] == ["created"]
            # The second step reads segment 1 to learn there is none; a FIFO there blocks that read.
            fifo = store / ManifestStore.segment_location(request_id, 1)
            os.mkfifo(fifo)
            sealing = asyncio.create_task(
                service.call("PATCH", f"/_apis/symbol/requests/{request_id}", json={"status": "sealed"})
            )

            def first_step_done() -> bool:  # the spec decides (its status may follow in step two)
                stored = kube.get("SymbolRequest", name, namespace) or {}
                return bool((stored.get("spec") or {}).get("sealed"))

            await eventually(first_step_done, "the seal's first step")
            assert not sealing.done()  # frozen in the second step
            await asyncio.to_thread(kill, process)
            with pytest.raises(aiohttp.ClientError):
                await sealing
            release(fifo)

        stored = kube.get("SymbolRequest", name, namespace)
        assert stored is not None
        # (The status may be absent: the create's own status write can lose a race with the
        # operator's finalizer; a record reads correctly without it.)
        assert stored["spec"]["sealed"] is True and (stored.get("status") or {}).get("sealedSegments") is None

        async with deployment.running() as (_, service):
            # What a client sees: sealed (no entries accepted), but the seal's count is not written.
            _, seen, _ = await service.call("GET", f"/_apis/symbol/requests/{request_id}", expect=200)
            assert seen["status"] == "sealed" and seen.get("size", 0) == 0
            status, refused, _ = await service.call(
                "POST",
                f"/_apis/symbol/requests/{request_id}/debugentries",
                json={"debugEntries": [entry("late.pdb/AB12/late.pdb", b"late")]},
            )
            assert (status, refused["typeKey"]) == (403, "RequestSealedException")
            # The operator leaves it alone: a request sealed afterwards is published, this one not.
            await publish(service, "control", [(control_key, control_data)])
            await eventually(lambda: published(store, control_key, control_data), "the control request")
            assert withdrawn(store, key)
            assert published_condition(kube, name, namespace) is None

            # Sealing again (a client's retry, or symbol-publish run again) finishes the seal.
            _, sealed, _ = await service.call(
                "PATCH", f"/_apis/symbol/requests/{request_id}", json={"status": "sealed"}, expect=200
            )
            assert sealed["status"] == "sealed" and sealed["size"] == len(data)
            await eventually(lambda: published(store, key, data), "the request to be published")
    stored = kube.get("SymbolRequest", name, namespace)
    assert stored is not None and stored["status"]["sealedSegments"] == 1
    assert (published_condition(kube, name, namespace) or {}).get("status") == "True"


async def send_part(port: int, service: Service, path: str, data: bytes, sent: int) -> asyncio.StreamWriter:
    """Start ``PUT path`` declaring all of ``data`` and send only its first ``sent`` bytes."""
    _, writer = await asyncio.open_connection("127.0.0.1", port)
    headers = {
        **service.headers(),
        "Content-Type": "application/octet-stream",
        "Content-Length": str(len(data)),
    }
    head = f"PUT /{ORG}{path} HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\n"
    head += "".join(f"{field}: {value}\r\n" for field, value in headers.items()) + "\r\n"
    writer.write(head.encode() + data[:sent])
    await writer.drain()
    return writer


def kill_when_writing(process: subprocess.Popen[bytes], blobs: Path, blob_id: vsohash.BlobId) -> bool:
    """Kill the service as soon as the temporary file of ``blob_id`` appears; ``False`` when the
    blob was stored before one was seen (the write finished too fast to be cut off)."""
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline and not (blobs / f"{blob_id.hex}.blob").exists():
        if list(blobs.glob(f".{blob_id.hex}.blob.tmp-*")):
            kill(process)
            return not (blobs / f"{blob_id.hex}.blob").exists()
        time.sleep(0.002)
    return False


async def blob_is_missing(service: Service, blob_id: vsohash.BlobId) -> bool:
    status, _, _ = await service.call("GET", f"/_apis/blob/blobs/{blob_id.hex}")
    _, answer, _ = await service.call(
        "POST",
        "/_apis/blob/referencesbatch",
        json={"references": [{"blob": {"id": blob_id.hex}}]},
        expect=200,
    )
    return status == 404 and [r["status"] for r in answer["references"]] == ["missing"]


async def post_entries(service: Service, request_id: str, entries: list[dict[str, Any]]) -> list[str]:
    _, batch, _ = await service.call(
        "POST",
        f"/_apis/symbol/requests/{request_id}/debugentries",
        json={"debugEntries": entries},
        expect=200,
    )
    return [e["status"] for e in batch["value"]]


def multi_block(attempt: int) -> tuple[bytes, str, list[tuple[bytes, bytes]]]:
    """A 64 MiB file (32 blocks), its client key, and its blocks with their hashes."""
    data = b"parts " + os.urandom(64 * 1024 * 1024)
    key = f"parts{attempt}.pdb/FEDCBA98765432100123456789ABCDEF1/parts{attempt}.pdb"
    size = vsohash.BLOCK_SIZE
    blocks = [
        (vsohash.block_hash(data[at : at + size]), data[at : at + size]) for at in range(0, len(data), size)
    ]
    return data, key, blocks


async def test_uploads_cut_off_by_a_killed_service_leave_nothing_visible_or_behind(
    kube: Kube, namespace: str, tmp_path: Path
) -> None:
    deployment = Deployment(tmp_path, namespace)
    store = deployment.store
    blobs = store / "_publish" / "blobs"
    whole = b"whole " + uuid.uuid4().bytes * 200_000  # 3.2 MB, sent in one PUT
    whole_id, whole_key = vsohash.vso_hash(whole), "whole.pdb/0123456789ABCDEF0123456789ABCDEF1/whole.pdb"

    async with deployment.running() as (process, service):
        _, created, _ = await service.call("POST", "/_apis/symbol/requests", json={"name": "killed/upload"})
        request_id = str(created["id"])
        assert await post_entries(service, request_id, [entry(whole_key, whole)]) == ["blobMissing"]
        path = f"/_apis/blob/blobs/{whole_id.hex}"
        writer = await send_part(deployment.port, service, path, whole, len(whole) // 2)
        # Whatever the write is called (a temporary file, if the store does its job right).
        await eventually(
            lambda: any(p.is_file() and p.stat().st_size > 0 for p in blobs.rglob("*")),
            "the upload's first bytes",
        )
        await asyncio.to_thread(kill, process)
        writer.close()
    assert not (store / BlobStore.blob_location(whole_id)).exists()
    assert len(temporaries(blobs)) == 1

    # A multi-block upload: its blocks staged, then the re-post that assembles them killed midway.
    # The kill has to land while the assembly's temporary file exists; a run whose assembly finished
    # first (its entry is then simply created) is tried again with another file.
    for attempt in range(3):
        parts, parts_key, blocks = multi_block(attempt)
        parts_id = vsohash.vso_hash(parts)
        async with deployment.running() as (process, service):
            assert await post_entries(service, request_id, [entry(parts_key, parts)]) == ["blobMissing"]
            for block, piece in blocks:
                await service.call(
                    "POST",
                    f"/_apis/blob/blobs/{parts_id.hex}",
                    data=piece,
                    params={"blockHash": block.hex()},
                    expect=201,
                )
            assembling = asyncio.create_task(
                post_entries(service, request_id, [entry(parts_key, parts, details=True)])
            )
            killed = await asyncio.to_thread(kill_when_writing, process, blobs, parts_id)
            with contextlib.suppress(aiohttp.ClientError, AssertionError):
                await assembling
        if killed:
            break
    else:
        pytest.fail("no assembly of 64 MiB was slow enough to be cut off in three attempts")
    assert not (store / BlobStore.blob_location(parts_id)).exists()
    assert len(temporaries(blobs)) == 2
    staged = sorted((store / "_publish" / "blocks" / parts_id.hex).iterdir())
    assert len(staged) == len(blocks)

    async with deployment.running() as (_, service):
        # Nothing half-written is visible: both blobs are missing, both entries still wait for them.
        for blob_id in (whole_id, parts_id):
            assert await blob_is_missing(service, blob_id)
        _, listed, _ = await service.call(
            "GET", f"/_apis/symbol/requests/{request_id}/debugentries", expect=200
        )
        statuses = {e["clientKey"]: e["status"] for e in listed["value"]}
        assert statuses[whole_key] == statuses[parts_key] == "blobMissing"
        # The clients' retries: the whole PUT again, the re-post with the blocks still staged.
        await service.call("PUT", f"/_apis/blob/blobs/{whole_id.hex}", data=whole, expect=201)
        assert await post_entries(service, request_id, [entry(whole_key, whole)]) == ["created"]
        assert await post_entries(service, request_id, [entry(parts_key, parts, details=True)]) == ["created"]
        for key, data in ((whole_key, whole), (parts_key, parts)):
            _, content, _ = await service.call(
                "GET", f"/_apis/symbol/requests/{request_id}/contents/{key}/00000001", expect=200
            )
            assert content == data
    assert not (store / "_publish" / "blocks" / parts_id.hex).exists() or not list(
        (store / "_publish" / "blocks" / parts_id.hex).iterdir()
    )

    # What the crashes left is only the two temporary files; the collector removes them once they
    # are older than its grace period (aged here rather than waited for).
    leftovers = temporaries(store)
    assert len(leftovers) == 2
    age(leftovers, hours=2)
    collected = await asyncio.to_thread(deployment.gc)
    assert (collected["incomplete"], collected["blobs"], collected["blocks"]) == (2, 0, 0)
    remaining = {p.relative_to(store).as_posix() for p in store.rglob("*") if p.is_file()}
    segments = {p for p in remaining if p.startswith(f"_publish/requests/{request_id}/entries/")}
    stored = {p for p in remaining if p.startswith("_publish/blobs/")}
    assert remaining == {"_publish/store.json"} | segments | stored
    assert {BlobStore.blob_location(whole_id), BlobStore.blob_location(parts_id)} <= stored
